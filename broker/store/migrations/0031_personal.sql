-- Personal data (issue 12 item 4): entity types a tenant marks as personal (expanded IRIs), and the
-- audit log of every read of them: who (key id, token subject, "subscription <id>", "auth-off"),
-- which route, which entity ids (empty when more than 100 were read: then only their count).
CREATE TABLE personal_types (
    tenant text NOT NULL,
    entity_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, entity_type)
);
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    tenant text NOT NULL,
    subject text NOT NULL,
    kind text NOT NULL,
    route text NOT NULL,
    entity_ids text[] NOT NULL,
    count integer NOT NULL
);
CREATE INDEX audit_log_tenant_at_idx ON audit_log (tenant, at);
CREATE INDEX audit_log_at_idx ON audit_log (at);
