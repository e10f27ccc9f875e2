"""What the database knows of the broker's backlog and size, read when metrics are scraped."""

from __future__ import annotations

from dataclasses import dataclass

from broker.store.pool import Executor

# The subscriptions with the deepest outbox, at most this many (a metric's label set stays bounded).
TOP_SUBSCRIPTIONS = 20

_OUTBOX_TOTAL = """
SELECT count(*) AS depth, COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest
FROM outbox
"""
_OUTBOX_TOP = """
SELECT tenant, subscription_id, count(*) AS depth,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest
FROM outbox GROUP BY tenant, subscription_id ORDER BY count(*) DESC, tenant, subscription_id LIMIT $1
"""
# The planner's estimate over the history partitions: no scan of a table of millions of rows.
_HISTORY_ROWS = """
SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::float8
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'attribute_history'::regclass
"""


@dataclass(frozen=True, slots=True)
class Backlog:
    """One subscription's queued notification rows and the age of its oldest (seconds)."""

    tenant: str
    subscription_id: str
    depth: int
    oldest: float


@dataclass(frozen=True, slots=True)
class Figures:
    outbox_depth: int
    outbox_oldest: float
    deepest: list[Backlog]
    history_rows: float


async def read(executor: Executor) -> Figures:
    """The outbox's depth (in all and for the deepest subscriptions) and the history's size estimate."""
    total = await executor.fetchrow(_OUTBOX_TOTAL)
    assert total is not None  # an aggregate without GROUP BY has one row
    top = await executor.fetch(_OUTBOX_TOP, TOP_SUBSCRIPTIONS)
    history: float = await executor.fetchval(_HISTORY_ROWS)
    return Figures(
        outbox_depth=total["depth"],
        outbox_oldest=total["oldest"],
        deepest=[Backlog(r["tenant"], r["subscription_id"], r["depth"], r["oldest"]) for r in top],
        history_rows=history,
    )
