-- Attribute history (clause 5.5.x temporal representation), its streams, and retention.
--
-- attribute_history is append-only and RANGE-partitioned by ts, the instance's time:
-- observedAt when the instance has one, else the write time (deletedAt for a deletion marker).
-- Partitioning by the instance's time lets a query on observedAt (the default timeproperty)
-- skip whole days, and lets retention drop the days every policy lets go.
--
-- No DEFAULT partition: PostgreSQL plans an ordered partition scan (ORDER BY ts DESC LIMIT n
-- stops at the newest partition holding rows) only when no DEFAULT partition can hold rows
-- of any time (partbounds.c, partitions_are_ordered). lastN over 1,000 entities needs that
-- scan. Instead two open-ended partitions, "past" (MINVALUE ..) and "future" (.. MAXVALUE),
-- with the daily partitions between them, cover every time: a write never fails for a
-- missing partition. The maintenance job (broker/temporal/partitions.py) splits days off
-- "future" ahead of time and moves the rows that landed there early.

CREATE TABLE attribute_history (
    id           bigserial   NOT NULL,
    tenant       text        NOT NULL,
    entity_id    text        NOT NULL,
    types        text[]      NOT NULL,
    attr         text        NOT NULL,
    -- '' for the default instance, so the column can be part of the stream key
    dataset_id   text        NOT NULL DEFAULT '',
    -- the instance as stored in the entity (expanded sub-attribute names); NULL marks a deletion
    instance     jsonb,
    ts           timestamptz NOT NULL,
    observed_at  timestamptz,
    created_at   timestamptz,
    modified_at  timestamptz NOT NULL,
    deleted_at   timestamptz
) PARTITION BY RANGE (ts);

-- One attribute instance stream in time order: lastN, timerel, aggregation.
CREATE INDEX attribute_history_stream_idx ON attribute_history (tenant, entity_id, attr, dataset_id, ts);
-- Retention deletes by tenant and age; instanceId look-ups (PATCH/DELETE of one instance).
CREATE INDEX attribute_history_tenant_ts_idx ON attribute_history (tenant, ts);
CREATE INDEX attribute_history_id_idx ON attribute_history (id);

DO $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    EXECUTE format(
        'CREATE TABLE attribute_history_past PARTITION OF attribute_history FOR VALUES FROM (MINVALUE) TO (%L)',
        today::timestamp AT TIME ZONE 'UTC');
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF attribute_history FOR VALUES FROM (%L) TO (%L)',
        'attribute_history_p' || to_char(today, 'YYYYMMDD'),
        today::timestamp AT TIME ZONE 'UTC', (today + 1)::timestamp AT TIME ZONE 'UTC');
    EXECUTE format(
        'CREATE TABLE attribute_history_future PARTITION OF attribute_history FOR VALUES FROM (%L) TO (MAXVALUE)',
        (today + 1)::timestamp AT TIME ZONE 'UTC');
END
$$;

-- Every (entity, attribute, datasetId) that has history, with the entity's types as last written:
-- temporal queries page entities and select types here, then read each stream's instances.
CREATE TABLE history_streams (
    tenant      text   NOT NULL,
    id          text   NOT NULL,
    attr        text   NOT NULL,
    dataset_id  text   NOT NULL DEFAULT '',
    types       text[] NOT NULL,
    PRIMARY KEY (tenant, id, attr, dataset_id)
);
CREATE INDEX history_streams_types_idx ON history_streams USING gin (tenant, types);

-- How long each tenant keeps the history of an entity type; keep NULL = forever.
CREATE TABLE retention_policies (
    tenant       text        NOT NULL,
    entity_type  text        NOT NULL,
    keep         interval,
    modified_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, entity_type)
);

-- Each run of the purge job, for operators (GET /admin/retention/runs).
CREATE TABLE retention_runs (
    id                  bigserial   PRIMARY KEY,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    partitions_dropped  text[]      NOT NULL DEFAULT '{}',
    rows_deleted        bigint      NOT NULL DEFAULT 0,
    error               text
);
