"""Retention of history per tenant and entity type, and the purge job that enforces it.

A row is kept as long as the longest policy naming one of its entity's types says; a row
no policy names is kept as long as the default (NGSI_HISTORY_KEEP; empty: forever). Age is
the instance's time (observedAt, else when it was written), the time partitions follow.
Whole days are dropped when every policy and the default let them go; otherwise rows are
deleted. One process purges at a time (an advisory lock); each run is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from broker.store.partitions import PARTITION_LOCK, drop_before
from broker.store.pool import Connection, Executor

log = logging.getLogger(__name__)

_STREAM_GONE = (
    "NOT EXISTS (SELECT 1 FROM attribute_history h WHERE h.tenant = s.tenant AND h.entity_id = s.id"
    " AND h.attr = s.attr AND h.dataset_id = s.dataset_id)"
)
# No policy of the row's tenant naming one of its types keeps it longer than $n.
_NOT_KEPT_LONGER = (
    "NOT EXISTS (SELECT 1 FROM retention_policies q WHERE q.tenant = h.tenant"
    " AND q.entity_type = ANY(h.types) AND (q.keep IS NULL OR q.keep > {keep}))"
)


@dataclass(frozen=True, slots=True)
class Policy:
    tenant: str
    entity_type: str
    keep: timedelta | None


@dataclass(frozen=True, slots=True)
class Run:
    """What one purge did."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    partitions_dropped: list[str]
    rows_deleted: int
    error: str | None


async def policies(conn: Executor, tenant: str | None = None) -> list[Policy]:
    rows = await conn.fetch(
        "SELECT tenant, entity_type, keep FROM retention_policies"
        " WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, entity_type",
        tenant,
    )
    return [Policy(r["tenant"], r["entity_type"], r["keep"]) for r in rows]


async def set_policy(conn: Executor, policy: Policy) -> bool:
    """Create or replace a policy; True when it is new."""
    row = await conn.fetchrow(
        "INSERT INTO retention_policies AS p (tenant, entity_type, keep) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant, entity_type) DO UPDATE SET keep = EXCLUDED.keep, modified_at = now()"
        " RETURNING (xmax = 0) AS inserted",
        policy.tenant,
        policy.entity_type,
        policy.keep,
    )
    return bool(row and row["inserted"])


async def delete_policy(conn: Executor, tenant: str, entity_type: str) -> bool:
    status = await conn.execute(
        "DELETE FROM retention_policies WHERE tenant = $1 AND entity_type = $2", tenant, entity_type
    )
    return status != "DELETE 0"


async def runs(conn: Executor, limit: int) -> list[Run]:
    rows = await conn.fetch(
        "SELECT id, started_at, finished_at, partitions_dropped, rows_deleted, error"
        " FROM retention_runs ORDER BY id DESC LIMIT $1",
        limit,
    )
    return [
        Run(
            r["id"],
            r["started_at"],
            r["finished_at"],
            list(r["partitions_dropped"]),
            r["rows_deleted"],
            r["error"],
        )
        for r in rows
    ]


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def _delete_rows(
    conn: Connection, rules: list[Policy], default_keep: timedelta | None, now: datetime
) -> int:
    deleted = 0
    for rule in rules:
        if rule.keep is None:
            continue
        deleted += _count(
            await conn.execute(
                "DELETE FROM attribute_history h WHERE h.tenant = $1 AND h.types @> ARRAY[$2]::text[]"
                f" AND h.ts < $3 AND {_NOT_KEPT_LONGER.format(keep='$4')}",
                rule.tenant,
                rule.entity_type,
                now - rule.keep,
                rule.keep,
            )
        )
    if default_keep is not None:
        deleted += _count(
            await conn.execute(
                "DELETE FROM attribute_history h WHERE h.ts < $1 AND NOT EXISTS (SELECT 1 FROM"
                " retention_policies q WHERE q.tenant = h.tenant AND q.entity_type = ANY(h.types))",
                now - default_keep,
            )
        )
    return deleted


def _drop_cutoff(rules: list[Policy], default_keep: timedelta | None, now: datetime) -> datetime | None:
    """Until when whole days may go: every policy and the default let them go, else None."""
    keeps = [rule.keep for rule in rules] + [default_keep]
    if any(keep is None for keep in keeps):
        return None
    return now - max(keep for keep in keeps if keep is not None)


async def _purge(conn: Connection, default_keep: timedelta | None, now: datetime) -> tuple[list[str], int]:
    rules = await policies(conn)
    cutoff = _drop_cutoff(rules, default_keep, now)
    dropped = await drop_before(conn, cutoff) if cutoff is not None else []
    deleted = await _delete_rows(conn, rules, default_keep, now)
    if dropped or deleted:
        await conn.execute(f"DELETE FROM history_streams s WHERE {_STREAM_GONE}")
    return dropped, deleted


async def purge(
    pool: asyncpg.Pool, default_keep: timedelta | None, *, now: datetime | None = None
) -> Run | None:
    """One purge run (None when another process is running one), recorded in retention_runs.

    ``now`` is the moment ages are measured from (default: the database's clock).
    """
    async with pool.acquire() as conn:
        started = now or await conn.fetchval("SELECT now()")
        try:
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", PARTITION_LOCK):
                    return None
                dropped, deleted = await _purge(conn, default_keep, started)
                error = None
        except asyncpg.PostgresError as exc:
            dropped, deleted, error = [], 0, f"{type(exc).__name__}: {exc}"
            log.error("history purge failed: %s", error)
        row = await conn.fetchrow(
            "INSERT INTO retention_runs (started_at, finished_at, partitions_dropped, rows_deleted, error)"
            " VALUES ($1, clock_timestamp(), $2, $3, $4) RETURNING id, finished_at",
            started,
            dropped,
            deleted,
            error,
        )
    assert row is not None
    if error is None:
        log.info(
            "history purge: %d rows deleted, partitions dropped: %s", deleted, ", ".join(dropped) or "none"
        )
    return Run(row["id"], started, row["finished_at"], dropped, deleted, error)
