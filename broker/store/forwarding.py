"""The forwarding outbox of adapter mode: changes queued in their write transaction, claimed per entity.

Only the oldest row of an entity (its head) may be claimed, and rows are claimed ``FOR UPDATE
SKIP LOCKED``: while one process holds an entity's head, its next row is no head (the head still
exists until that process commits its deletion) and no other process can take it. So several
processes forward at once and each entity's changes still reach the target in the order made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.store.pool import Connection, Executor

# Forwarders LISTEN on this channel (a hint: they read the table).
FORWARD_CHANNEL = "ngsi_forward"
UPSERT = "upsert"
DELETE = "delete"

_INSERT = """
INSERT INTO forward_outbox (tenant, entity_id, op, data)
SELECT $1, r.entity_id, r.op, r.data
FROM jsonb_to_recordset($2::jsonb) AS r(entity_id text, op text, data jsonb)
"""
# Heads only, oldest first. The snapshot is the statement's: a head another process has just
# delivered and deleted is re-checked when locked (EvalPlanQual) and dropped, never sent twice.
_CLAIM = """
SELECT o.id, o.tenant, o.entity_id, o.op, o.data, o.created_at FROM forward_outbox o
WHERE NOT EXISTS (
    SELECT 1 FROM forward_outbox p WHERE p.tenant = o.tenant AND p.entity_id = o.entity_id AND p.id < o.id
)
ORDER BY o.id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
# The next rows of the claimed heads' entities: no other process can claim them while the heads
# are held (they are no heads until the heads' deletion commits), so they need no lock of their own.
_FOLLOWERS = """
SELECT id, tenant, entity_id, op, data, created_at FROM (
    SELECT o.id, o.tenant, o.entity_id, o.op, o.data, o.created_at,
           row_number() OVER (PARTITION BY o.tenant, o.entity_id ORDER BY o.id) AS n
    FROM forward_outbox o
    JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS h(tenant, entity_id, head)
      ON o.tenant = h.tenant AND o.entity_id = h.entity_id AND o.id > h.head
) f
WHERE n <= $4
ORDER BY id
"""
_DELETE = "DELETE FROM forward_outbox WHERE id = ANY($1::bigint[])"
_DEAD = """
INSERT INTO forward_dead_letters (tenant, entity_id, op, data, status, reason, queued_at)
SELECT r.tenant, r.entity_id, r.op, r.data, r.status, r.reason, r.queued_at
FROM jsonb_to_recordset($1::jsonb)
     AS r(tenant text, entity_id text, op text, data jsonb, status integer, reason text,
          queued_at timestamptz)
"""
_BACKLOG = "SELECT count(*) AS n, min(created_at) AS oldest FROM forward_outbox"
_DEAD_COUNT = "SELECT count(*) FROM forward_dead_letters"
_DEAD_LIST = """
SELECT id, tenant, entity_id, op, data, status, reason, queued_at, failed_at FROM forward_dead_letters
WHERE tenant = $1 ORDER BY id LIMIT $2 OFFSET $3
"""


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one entity to forward: an upsert of its changed attributes, or its deletion."""

    entity_id: str
    op: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued change as claimed for forwarding."""

    id: int
    tenant: str
    entity_id: str
    op: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Refused:
    """A change the target refused for good: the HTTP status (None: no status) and why."""

    row: Pending
    status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused change as kept for the operator."""

    id: int
    tenant: str
    entity_id: str
    op: str
    data: dict[str, Any]
    status: int | None
    reason: str
    queued_at: datetime
    failed_at: datetime


async def queue(conn: Connection, tenant: str, changes: Sequence[Change]) -> None:
    """Queue ``changes`` (in order) and wake the forwarders when the transaction commits."""
    await conn.execute(
        _INSERT, tenant, [{"entity_id": c.entity_id, "op": c.op, "data": c.data} for c in changes]
    )
    await conn.execute("SELECT pg_notify($1, $2)", FORWARD_CHANNEL, tenant)


async def claim(conn: Connection, limit: int, depth: int = 1) -> list[Pending]:
    """Take, for this transaction, the queues of up to ``limit`` entities no other transaction holds:
    the oldest ``depth`` rows of each (held through their heads' locks), in id order."""
    heads = _pending(await conn.fetch(_CLAIM, limit))
    if not heads or depth <= 1:
        return heads
    followers = _pending(
        await conn.fetch(
            _FOLLOWERS,
            [h.tenant for h in heads],
            [h.entity_id for h in heads],
            [h.id for h in heads],
            depth - 1,
        )
    )
    return sorted([*heads, *followers], key=lambda row: row.id)


def _pending(rows: Sequence[Any]) -> list[Pending]:
    return [Pending(r["id"], r["tenant"], r["entity_id"], r["op"], r["data"], r["created_at"]) for r in rows]


async def finish(conn: Connection, done: Sequence[int], refused: Sequence[Refused]) -> None:
    """Remove the rows the target has (``done``) or refused; keep the refused ones as dead letters."""
    if refused:
        await conn.execute(
            _DEAD,
            [
                {
                    "tenant": r.row.tenant,
                    "entity_id": r.row.entity_id,
                    "op": r.row.op,
                    "data": r.row.data,
                    "status": r.status,
                    "reason": r.reason,
                    "queued_at": r.row.created_at.isoformat(),
                }
                for r in refused
            ],
        )
    ids = [*done, *(r.row.id for r in refused)]
    if ids:
        await conn.execute(_DELETE, ids)


async def backlog(executor: Executor) -> tuple[int, datetime | None]:
    """How many changes wait, and when the oldest of them was made (None: none wait)."""
    row = await executor.fetchrow(_BACKLOG)
    assert row is not None
    return int(row["n"]), row["oldest"]


async def dead_letter_count(executor: Executor) -> int:
    count: int = await executor.fetchval(_DEAD_COUNT)
    return count


async def dead_letters(
    executor: Executor, tenant: str, *, limit: int = 1000, offset: int = 0
) -> list[DeadLetter]:
    """The changes the target refused, of ``tenant``, oldest first."""
    rows = await executor.fetch(_DEAD_LIST, tenant, limit, offset)
    return [
        DeadLetter(
            r["id"],
            r["tenant"],
            r["entity_id"],
            r["op"],
            r["data"],
            r["status"],
            r["reason"],
            r["queued_at"],
            r["failed_at"],
        )
        for r in rows
    ]
