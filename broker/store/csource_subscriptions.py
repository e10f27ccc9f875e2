"""Registration subscriptions (clause 5.11) and the durable outbox of their CSourceNotifications.

Rows have the columns of ``subscriptions`` (0003), read as ``StoredSubscription``. Outbox rows are
written in the transaction of the registration change that caused them (a notification is
never lost between commit and delivery, nor sent for a change that rolled back); delivery
claims a subscription with ``FOR NO KEY UPDATE SKIP LOCKED`` and deletes what it sent in the
same commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.errors import AlreadyExists
from broker.jsonld.resolver import ContextRef
from broker.store.pool import Connection, Executor
from broker.store.subscriptions import StoredSubscription

# The CSourceNotifier LISTENs here; the payload is the tenant (a hint: it re-checks the table).
CSOURCE_OUTBOX_CHANNEL = "ngsi_csource_outbox"

_COLUMNS = """
    id, body, context, is_active, expires_at, created_at, modified_at, times_sent, times_failed,
    last_notification, last_success, last_failure, consecutive_errors, last_error_reason
"""


@dataclass(frozen=True, slots=True)
class Queued:
    """One CSourceNotification to come: the registrations (rendered) and why they are sent."""

    subscription_id: str
    notification_id: str
    trigger_reason: str
    data: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PendingNote:
    id: int
    notification_id: str
    trigger_reason: str
    data: list[dict[str, Any]]


async def insert(
    conn: Connection,
    tenant: str,
    subscription_id: str,
    body: dict[str, Any],
    context: ContextRef,
    *,
    is_active: bool,
    expires_at: datetime | None,
) -> None:
    """Store a new registration subscription; AlreadyExists (409) when the id is taken."""
    inserted = await conn.fetchval(
        "INSERT INTO csource_subscriptions (tenant, id, body, context, is_active, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, id) DO NOTHING RETURNING true",
        tenant,
        subscription_id,
        body,
        context,
        is_active,
        expires_at,
    )
    if not inserted:
        raise AlreadyExists(f"subscription {subscription_id} already exists")


async def fetch(
    executor: Executor, tenant: str, subscription_id: str, *, for_update: bool = False
) -> StoredSubscription | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await executor.fetchrow(
        f"SELECT {_COLUMNS} FROM csource_subscriptions WHERE tenant = $1 AND id = $2{lock}",
        tenant,
        subscription_id,
    )
    return None if row is None else StoredSubscription(**dict(row))


async def all_of(executor: Executor, tenant: str, *, active_only: bool = False) -> list[StoredSubscription]:
    """The tenant's registration subscriptions in id order (only the active ones if asked)."""
    where = " AND is_active" if active_only else ""
    rows = await executor.fetch(
        f"SELECT {_COLUMNS} FROM csource_subscriptions WHERE tenant = $1{where} ORDER BY id", tenant
    )
    return [StoredSubscription(**dict(row)) for row in rows]


async def update(
    conn: Connection,
    tenant: str,
    subscription_id: str,
    body: dict[str, Any],
    *,
    is_active: bool,
    expires_at: datetime | None,
) -> None:
    await conn.execute(
        "UPDATE csource_subscriptions SET body = $3, is_active = $4, expires_at = $5, modified_at = now()"
        " WHERE tenant = $1 AND id = $2",
        tenant,
        subscription_id,
        body,
        is_active,
        expires_at,
    )


async def delete(conn: Connection, tenant: str, subscription_id: str) -> bool:
    """Delete a registration subscription (its queued notifications go with it)."""
    deleted = await conn.fetchval(
        "DELETE FROM csource_subscriptions WHERE tenant = $1 AND id = $2 RETURNING true",
        tenant,
        subscription_id,
    )
    return bool(deleted)


# -------------------------------------------------------------------------------------- outbox


async def enqueue(conn: Connection, tenant: str, notes: Sequence[Queued]) -> None:
    """Queue ``notes`` in order and wake the notifiers when the transaction commits."""
    if not notes:
        return
    await conn.executemany(
        "INSERT INTO csource_outbox (tenant, subscription_id, notification_id, trigger_reason, data)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(tenant, n.subscription_id, n.notification_id, n.trigger_reason, n.data) for n in notes],
    )
    await conn.execute("SELECT pg_notify($1, $2)", CSOURCE_OUTBOX_CHANNEL, tenant)


async def due(executor: Executor, now: datetime, limit: int) -> list[tuple[str, str]]:
    """(tenant, id) of active, unexpired subscriptions with queued notifications due now."""
    rows = await executor.fetch(
        "SELECT s.tenant, s.id FROM csource_subscriptions s"
        " WHERE s.retry_at <= $2 AND s.is_active AND (s.expires_at IS NULL OR s.expires_at > $2)"
        " AND EXISTS (SELECT 1 FROM csource_outbox o WHERE o.tenant = s.tenant AND o.subscription_id = s.id)"
        " ORDER BY s.retry_at LIMIT $1",
        limit,
        now,
    )
    return [(row["tenant"], row["id"]) for row in rows]


async def claim(conn: Connection, tenant: str, subscription_id: str, now: datetime) -> int | None:
    """Lock a due subscription for this transaction: its consecutive errors, or None when another
    process has it or it is not due (any more)."""
    errors: int | None = await conn.fetchval(
        "SELECT consecutive_errors FROM csource_subscriptions WHERE tenant = $1 AND id = $2"
        " AND retry_at <= $3 AND is_active AND (expires_at IS NULL OR expires_at > $3)"
        " FOR NO KEY UPDATE SKIP LOCKED",
        tenant,
        subscription_id,
        now,
    )
    return errors


async def pending(conn: Connection, tenant: str, subscription_id: str, limit: int) -> list[PendingNote]:
    rows = await conn.fetch(
        "SELECT id, notification_id, trigger_reason, data FROM csource_outbox"
        " WHERE tenant = $1 AND subscription_id = $2 ORDER BY id LIMIT $3",
        tenant,
        subscription_id,
        limit,
    )
    return [PendingNote(r["id"], r["notification_id"], r["trigger_reason"], r["data"]) for r in rows]


async def record(
    conn: Connection,
    tenant: str,
    subscription_id: str,
    delivered: Sequence[int],
    *,
    at: datetime,
    error: str | None,
    retry_at: datetime,
) -> None:
    """Remove the delivered rows and update the delivery state (clause 5.2.12) in one statement."""
    await conn.execute(
        """
        WITH delivered AS (DELETE FROM csource_outbox WHERE id = ANY($3::bigint[]))
        UPDATE csource_subscriptions SET
            times_sent = times_sent + $4,
            times_failed = times_failed + CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END,
            last_notification = $6,
            last_success = CASE WHEN cardinality($3::bigint[]) > 0 THEN $6 ELSE last_success END,
            last_failure = CASE WHEN $5::text IS NULL THEN last_failure ELSE $6 END,
            consecutive_errors = CASE WHEN $5::text IS NULL THEN 0 ELSE consecutive_errors + 1 END,
            last_error_reason = COALESCE($5, last_error_reason),
            retry_at = $7
        WHERE tenant = $1 AND id = $2
        """,
        tenant,
        subscription_id,
        list(delivered),
        len(delivered) + (0 if error is None else 1),
        error,
        at,
        retry_at,
    )
