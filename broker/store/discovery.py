"""Which entity types and attributes a tenant holds (clauses 5.7.5-5.7.10), computed from the entities."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class TypeSummary:
    iri: str
    entity_count: int
    attributes: dict[str, list[str]]  # attribute IRI -> attribute types seen


@dataclass(frozen=True, slots=True)
class AttributeSummary:
    iri: str
    count: int
    attribute_types: list[str]
    type_names: list[str]


_TYPES_SQL = """
WITH te AS (
    SELECT t.type, e.attrs
    FROM entities e CROSS JOIN LATERAL unnest(e.types) AS t(type)
    WHERE e.tenant = $1 AND ($2::text IS NULL OR t.type = $2) AND NOT (e.types && $3::text[])
),
counts AS (SELECT type, count(*) AS entities FROM te GROUP BY type),
kinds AS (
    SELECT te.type, k.attr, array_agg(DISTINCT i.value->>'type') AS kinds
    FROM te
    CROSS JOIN LATERAL jsonb_each(te.attrs) AS k(attr, instances)
    CROSS JOIN LATERAL jsonb_array_elements(k.instances) AS i(value)
    GROUP BY te.type, k.attr
)
SELECT c.type, c.entities,
       coalesce(jsonb_object_agg(k.attr, k.kinds) FILTER (WHERE k.attr IS NOT NULL), '{}') AS attrs
FROM counts c LEFT JOIN kinds k USING (type)
GROUP BY c.type, c.entities
ORDER BY c.type
"""

_ATTRIBUTES_SQL = """
WITH a AS (
    SELECT e.types, k.attr, k.instances
    FROM entities e CROSS JOIN LATERAL jsonb_each(e.attrs) AS k(attr, instances)
    WHERE e.tenant = $1 AND ($2::text IS NULL OR k.attr = $2) AND NOT (e.types && $3::text[])
),
counts AS (SELECT attr, sum(jsonb_array_length(instances))::bigint AS instances FROM a GROUP BY attr),
kinds AS (
    SELECT attr, array_agg(DISTINCT i.value->>'type') AS kinds
    FROM a CROSS JOIN LATERAL jsonb_array_elements(a.instances) AS i(value)
    GROUP BY attr
),
types AS (
    SELECT attr, array_agg(DISTINCT t.type) AS types
    FROM a CROSS JOIN LATERAL unnest(a.types) AS t(type)
    GROUP BY attr
)
SELECT counts.attr, counts.instances, kinds.kinds, types.types
FROM counts JOIN kinds USING (attr) JOIN types USING (attr)
ORDER BY counts.attr
"""


async def types(
    pool: asyncpg.Pool, tenant: str, only: str | None = None, hidden: frozenset[str] = frozenset()
) -> list[TypeSummary]:
    """Every entity type of the tenant (or just ``only``) with its entity count and attributes;
    entities of a ``hidden`` type (personal ones the reader may not see) left out."""
    rows = await pool.fetch(_TYPES_SQL, tenant, only, sorted(hidden))
    return [
        TypeSummary(row["type"], row["entities"], {a: sorted(k) for a, k in row["attrs"].items()})
        for row in rows
    ]


async def attributes(
    pool: asyncpg.Pool, tenant: str, only: str | None = None, hidden: frozenset[str] = frozenset()
) -> list[AttributeSummary]:
    """Every attribute name of the tenant (or just ``only``) with its instances, kinds and entity
    types; entities of a ``hidden`` type left out."""
    rows = await pool.fetch(_ATTRIBUTES_SQL, tenant, only, sorted(hidden))
    return [
        AttributeSummary(row["attr"], row["instances"], sorted(row["kinds"]), sorted(row["types"]))
        for row in rows
    ]
