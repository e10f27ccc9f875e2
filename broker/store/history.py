"""History rows: appended in the write transaction, amended by the temporal provision API.

Every statement here binds its values; the rows of a whole batch go in one round trip
(jsonb_to_recordset), together with the streams they belong to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from broker.model.entity import Entity, Instance, parse_time
from broker.store.history_rows import Row, instance_row, rows_for_all
from broker.store.pool import Connection, Executor

INSTANCE_PREFIX = "urn:ngsi-ld:attribute-instance:"

# The rows, and the (entity, attribute, datasetId) streams they extend, in one statement.
_APPEND = """
WITH r AS (
    SELECT * FROM jsonb_to_recordset($2::jsonb) AS r(
        entity_id text, types text[], attr text, dataset_id text, instance jsonb,
        observed_at timestamptz, created_at timestamptz, modified_at timestamptz, deleted_at timestamptz)
), appended AS (
    INSERT INTO attribute_history (tenant, entity_id, types, attr, dataset_id, instance, ts,
                                   observed_at, created_at, modified_at, deleted_at)
    SELECT $1, r.entity_id, r.types, r.attr, r.dataset_id, r.instance,
           coalesce(r.deleted_at, r.observed_at, r.modified_at),
           r.observed_at, r.created_at, r.modified_at, r.deleted_at
    FROM r
)
INSERT INTO history_streams (tenant, id, attr, dataset_id, types)
SELECT DISTINCT ON (r.entity_id, r.attr, r.dataset_id) $1, r.entity_id, r.attr, r.dataset_id, r.types
FROM r ORDER BY r.entity_id, r.attr, r.dataset_id
-- DO NOTHING: a known stream costs an index probe; DO UPDATE would lock (and so rewrite) its row.
ON CONFLICT (tenant, id, attr, dataset_id) DO NOTHING
"""


async def append_rows(conn: Connection, tenant: str, rows: Sequence[Row]) -> None:
    """Append ``rows`` (see broker.store.history_rows) in the caller's transaction."""
    if rows:
        await conn.execute(_APPEND, tenant, rows)


async def record(
    conn: Connection, tenant: str, changes: Sequence[tuple[Entity | None, Entity | None]], now: str
) -> None:
    """Append the history of a batch's successful operations, each (before, after) in order."""
    await append_rows(conn, tenant, rows_for_all(changes, now))
    retyped = {a.id: a.types for b, a in changes if a is not None and b is not None and a.types != b.types}
    if retyped:
        # Rare (types are added to an entity now and then): the streams follow the entity's types.
        await conn.execute(
            "UPDATE history_streams s SET types = t.types FROM jsonb_to_recordset($2::jsonb)"
            " AS t(id text, types text[]) WHERE s.tenant = $1 AND s.id = t.id",
            tenant,
            [{"id": i, "types": types} for i, types in retyped.items()],
        )


async def lock_entity(conn: Connection, tenant: str, entity_id: str) -> None:
    """Lock an entity's history streams until the transaction ends (against a concurrent delete of it)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 0))", tenant, entity_id
    )


def instance_id(row_id: int) -> str:
    """The instanceId of a history row (clause 4.5.7: a URI naming one instance)."""
    return f"{INSTANCE_PREFIX}{row_id}"


def row_id_of(instance_uri: str) -> int | None:
    """The history row an instanceId names, None when it is not one of ours."""
    if not instance_uri.startswith(INSTANCE_PREFIX):
        return None
    digits = instance_uri[len(INSTANCE_PREFIX) :]
    return int(digits) if digits.isdigit() and len(digits) < 19 else None


async def types_of(conn: Executor, tenant: str, entity_id: str) -> list[str] | None:
    """The types of a temporal entity (None when it has no history)."""
    row = await conn.fetchrow(
        "SELECT types FROM history_streams WHERE tenant = $1 AND id = $2 LIMIT 1", tenant, entity_id
    )
    return None if row is None else list(row["types"])


async def delete_entity(conn: Executor, tenant: str, entity_id: str) -> bool:
    """Remove the whole history of an entity (6.19.3.2); False when it had none."""
    await conn.execute(
        "DELETE FROM attribute_history WHERE tenant = $1 AND entity_id = $2", tenant, entity_id
    )
    status = await conn.execute(
        "DELETE FROM history_streams WHERE tenant = $1 AND id = $2", tenant, entity_id
    )
    return status != "DELETE 0"


async def delete_attribute(
    conn: Executor, tenant: str, entity_id: str, attr: str, dataset_ids: list[str] | None
) -> bool:
    """Remove an attribute's history, of the given datasetIds ('' default) or all; False if none."""
    status = await conn.execute(
        "DELETE FROM history_streams WHERE tenant = $1 AND id = $2 AND attr = $3"
        " AND ($4::text[] IS NULL OR dataset_id = ANY($4::text[]))",
        tenant,
        entity_id,
        attr,
        dataset_ids,
    )
    await conn.execute(
        "DELETE FROM attribute_history WHERE tenant = $1 AND entity_id = $2 AND attr = $3"
        " AND ($4::text[] IS NULL OR dataset_id = ANY($4::text[]))",
        tenant,
        entity_id,
        attr,
        dataset_ids,
    )
    return status != "DELETE 0"


async def find_instance(
    conn: Executor, tenant: str, entity_id: str, attr: str, row_id: int
) -> Instance | None:
    """The stored instance a history row holds (None: no such row, or a deletion marker)."""
    row = await conn.fetchrow(
        "SELECT instance FROM attribute_history"
        " WHERE id = $4 AND tenant = $1 AND entity_id = $2 AND attr = $3 AND instance IS NOT NULL",
        tenant,
        entity_id,
        attr,
        row_id,
    )
    return None if row is None else dict(row["instance"])


_REPLACE = """
WITH old AS (
    DELETE FROM attribute_history
    WHERE id = $4 AND tenant = $1 AND entity_id = $2 AND attr = $3 AND instance IS NOT NULL
    RETURNING *
)
INSERT INTO attribute_history (id, tenant, entity_id, types, attr, dataset_id, instance, ts,
                               observed_at, created_at, modified_at, deleted_at)
SELECT old.id, old.tenant, old.entity_id, old.types, old.attr, old.dataset_id, $5::jsonb,
       coalesce(($5::jsonb->>'observedAt')::timestamptz, $6::timestamptz),
       ($5::jsonb->>'observedAt')::timestamptz, old.created_at, $6::timestamptz, NULL
FROM old
"""


async def replace_instance(
    conn: Executor, tenant: str, entity_id: str, attr: str, row_id: int, instance: Instance, now: str
) -> bool:
    """Overwrite one history instance (6.22.3.1), keeping its instanceId; False when it does not exist.

    Delete and insert with the same id: an amended observedAt may move the row to another day.
    """
    status = await conn.execute(_REPLACE, tenant, entity_id, attr, row_id, instance, parse_time(now))
    return status != "INSERT 0 0"


async def delete_instance(conn: Executor, tenant: str, entity_id: str, attr: str, row_id: int) -> bool:
    """Remove one history instance (6.22.3.2); False when it does not exist."""
    status = await conn.execute(
        "DELETE FROM attribute_history WHERE id = $4 AND tenant = $1 AND entity_id = $2 AND attr = $3",
        tenant,
        entity_id,
        attr,
        row_id,
    )
    return status != "DELETE 0"


def provided_rows(entity: Entity, now: str) -> list[dict[str, Any]]:
    """History rows for instances a client provides directly (temporal provision, 6.18.3.1)."""
    return [
        instance_row(entity.id, entity.types, attr, instance, now)
        for attr, instances in entity.attrs.items()
        for instance in instances
    ]
