"""Entity queries by type, id, idPattern and attribute presence (the q/geo engine comes later)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from broker.errors import BadRequestData
from broker.model.entity import Entity
from broker.store.entities import from_row


@dataclass(frozen=True, slots=True)
class EntityFilter:
    types: list[str] | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None
    attrs: list[str] | None = None


_WHERE = """
WHERE tenant = $1
  AND ($2::text[] IS NULL OR types && $2::text[])
  AND ($3::text[] IS NULL OR id = ANY($3::text[]))
  AND ($4::text IS NULL OR id ~ $4::text)
  AND ($5::text[] IS NULL OR attrs ?| $5::text[])
"""


async def find(
    pool: asyncpg.Pool, tenant: str, where: EntityFilter, *, limit: int, offset: int, count: bool
) -> tuple[list[Entity], int | None]:
    """One page of matching entities in id order, and the total count when asked."""
    args = (tenant, where.types, where.ids, where.id_pattern, where.attrs)
    try:
        rows = (
            await pool.fetch(
                "SELECT id, types, scopes, attrs, created_at, modified_at FROM entities"
                f"{_WHERE} ORDER BY id LIMIT $6 OFFSET $7",
                *args,
                limit,
                offset,
            )
            if limit > 0
            else []
        )
        total = await pool.fetchval(f"SELECT count(*) FROM entities{_WHERE}", *args) if count else None
    except asyncpg.InvalidRegularExpressionError as exc:
        raise BadRequestData(f"idPattern is not a valid regular expression: {exc}") from None
    return [from_row(row) for row in rows], total
