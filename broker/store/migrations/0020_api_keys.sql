-- API keys (issue 12): each stored only as the SHA-256 of the whole key, which is random (256 bits of
-- secret), so a fast hash is enough and a stolen table yields no usable key. tenant NULL: an operator
-- key of the whole instance. Revoked keys stay listed (revoked_at) for the audit trail.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    tenant text,
    label text NOT NULL DEFAULT '',
    roles text[] NOT NULL,
    hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant);
