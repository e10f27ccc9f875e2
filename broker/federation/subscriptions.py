"""Registration subscriptions stored (clauses 5.11.2-5.11.6): one transaction each.

A body is a Subscription (5.2.12) compiled by broker.notify.parse, stored compacted with its
@context like an entity subscription, in a table of its own: it is matched against
registration changes (broker.federation.service), never against entity changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from broker.errors import AlreadyExists, ResourceNotFound
from broker.federation.service import RegistrationService
from broker.notify.service import HostContext, Prepared
from broker.store import csource_subscriptions as rows
from broker.store.subscriptions import StoredSubscription
from broker.store.tenants import Tenants

Revise = Callable[[StoredSubscription], Awaitable[Prepared]]


class CSourceSubscriptions:
    def __init__(self, pool: asyncpg.Pool, tenants: Tenants, registrations: RegistrationService) -> None:
        self._pool = pool
        self._tenants = tenants
        self._registrations = registrations

    async def create(self, prepared: Prepared, host_context: HostContext) -> None:
        """Store a new subscription and queue its first notification; AlreadyExists when the id is taken."""
        compiled, context = prepared.compiled, prepared.context
        tenant = compiled.tenant
        if await rows.fetch(self._pool, tenant, compiled.id) is not None:
            raise AlreadyExists(f"subscription {compiled.id} already exists")
        if context is not None and not isinstance(context, str):
            context = await host_context(context)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._tenants.ensure(conn, tenant)
            await rows.insert(
                conn,
                tenant,
                compiled.id,
                prepared.body,
                context,
                is_active=compiled.active,
                expires_at=compiled.expires_at,
            )
            if compiled.active:
                await self._registrations.initial(conn, compiled)
        self._tenants.created(tenant)

    async def update(self, tenant: str, subscription_id: str, revise: Revise) -> None:
        """Replace a subscription by ``revise(stored)``, the row locked meanwhile; 404 if there is none."""
        await self._tenants.require(self._pool, tenant)
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await rows.fetch(conn, tenant, subscription_id, for_update=True)
            if stored is None:
                raise ResourceNotFound(f"subscription {subscription_id} does not exist")
            prepared = await revise(stored)
            await rows.update(
                conn,
                tenant,
                subscription_id,
                prepared.body,
                is_active=prepared.compiled.active,
                expires_at=prepared.compiled.expires_at,
            )

    async def delete(self, tenant: str, subscription_id: str) -> None:
        await self._tenants.require(self._pool, tenant)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await rows.delete(conn, tenant, subscription_id):
                raise ResourceNotFound(f"subscription {subscription_id} does not exist")
