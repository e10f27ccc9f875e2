"""Entity rows: read (optionally locking) and write whole batches in one statement each."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import asyncpg

from broker.model.entity import LOCATION, Entity, dataset_id, format_time
from broker.store.pool import Connection, Executor

_COLUMNS = "id, types, scopes, attrs, created_at, modified_at"

_UPSERT = """
INSERT INTO entities AS e (tenant, id, types, scopes, created_at, modified_at, attrs, location)
SELECT $1, u.id, u.types, u.scopes, u.created_at, u.modified_at, u.attrs,
       ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(u.location), 4326))
FROM jsonb_to_recordset($2::jsonb) AS u(
    id text, types text[], scopes text[], created_at timestamptz, modified_at timestamptz,
    attrs jsonb, location jsonb)
ON CONFLICT (tenant, id) DO UPDATE SET
    types = EXCLUDED.types, scopes = EXCLUDED.scopes, created_at = EXCLUDED.created_at,
    modified_at = EXCLUDED.modified_at, attrs = EXCLUDED.attrs, location = EXCLUDED.location
RETURNING id, (xmax = 0) AS inserted
"""

# Upserted in place: a moving vehicle's position is one row updated, not a row deleted and another
# inserted (one statement less per write, and no dead row and GiST entry left behind each time).
_UPSERT_GEOMETRIES = """
INSERT INTO entity_geometries AS g (tenant, entity_id, attr, dataset_id, geom)
SELECT $1, r.entity_id, r.attr, r.dataset_id, ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(r.geom), 4326))
FROM jsonb_to_recordset($2::jsonb) AS r(entity_id text, attr text, dataset_id text, geom jsonb)
ON CONFLICT (tenant, entity_id, attr, dataset_id) DO UPDATE SET geom = EXCLUDED.geom
"""

_DELETE_GEOMETRIES = """
DELETE FROM entity_geometries g
USING unnest($2::text[], $3::text[], $4::text[]) AS k(entity_id, attr, dataset_id)
WHERE g.tenant = $1 AND g.entity_id = k.entity_id AND g.attr = k.attr AND g.dataset_id = k.dataset_id
"""


def from_row(row: asyncpg.Record) -> Entity:
    return Entity(
        id=row["id"],
        types=list(row["types"]),
        scopes=list(row["scopes"]) if row["scopes"] is not None else None,
        attrs=row["attrs"],
        created_at=format_time(row["created_at"]),
        modified_at=format_time(row["modified_at"]),
    )


async def fetch_one(conn: Executor, tenant: str, entity_id: str) -> Entity | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM entities WHERE tenant = $1 AND id = $2", tenant, entity_id
    )
    return None if row is None else from_row(row)


async def fetch_many(conn: Executor, tenant: str, ids: Collection[str]) -> dict[str, Entity]:
    """The entities among ``ids`` that exist, by id (linked entity retrieval, one round trip)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM entities WHERE tenant = $1 AND id = ANY($2::text[])", tenant, list(ids)
    )
    return {row["id"]: from_row(row) for row in rows}


async def fetch_for_update(conn: Connection, tenant: str, ids: list[str]) -> dict[str, Entity]:
    """Lock and read the entities among ``ids`` that exist (sorted order avoids deadlocks)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM entities WHERE tenant = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE",
        tenant,
        sorted(ids),
    )
    return {row["id"]: from_row(row) for row in rows}


def _row(entity: Entity) -> dict[str, Any]:
    location = None
    for instance in entity.attrs.get(LOCATION, ()):
        if instance.get("type") == "GeoProperty" and dataset_id(instance) is None:
            location = instance["value"]
    return {
        "id": entity.id,
        "types": entity.types,
        "scopes": entity.scopes,
        "created_at": entity.created_at,
        "modified_at": entity.modified_at,
        "attrs": entity.attrs,
        "location": location,
    }


def _geometries(entities: Iterable[Entity]) -> list[dict[str, Any]]:
    found = []
    for entity in entities:
        for name, instances in entity.attrs.items():
            for instance in instances:
                if instance.get("type") == "GeoProperty":
                    found.append(
                        {
                            "entity_id": entity.id,
                            "attr": name,
                            "dataset_id": dataset_id(instance) or "",
                            "geom": instance["value"],
                        }
                    )
    return found


async def write(
    conn: Connection,
    tenant: str,
    upserts: list[Entity],
    deletes: Collection[str],
    expected_new: Collection[str],
    previous: Mapping[str, Entity] | None = None,
) -> list[str]:
    """Store ``upserts`` and remove ``deletes``; return ids that another writer created meanwhile.

    A non-empty answer means this transaction would overwrite a concurrent
    create: the caller rolls back and retries.
    """
    if deletes:
        await conn.execute(
            "DELETE FROM entities WHERE tenant = $1 AND id = ANY($2::text[])", tenant, list(deletes)
        )
    if not upserts:
        return []
    rows = await conn.fetch(_UPSERT, tenant, [_row(e) for e in upserts])
    raced = [row["id"] for row in rows if not row["inserted"] and row["id"] in expected_new]
    if raced:
        return raced
    await _write_geometries(conn, tenant, upserts, expected_new, previous or {})
    return []


async def _write_geometries(
    conn: Connection,
    tenant: str,
    upserts: list[Entity],
    expected_new: Collection[str],
    previous: Mapping[str, Entity],
) -> None:
    """Bring entity_geometries in line with ``upserts``, touching only the GeoProperties that changed."""
    rows: list[dict[str, Any]] = []
    gone: list[tuple[str, str, str]] = []
    unknown: list[str] = []  # rows of an entity whose previous state the caller did not give
    for entity in upserts:
        now = _geometries([entity])
        if entity.id in previous:
            before = _geometries([previous[entity.id]])
            # Most writes (a new water level, a speed) leave every geometry as it was.
            if now == before:
                continue
            kept = {_key(row) for row in now}
            gone.extend(key for row in before if (key := _key(row)) not in kept)
        elif entity.id not in expected_new:
            unknown.append(entity.id)
        rows.extend(now)
    if unknown:
        await conn.execute(
            "DELETE FROM entity_geometries WHERE tenant = $1 AND entity_id = ANY($2::text[])", tenant, unknown
        )
    if gone:
        await conn.execute(_DELETE_GEOMETRIES, tenant, *map(list, zip(*gone, strict=True)))
    if rows:
        await conn.execute(_UPSERT_GEOMETRIES, tenant, rows)


def _key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return row["entity_id"], row["attr"], row["dataset_id"]
