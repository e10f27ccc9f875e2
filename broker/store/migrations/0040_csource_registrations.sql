-- Context source registrations, their subscriptions and the outbox of CSourceNotifications
-- (ETSI GS CIM 009 V1.9.1 clauses 5.9-5.11). A registration change and the notifications it
-- triggers are written in one transaction, as entity changes and theirs are (0003).

CREATE TABLE csource_registrations (
    tenant       text        NOT NULL REFERENCES tenants (name),
    id           text        NOT NULL,
    -- the registration with its names expanded (entity types, attribute names, extra properties)
    body         jsonb       NOT NULL,
    mode         text        NOT NULL,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    modified_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);

-- The same columns as subscriptions (0003), so they are stored, merged and rendered alike.
CREATE TABLE csource_subscriptions (
    tenant              text        NOT NULL REFERENCES tenants (name),
    id                  text        NOT NULL,
    body                jsonb       NOT NULL,
    context             jsonb,
    is_active           boolean     NOT NULL DEFAULT true,
    expires_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    modified_at         timestamptz NOT NULL DEFAULT now(),
    times_sent          bigint      NOT NULL DEFAULT 0,
    times_failed        bigint      NOT NULL DEFAULT 0,
    last_notification   timestamptz,
    last_success        timestamptz,
    last_failure        timestamptz,
    consecutive_errors  integer     NOT NULL DEFAULT 0,
    last_error_reason   text,
    retry_at            timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (tenant, id)
);

CREATE TABLE csource_outbox (
    id               bigserial   PRIMARY KEY,
    tenant           text        NOT NULL,
    subscription_id  text        NOT NULL,
    notification_id  text        NOT NULL,
    trigger_reason   text        NOT NULL,
    -- the registrations as rendered for this subscription at the time of the change
    data             jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant, subscription_id) REFERENCES csource_subscriptions (tenant, id) ON DELETE CASCADE
);
CREATE INDEX csource_outbox_subscription_idx ON csource_outbox (tenant, subscription_id, id);
