-- Device provisioning (FIWARE IoT Agent service groups and devices, plus LPWA fields), dead letters,
-- and the redelivery keys of device messages.
-- Provisioning lives here rather than in memory so a restart loses nothing; every change notifies
-- ngsi_devices (payload: the tenant) in its transaction, and each process reloads that tenant.

CREATE TABLE service_groups (
    tenant            text        NOT NULL,
    service_path      text        NOT NULL DEFAULT '/',
    -- IoT Agent identity of a group: (resource, apikey), unique across tenants, since a gateway
    -- names only its apikey and the group says which tenant its devices belong to.
    resource          text        NOT NULL DEFAULT '',
    apikey            text        NOT NULL,
    entity_type       text,
    entity_name_exp   text,
    autoprovision     boolean     NOT NULL DEFAULT true,
    explicit_attrs    boolean,
    "timestamp"       boolean,
    attributes        jsonb       NOT NULL DEFAULT '[]',
    static_attributes jsonb       NOT NULL DEFAULT '[]',
    commands          jsonb       NOT NULL DEFAULT '[]',
    protocol          text,
    codec             text,
    layout            jsonb       NOT NULL DEFAULT '[]',
    model             text,
    model_params      jsonb       NOT NULL DEFAULT '{}',
    health            boolean,
    -- IoT Agent fields kept as given but not used here (trust, cbHost, lazy, description, ...)
    extra             jsonb       NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    modified_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource, apikey)
);
CREATE INDEX service_groups_tenant_idx ON service_groups (tenant, service_path);

CREATE TABLE devices (
    tenant            text        NOT NULL,
    service_path      text        NOT NULL DEFAULT '/',
    device_id         text        NOT NULL,
    -- '' when the device has no apikey of its own (it takes its group's)
    apikey            text        NOT NULL DEFAULT '',
    entity_name       text,
    entity_type       text,
    protocol          text,
    dev_eui           text,
    attributes        jsonb       NOT NULL DEFAULT '[]',
    static_attributes jsonb       NOT NULL DEFAULT '[]',
    commands          jsonb       NOT NULL DEFAULT '[]',
    explicit_attrs    boolean,
    "timestamp"       boolean,
    codec             text,
    layout            jsonb       NOT NULL DEFAULT '[]',
    model             text,
    model_params      jsonb       NOT NULL DEFAULT '{}',
    health            boolean,
    extra             jsonb       NOT NULL DEFAULT '{}',
    -- false: created from its group on its first message (IoT Agent autoprovision)
    autoprovisioned   boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    modified_at       timestamptz NOT NULL DEFAULT now(),
    -- IoT Agent device identity: service, subservice, device_id and apikey
    PRIMARY KEY (tenant, service_path, device_id, apikey)
);
-- A DevEUI and a Sigfox id name one radio worldwide: the network gives no tenant to tell two apart.
CREATE UNIQUE INDEX devices_dev_eui_idx ON devices (dev_eui) WHERE dev_eui IS NOT NULL;
CREATE UNIQUE INDEX devices_sigfox_idx ON devices (upper(device_id)) WHERE protocol = 'sigfox';

CREATE TABLE dead_letters (
    id             bigserial   PRIMARY KEY,
    -- '' when the tenant is not known (an unknown apikey, an unparsable message)
    tenant         text        NOT NULL DEFAULT '',
    received_at    timestamptz NOT NULL DEFAULT now(),
    family         text        NOT NULL,
    -- MQTT topic, or HTTP path with its query string
    origin         text        NOT NULL,
    -- fiware-service, fiware-servicepath and the like, needed to parse the message again
    headers        jsonb       NOT NULL DEFAULT '{}',
    device         text,
    -- the message as received (redacted of personal data), capped; raw_size is its full size
    raw            bytea       NOT NULL,
    raw_size       integer     NOT NULL,
    reason         text        NOT NULL,
    replayed_at    timestamptz,
    replay_result  text
);
-- Operators list a tenant's letters newest first, by device or since a time.
CREATE INDEX dead_letters_tenant_idx ON dead_letters (tenant, id DESC);
CREATE INDEX dead_letters_device_idx ON dead_letters (tenant, device, id DESC);

-- Redelivery keys (broker/store/frames.py): a device's frame counter, seqNumber or message id,
-- claimed in the transaction that applies the message.
CREATE TABLE device_frames (
    tenant   text        NOT NULL,
    device   text        NOT NULL,
    frame    text        NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, device, frame)
);
-- Old keys are purged by age (frames.forget_before).
CREATE INDEX device_frames_seen_idx ON device_frames (seen_at);
