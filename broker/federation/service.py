"""Registrations and their subscriptions stored, one transaction each (clauses 5.9, 5.11).

Every registration write takes the tenant's registration lock, checks the exclusive rules of
4.3.6.3 against the other registrations, stores, and queues the CSourceNotifications it
causes (newlyMatching, updated, noLongerMatching: clause 5.3.2) in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from broker.errors import NgsiLdError, ResourceNotFound
from broker.federation.match import check_conflicts, lookup, subscription_selects
from broker.federation.model import Registration
from broker.federation.parse import compile_registration, render
from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextResolver
from broker.model.entity import format_time
from broker.notify.model import Subscription
from broker.notify.parse import compile_subscription
from broker.store import csource_subscriptions as subs
from broker.store import registrations as rows
from broker.store.csource_subscriptions import Queued
from broker.store.pool import Connection, Executor
from broker.store.registrations import StoredRegistration
from broker.store.subscriptions import StoredSubscription
from broker.store.tenants import Tenants

NEWLY_MATCHING = "newlyMatching"
UPDATED = "updated"
NO_LONGER_MATCHING = "noLongerMatching"

# Turns the stored registration into its new version (a PATCH's merge), inside its transaction.
Revise = Callable[[StoredRegistration], Registration]


def compiled(tenant: str, stored: StoredRegistration) -> Registration:
    """A stored registration compiled (it was valid when stored, so it compiles)."""
    return compile_registration(tenant, stored.id, stored.body)


def rendered(registration: Registration, stored: StoredRegistration | None, tm: TermMap) -> dict[str, Any]:
    """A registration compacted for ``tm``, with its id and (when stored) its system times."""
    body = {"id": registration.id, **render(registration.body, tm)}
    if stored is not None:
        body["createdAt"] = format_time(stored.created_at)
        body["modifiedAt"] = format_time(stored.modified_at)
    return body


class RegistrationService:
    """Context source registrations of every tenant, and the notifications their changes cause."""

    def __init__(self, pool: asyncpg.Pool, tenants: Tenants, resolver: ContextResolver) -> None:
        self._pool = pool
        self._tenants = tenants
        self._resolver = resolver

    async def registrations(
        self, executor: Executor | None, tenant: str
    ) -> list[tuple[Registration, StoredRegistration]]:
        """Every registration of ``tenant``, compiled, in id order."""
        stored = await rows.all_of(executor or self._pool, tenant)
        return [(compiled(tenant, s), s) for s in stored]

    async def lookup(
        self,
        tenant: str,
        entity_id: str | None,
        types: Iterable[str] | None,
        attrs: Iterable[str] | None,
        operation: str | None,
        *,
        now: datetime | None = None,
    ) -> list[Registration]:
        """The registrations of ``tenant`` that may answer ``operation`` (clause 4.3.6.2 name) for an
        entity (id, types) and attributes, names expanded; None: any. For distributed operations."""
        found = [r for r, _ in await self.registrations(None, tenant)]
        return lookup(found, entity_id, types, attrs, operation, now or datetime.now(UTC))

    async def create(self, registration: Registration) -> None:
        """Store a new registration; AlreadyExists (409) for a taken id or an exclusive conflict."""
        tenant = registration.tenant
        async with self._pool.acquire() as conn, conn.transaction():
            await self._tenants.ensure(conn, tenant)
            await rows.lock_tenant(conn, tenant)
            others = [r for r, _ in await self.registrations(conn, tenant)]
            check_conflicts(registration, others, datetime.now(UTC))
            await rows.insert(
                conn,
                tenant,
                registration.id,
                registration.body,
                registration.mode.value,
                registration.expires_at,
            )
            await self._notify(conn, tenant, None, registration)
        self._tenants.created(tenant)

    async def update(self, tenant: str, registration_id: str, revise: Revise) -> None:
        """Replace a registration by ``revise(stored)``; 404 if there is none, 409 on a conflict."""
        await self._tenants.require(self._pool, tenant)
        async with self._pool.acquire() as conn, conn.transaction():
            await rows.lock_tenant(conn, tenant)
            everything = await self.registrations(conn, tenant)
            found = next(((r, s) for r, s in everything if r.id == registration_id), None)
            if found is None:
                raise ResourceNotFound(f"registration {registration_id} does not exist")
            before, stored = found
            after = revise(stored)
            check_conflicts(after, [r for r, _ in everything], datetime.now(UTC))
            await rows.update(conn, tenant, registration_id, after.body, after.mode.value, after.expires_at)
            await self._notify(conn, tenant, before, after)

    async def delete(self, tenant: str, registration_id: str) -> None:
        await self._tenants.require(self._pool, tenant)
        async with self._pool.acquire() as conn, conn.transaction():
            await rows.lock_tenant(conn, tenant)
            stored = await rows.fetch(conn, tenant, registration_id)
            if stored is None:
                raise ResourceNotFound(f"registration {registration_id} does not exist")
            await rows.delete(conn, tenant, registration_id)
            await self._notify(conn, tenant, compiled(tenant, stored), None)

    # ---------------------------------------------------------------------------- notifications

    async def watchers(self, executor: Executor, tenant: str) -> list[Subscription]:
        """The tenant's active, unexpired registration subscriptions, compiled."""
        now = datetime.now(UTC)
        out = []
        for stored in await subs.all_of(executor, tenant, active_only=True):
            subscription = await self.compile_subscription(tenant, stored)
            if subscription is not None and not subscription.expired(now):
                out.append(subscription)
        return out

    async def compile_subscription(self, tenant: str, stored: StoredSubscription) -> Subscription | None:
        """A stored registration subscription compiled; None when its @context cannot be had now."""
        try:
            tm = await self._resolver.term_map(stored.context, tenant=tenant)
            wanted = stored.body.get("jsonldContext")
            notify_tm = (
                await self._resolver.term_map(wanted, tenant=tenant) if isinstance(wanted, str) else None
            )
        except NgsiLdError:
            return None
        return compile_subscription(tenant, stored.id, stored.body, tm, stored.context, notify_tm=notify_tm)

    async def _notify(
        self, conn: Connection, tenant: str, before: Registration | None, after: Registration | None
    ) -> None:
        """Queue, per subscription, the notification of 5.3.2 a change from ``before`` to ``after`` causes."""
        notes = []
        for subscription in await self.watchers(conn, tenant):
            reason = _trigger(subscription, before, after)
            if reason is None:
                continue
            shown = after if after is not None and reason != NO_LONGER_MATCHING else before
            assert shown is not None
            data = [{"id": shown.id, **render(shown.body, subscription.render_tm)}]
            notes.append(Queued(subscription.id, notification_id(), reason, data))
        await subs.enqueue(conn, tenant, notes)

    async def initial(self, conn: Connection, subscription: Subscription) -> None:
        """Queue the first notification of a new registration subscription: what matches now (5.11.2)."""
        now = datetime.now(UTC)
        matching = [
            {"id": r.id, **render(r.body, subscription.render_tm)}
            for r, _ in await self.registrations(conn, subscription.tenant)
            if not r.expired(now) and subscription_selects(subscription, r)
        ]
        if matching:
            note = Queued(subscription.id, notification_id(), NEWLY_MATCHING, matching)
            await subs.enqueue(conn, subscription.tenant, [note])


def notification_id() -> str:
    return f"urn:ngsi-ld:Notification:{uuid.uuid4()}"


def _trigger(
    subscription: Subscription, before: Registration | None, after: Registration | None
) -> str | None:
    """triggerReason of clause 5.3.2 for a change, or None when the subscription is not concerned."""
    was = before is not None and subscription_selects(subscription, before)
    now = after is not None and subscription_selects(subscription, after)
    if now:
        return UPDATED if was else NEWLY_MATCHING
    return NO_LONGER_MATCHING if was else None
