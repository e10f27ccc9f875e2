-- Tenants, entities and their geometries, and the @context cache.
-- Entities are stored expanded (full IRIs) in jsonb; what queries filter on is
-- also kept in indexed columns.

CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE tenants (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- The default tenant (no NGSILD-Tenant header) always exists.
INSERT INTO tenants (name) VALUES ('') ON CONFLICT DO NOTHING;

CREATE TABLE entities (
    tenant       text        NOT NULL REFERENCES tenants (name),
    id           text        NOT NULL,
    types        text[]      NOT NULL,
    scopes       text[],
    created_at   timestamptz NOT NULL,
    modified_at  timestamptz NOT NULL,
    attrs        jsonb       NOT NULL,
    -- geometry of the default instance of the 'location' GeoProperty, the usual geo-query target
    location     geometry(Geometry, 4326),
    PRIMARY KEY (tenant, id)
);
CREATE INDEX entities_types_idx ON entities USING gin (types);
CREATE INDEX entities_scopes_idx ON entities USING gin (scopes) WHERE scopes IS NOT NULL;
CREATE INDEX entities_location_idx ON entities USING gist (location) WHERE location IS NOT NULL;
CREATE INDEX entities_modified_idx ON entities (tenant, modified_at);

-- Every GeoProperty instance (including location), for geo-queries on any geometryProperty.
CREATE TABLE entity_geometries (
    tenant      text     NOT NULL,
    entity_id   text     NOT NULL,
    attr        text     NOT NULL,
    dataset_id  text     NOT NULL DEFAULT '',
    geom        geometry(Geometry, 4326) NOT NULL,
    PRIMARY KEY (tenant, entity_id, attr, dataset_id),
    FOREIGN KEY (tenant, entity_id) REFERENCES entities (tenant, id) ON DELETE CASCADE
);
CREATE INDEX entity_geometries_geom_idx ON entity_geometries USING gist (geom);
CREATE INDEX entity_geometries_attr_idx ON entity_geometries (tenant, attr);

-- Remote @contexts fetched once and kept (kind 'Cached'), and contexts clients added (kind 'Hosted').
CREATE TABLE jsonld_contexts (
    id            text PRIMARY KEY,
    url           text NOT NULL UNIQUE,
    kind          text NOT NULL CHECK (kind IN ('Hosted', 'Cached', 'ImplicitlyCreated')),
    body          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    hits          bigint NOT NULL DEFAULT 0
);
