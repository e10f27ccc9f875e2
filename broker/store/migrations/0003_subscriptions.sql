-- Subscriptions and the durable outbox of their notifications (clauses 5.8, 5.11).
-- A change and the notifications it triggers are written in one transaction: a notification
-- is never lost between commit and delivery, and never sent for a change that rolled back.

CREATE TABLE subscriptions (
    tenant              text        NOT NULL REFERENCES tenants (name),
    id                  text        NOT NULL,
    -- the subscription as the client gave it (compacted with its @context) plus defaults
    body                jsonb       NOT NULL,
    -- the @context the subscription was created with: a URL, an array or an object
    context             jsonb,
    is_active           boolean     NOT NULL DEFAULT true,
    expires_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    modified_at         timestamptz NOT NULL DEFAULT now(),
    -- delivery state, updated by whichever process delivers (clause 5.2.12 NotificationParams)
    times_sent          bigint      NOT NULL DEFAULT 0,
    times_failed        bigint      NOT NULL DEFAULT 0,
    last_notification   timestamptz,
    last_success        timestamptz,
    last_failure        timestamptz,
    consecutive_errors  integer     NOT NULL DEFAULT 0,
    last_error_reason   text,
    -- the next delivery attempt is not before this (back-off after a failure, throttling)
    retry_at            timestamptz NOT NULL DEFAULT '-infinity',
    -- when a periodic (timeInterval) subscription last fired
    last_fired          timestamptz,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE outbox (
    id               bigserial   PRIMARY KEY,
    tenant           text        NOT NULL,
    subscription_id  text        NOT NULL,
    -- the notification id receivers use to drop duplicates (delivery is at least once)
    notification_id  text        NOT NULL,
    entity_id        text,
    -- the entity as rendered for this subscription at the time of the change
    data             jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant, subscription_id) REFERENCES subscriptions (tenant, id) ON DELETE CASCADE
);
-- Delivery reads one subscription's rows in id order (per-entity order follows).
CREATE INDEX outbox_subscription_idx ON outbox (tenant, subscription_id, id);
