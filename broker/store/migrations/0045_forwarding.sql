-- Adapter mode (issue 14 item 5): changes to forward to an external NGSI-LD broker, written in the
-- transaction of the change (a durable outbox), delivered in id order per entity, deleted once the
-- target has them; and what the target refused (a 4xx) with its reason, kept for the operator.
CREATE TABLE forward_outbox (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    entity_id text NOT NULL,
    op text NOT NULL CHECK (op IN ('upsert', 'delete')),
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The head of each entity's queue (the only row of it that may be sent) is found through this.
CREATE INDEX forward_outbox_entity_idx ON forward_outbox (tenant, entity_id, id);
CREATE TABLE forward_dead_letters (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    entity_id text NOT NULL,
    op text NOT NULL,
    data jsonb NOT NULL,
    status integer,
    reason text NOT NULL,
    queued_at timestamptz NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX forward_dead_letters_tenant_idx ON forward_dead_letters (tenant, failed_at);
