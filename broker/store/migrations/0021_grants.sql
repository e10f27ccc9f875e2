-- Sharing grants (issue 12 items 3 and 5): tenant `tenant` lets `grantee` read the entities of
-- `types` (expanded IRIs), only the attributes `attrs` of them when given (NULL: all). The grantee
-- '*' is everyone, anonymous callers included: the tenant's open data. Revoked grants stay listed.
CREATE TABLE grants (
    id text PRIMARY KEY,
    tenant text NOT NULL,
    grantee text NOT NULL,
    types text[] NOT NULL,
    attrs text[],
    subscribe boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX grants_tenant_grantee_idx ON grants (tenant, grantee) WHERE revoked_at IS NULL;
