"""The subscriptions table (clause 5.8): tenant-scoped CRUD, each write announced to every process.

Every write runs ``pg_notify(ngsi_subscriptions, tenant<US>id)`` in its own
transaction (a savepoint when the caller already holds one), so the registries
of all broker processes reload exactly the rows that committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from broker.errors import AlreadyExists
from broker.jsonld.resolver import ContextRef
from broker.store.pool import Connection, Executor

# Every process's registry LISTENs here; the payload names the one subscription to reload.
SUBSCRIPTIONS_CHANNEL = "ngsi_subscriptions"
SEPARATOR = "\x1f"

_COLUMNS = """
    id, body, context, is_active, expires_at, created_at, modified_at, times_sent, times_failed,
    last_notification, last_success, last_failure, consecutive_errors, last_error_reason
"""


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    """One row: the body as stored, its @context, and the delivery state the notifiers keep."""

    id: str
    body: dict[str, Any]
    context: ContextRef
    is_active: bool
    expires_at: datetime | None
    created_at: datetime
    modified_at: datetime
    times_sent: int
    times_failed: int
    last_notification: datetime | None
    last_success: datetime | None
    last_failure: datetime | None
    consecutive_errors: int
    last_error_reason: str | None


@dataclass(frozen=True, slots=True)
class SubscriptionBody:
    """What a registry compiles a subscription from: its body as stored and its @context."""

    tenant: str
    id: str
    body: dict[str, Any]
    context: ContextRef


def change_payload(tenant: str, subscription_id: str) -> str:
    """The NOTIFY payload announcing a change of one subscription."""
    return f"{tenant}{SEPARATOR}{subscription_id}"


def changed(payload: str) -> tuple[str, str]:
    """(tenant, subscription id) of a ``change_payload``."""
    tenant, _, subscription_id = payload.partition(SEPARATOR)
    return tenant, subscription_id


def _stored(row: asyncpg.Record) -> StoredSubscription:
    return StoredSubscription(**dict(row))


async def bodies(executor: Executor) -> list[SubscriptionBody]:
    """Every subscription of every tenant, as a registry loads them."""
    rows = await executor.fetch("SELECT tenant, id, body, context FROM subscriptions")
    return [SubscriptionBody(**dict(row)) for row in rows]


async def body(executor: Executor, tenant: str, subscription_id: str) -> SubscriptionBody | None:
    """One subscription as a registry reloads it, or None once it is gone."""
    row = await executor.fetchrow(
        "SELECT tenant, id, body, context FROM subscriptions WHERE tenant = $1 AND id = $2",
        tenant,
        subscription_id,
    )
    return None if row is None else SubscriptionBody(**dict(row))


async def _announce(conn: Connection, tenant: str, subscription_id: str) -> None:
    await conn.execute(
        "SELECT pg_notify($1, $2)", SUBSCRIPTIONS_CHANNEL, change_payload(tenant, subscription_id)
    )


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
    """Store a new subscription; AlreadyExists (409) when the tenant has one with this id."""
    async with conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO subscriptions (tenant, id, body, context, is_active, expires_at)"
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
        await _announce(conn, tenant, subscription_id)


async def fetch(
    executor: Executor, tenant: str, subscription_id: str, *, for_update: bool = False
) -> StoredSubscription | None:
    """One subscription, or None; ``for_update`` locks the row until the caller's transaction ends."""
    lock = " FOR UPDATE" if for_update else ""
    row = await executor.fetchrow(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE tenant = $1 AND id = $2{lock}", tenant, subscription_id
    )
    return None if row is None else _stored(row)


async def page(
    executor: Executor, tenant: str, *, limit: int, offset: int, count: bool
) -> tuple[list[StoredSubscription], bool, int | None]:
    """A page of the tenant's subscriptions in id order, whether more follow, and the total if asked."""
    rows = await executor.fetch(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE tenant = $1 ORDER BY id LIMIT $2 OFFSET $3",
        tenant,
        limit + 1,
        offset,
    )
    total: int | None = None
    if count:
        total = await executor.fetchval("SELECT count(*) FROM subscriptions WHERE tenant = $1", tenant)
    return [_stored(row) for row in rows[:limit]], len(rows) > limit, total


async def update(
    conn: Connection,
    tenant: str,
    subscription_id: str,
    body: dict[str, Any],
    context: ContextRef,
    *,
    is_active: bool,
    expires_at: datetime | None,
) -> bool:
    """Replace the body (merged by the caller) and keep the columns derived from it in step."""
    async with conn.transaction():
        updated = await conn.fetchval(
            "UPDATE subscriptions SET body = $3, context = $4, is_active = $5, expires_at = $6,"
            " modified_at = now() WHERE tenant = $1 AND id = $2 RETURNING true",
            tenant,
            subscription_id,
            body,
            context,
            is_active,
            expires_at,
        )
        if updated:
            await _announce(conn, tenant, subscription_id)
        return bool(updated)


async def delete(conn: Connection, tenant: str, subscription_id: str) -> bool:
    """Delete a subscription (its queued notifications go with it); False when there was none."""
    async with conn.transaction():
        deleted = await conn.fetchval(
            "DELETE FROM subscriptions WHERE tenant = $1 AND id = $2 RETURNING true", tenant, subscription_id
        )
        if deleted:
            await _announce(conn, tenant, subscription_id)
        return bool(deleted)
