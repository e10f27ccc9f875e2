"""Exact entity counts per (tenant, type), kept by triggers on ``entities`` (migration 0055).

Writers append delta rows (one per statement and type), so no writer waits on another's counter
row; a reader sums the deltas of one (tenant, type) under its snapshot, which is exact. The
compactor folds the deltas into one row per (tenant, type) every few seconds so the sum stays
a handful of rows; it runs under the process's Supervisor (``type-count-compactor``).
"""

from __future__ import annotations

import logging

import asyncpg

from broker.clock import SYSTEM, Clock
from broker.query.entity_query import EntityQuery
from broker.query.types import TypeName
from broker.store.pool import Executor

log = logging.getLogger(__name__)

COMPACTOR = "type-count-compactor"
# Seconds between compactions: at 20,000 new entities/s in batches of 100 that is ~2,000 delta
# rows a type at most, still well under a millisecond to sum through the index.
COMPACT_INTERVAL = 10.0
# One compactor at a time across processes (two at once would still be exact, only wasteful).
_COMPACT_LOCK = 0x6E67_7369_7463

_COMPACT = """
WITH gone AS (DELETE FROM entity_type_counts RETURNING tenant, entity_type, delta)
INSERT INTO entity_type_counts (tenant, entity_type, delta)
SELECT tenant, entity_type, sum(delta) FROM gone GROUP BY tenant, entity_type HAVING sum(delta) <> 0
"""


def whole_type(query: EntityQuery) -> str | None:
    """The type IRI when ``query`` selects exactly "every entity of this one type", else None."""
    if len(query.selectors) != 1 or query.attrs or query.q or query.geo or query.scope or query.types_not:
        return None
    selector = query.selectors[0]
    if selector.ids is not None or selector.id_pattern is not None:
        return None
    if not isinstance(selector.types, TypeName):
        return None
    iri = selector.types.iri
    if query.types_in is not None and iri not in query.types_in:
        return None
    return iri


async def count_of(conn: Executor, tenant: str, entity_type: str) -> int:
    """How many entities of ``tenant`` have ``entity_type`` (as ``count(*)`` over types @> would say)."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(delta), 0) FROM entity_type_counts WHERE tenant = $1 AND entity_type = $2",
        tenant,
        entity_type,
    )
    return int(total)


async def compact(pool: asyncpg.Pool) -> bool:
    """Fold the delta rows into one per (tenant, type); False when another process was at it."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _COMPACT_LOCK):
            return False
        await conn.execute(_COMPACT)
    return True


class Compactor:
    """Compacts every ``interval`` seconds; a database error is logged and retried next round."""

    def __init__(
        self, pool: asyncpg.Pool, *, interval: float = COMPACT_INTERVAL, clock: Clock = SYSTEM
    ) -> None:
        self._pool = pool
        self._interval = interval
        self._clock = clock

    async def run(self) -> None:
        while True:
            await self._clock.sleep(self._interval)
            try:
                await compact(self._pool)
            except (asyncpg.PostgresError, OSError) as exc:
                log.error(
                    "type count compaction failed (retried next round): %s: %s", type(exc).__name__, exc
                )
