-- Commands down to devices (IoT Agent commands): a PATCH of a provisioned command attribute queues
-- a row here in the same transaction, so a command accepted with 204 is never lost; a dispatcher
-- publishes it (MQTT cmd topic, LoRaWAN downlink) or hands it to the device's next Sigfox BIDIR
-- callback, and the device's reply completes it.

CREATE TABLE device_commands (
    id           bigserial   PRIMARY KEY,
    tenant       text        NOT NULL,
    device_id    text        NOT NULL,
    entity_id    text        NOT NULL,
    command      text        NOT NULL,
    value        jsonb,
    -- PENDING: queued; SENT: published or handed to the network; OK / ERROR: the device answered;
    -- EXPIRED: not deliverable in time
    status       text        NOT NULL DEFAULT 'PENDING',
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    answered_at  timestamptz,
    info         text
);
CREATE INDEX device_commands_pending_idx ON device_commands (id) WHERE status = 'PENDING';
CREATE INDEX device_commands_device_idx ON device_commands (tenant, device_id, id);
