"""The delivery state of subscriptions: which are due, claiming one, recording an attempt, periodic firing.

Every statement that compares with the current time takes it as a bind parameter (``now``)
rather than calling now(): the notifier's clock decides, so back-off, throttling and periodic
schedules follow one clock (a hand-driven one in tests) in Python and SQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.store.outbox import REQUEST_ID_MEMBER
from broker.store.pool import Connection, Executor

_DUE = """
SELECT s.tenant, s.id FROM subscriptions s
WHERE s.retry_at <= $2 AND s.is_active AND (s.expires_at IS NULL OR s.expires_at > $2)
  AND EXISTS (SELECT 1 FROM outbox o WHERE o.tenant = s.tenant AND o.subscription_id = s.id)
ORDER BY s.retry_at
LIMIT $1
"""
# Claims the subscription (no row when claimed elsewhere, not due, paused or expired). Its rows
# are read by the next statement, whose snapshot is taken after the lock: read in the same
# statement, they would be seen as of before the lock was granted, and rows another process
# had delivered and deleted in the meantime would be sent again (issue 11, defect 8).
# The transaction commits without waiting for its WAL flush: should PostgreSQL crash right
# after, the deletion of delivered rows is lost and they are sent again, which at-least-once
# delivery allows; the rows themselves were committed durably by the write that queued them.
_CLAIM = """
SELECT set_config('synchronous_commit', 'off', true) AS unflushed, last_notification, consecutive_errors
FROM subscriptions
WHERE tenant = $1 AND id = $2 AND ($3 OR retry_at <= $4)
  AND is_active AND (expires_at IS NULL OR expires_at > $4)
FOR NO KEY UPDATE SKIP LOCKED
"""
_PENDING = """
SELECT id, notification_id, entity_id, data, created_at FROM outbox
WHERE tenant = $1 AND subscription_id = $2 ORDER BY id LIMIT $3
"""
_ONE_NOTIFICATION = """
SELECT id, notification_id, entity_id, data, created_at FROM outbox
WHERE tenant = $1 AND subscription_id = $2 AND notification_id = $3 ORDER BY id
"""
_SEAL = "UPDATE outbox SET notification_id = $2 WHERE id = ANY($1::bigint[])"
# The delivered rows go and the delivery state is updated in one statement ($6: the error, if any).
_RECORD = """
WITH delivered AS (DELETE FROM outbox WHERE id = ANY($3::bigint[]))
UPDATE subscriptions SET
    times_sent = times_sent + $4,
    times_failed = times_failed + CASE WHEN $6::text IS NULL THEN 0 ELSE 1 END,
    last_notification = $5,
    last_success = COALESCE($7, last_success),
    last_failure = CASE WHEN $6::text IS NULL THEN last_failure ELSE $5 END,
    consecutive_errors = CASE WHEN $6::text IS NULL THEN 0 ELSE consecutive_errors + 1 END,
    last_error_reason = COALESCE($6, last_error_reason),
    retry_at = $8
WHERE tenant = $1 AND id = $2
"""
_NOT_BEFORE = "UPDATE subscriptions SET retry_at = $3 WHERE tenant = $1 AND id = $2"
_ACTIVE_TENANTS = "SELECT DISTINCT tenant FROM subscriptions WHERE is_active"
# Seconds until each periodic subscription is due (NULL: never fired; <= 0: due).
_PERIODIC_WAITS = """
SELECT s.tenant, s.id,
       extract(epoch FROM s.last_fired + make_interval(secs => c.secs) - $4)::float8 AS wait
FROM unnest($1::text[], $2::text[], $3::float8[]) AS c(tenant, id, secs)
JOIN subscriptions s ON s.tenant = c.tenant AND s.id = c.id
WHERE s.is_active AND (s.expires_at IS NULL OR s.expires_at > $4)
"""
# Fires once across processes: the row is locked (SKIP LOCKED: another process is firing or
# delivering it) and still due. The schedule advances by whole intervals so that it does not
# drift by the poll delay, but restarts from now after a pause (no burst of missed firings).
_FIRE = """
UPDATE subscriptions s SET last_fired = CASE
    WHEN c.last_fired IS NULL OR c.last_fired + make_interval(secs => 2 * $3) <= $4 THEN $4
    ELSE c.last_fired + make_interval(secs => $3) END
FROM (SELECT tenant, id, last_fired FROM subscriptions
      WHERE tenant = $1 AND id = $2 AND is_active AND (expires_at IS NULL OR expires_at > $4)
        AND (last_fired IS NULL OR last_fired + make_interval(secs => $3) <= $4)
      FOR NO KEY UPDATE SKIP LOCKED) c
WHERE s.tenant = c.tenant AND s.id = c.id
RETURNING s.last_fired
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """A subscription claimed for delivery until the transaction ends, with its delivery state."""

    last_notification: datetime | None
    consecutive_errors: int


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued outbox row, as read for delivery."""

    id: int
    notification_id: str
    entity_id: str | None
    data: dict[str, Any]
    # The request that queued it (X-Request-Id of the notification) and when it was queued.
    request_id: str | None = None
    queued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one delivery attempt did: the rows delivered, and when it sent, succeeded, failed."""

    delivered: Sequence[int]
    notifications: int
    last_at: datetime
    last_ok_at: datetime | None
    error: str | None
    retry_at: datetime


async def due(executor: Executor, now: datetime, limit: int) -> list[tuple[str, str]]:
    """(tenant, id) of active subscriptions with queued rows whose next attempt is due, oldest first."""
    return [(row["tenant"], row["id"]) for row in await executor.fetch(_DUE, limit, now)]


async def claim(
    conn: Connection, tenant: str, subscription_id: str, *, due_only: bool, now: datetime
) -> Claim | None:
    """Lock the subscription for this transaction; None when another process has it, or when it is
    paused, expired or (``due_only``) not due yet."""
    row = await conn.fetchrow(_CLAIM, tenant, subscription_id, not due_only, now)
    return None if row is None else Claim(row["last_notification"], row["consecutive_errors"])


async def pending(conn: Connection, tenant: str, subscription_id: str, limit: int) -> list[Pending]:
    """The oldest ``limit`` rows queued for the subscription, in queue order."""
    return _rows(await conn.fetch(_PENDING, tenant, subscription_id, limit))


async def one_notification(
    conn: Connection, tenant: str, subscription_id: str, notification_id: str
) -> list[Pending]:
    """Every row of one notification, in queue order."""
    return _rows(await conn.fetch(_ONE_NOTIFICATION, tenant, subscription_id, notification_id))


async def seal(conn: Connection, runs: Sequence[tuple[Sequence[int], str]]) -> None:
    """Give each run of rows (ids) its shared notification id."""
    await conn.executemany(_SEAL, [(list(ids), nid) for ids, nid in runs])


async def record(conn: Connection, tenant: str, subscription_id: str, attempt: Attempt) -> None:
    """Remove the delivered rows and update the delivery state (clause 5.2.12) in one statement."""
    await conn.execute(
        _RECORD,
        tenant,
        subscription_id,
        list(attempt.delivered),
        attempt.notifications,
        attempt.last_at,
        attempt.error,
        attempt.last_ok_at,
        attempt.retry_at,
    )


async def not_before(conn: Connection, tenant: str, subscription_id: str, moment: datetime) -> None:
    """Hold the subscription's deliveries back until ``moment`` (throttling)."""
    await conn.execute(_NOT_BEFORE, tenant, subscription_id, moment)


async def active_tenants(executor: Executor) -> list[str]:
    """The tenants having at least one active subscription."""
    return [row["tenant"] for row in await executor.fetch(_ACTIVE_TENANTS)]


async def periodic_waits(
    executor: Executor, intervals: Sequence[tuple[str, str, float]], now: datetime
) -> list[tuple[str, str, float | None]]:
    """For (tenant, id, seconds) of periodic subscriptions: (tenant, id, seconds until due) of the
    active ones (None: never fired; 0 or less: due now)."""
    rows = await executor.fetch(
        _PERIODIC_WAITS,
        [tenant for tenant, _, _ in intervals],
        [sid for _, sid, _ in intervals],
        [secs for _, _, secs in intervals],
        now,
    )
    return [(row["tenant"], row["id"], row["wait"]) for row in rows]


async def fire(
    conn: Connection, tenant: str, subscription_id: str, interval: float, now: datetime
) -> datetime | None:
    """Mark a periodic subscription fired, once across processes; None when it is not due (any more)
    or another process holds it."""
    fired: datetime | None = await conn.fetchval(_FIRE, tenant, subscription_id, interval, now)
    return fired


def _rows(records: Sequence[Any]) -> list[Pending]:
    return [_pending(r) for r in records]


def _pending(record: Any) -> Pending:
    data = record["data"]
    request_id = data.pop(REQUEST_ID_MEMBER, None) if isinstance(data, dict) else None
    return Pending(
        record["id"], record["notification_id"], record["entity_id"], data, request_id, record["created_at"]
    )
