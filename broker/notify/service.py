"""Creating, changing and deleting subscriptions (clauses 5.8.1, 5.8.2, 5.8.5): one transaction each.

The API parses and compiles a body (broker.notify.parse); this stores it, creating the tenant
inside the same transaction, and puts the compiled subscription in this process's registry
once committed (the other processes reload it on the NOTIFY of that commit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from broker.errors import AlreadyExists, ResourceNotFound
from broker.jsonld.resolver import ContextRef
from broker.notify.model import Subscription
from broker.notify.registry import SubscriptionRegistry
from broker.store import subscriptions as rows
from broker.store.subscriptions import StoredSubscription
from broker.store.tenants import Tenants


@dataclass(frozen=True, slots=True)
class Prepared:
    """A subscription ready to store: compiled, and the body and @context to keep."""

    compiled: Subscription
    body: dict[str, Any]
    context: ContextRef


# Turns the stored subscription into its new version (an update's merge), inside its transaction.
Revise = Callable[[StoredSubscription], Awaitable[Prepared]]
# One URL that stands for an inline @context (the API hosts it, clause 5.13.2).
HostContext = Callable[[ContextRef], Awaitable[str]]


class SubscriptionService:
    """The subscriptions of every tenant: stored, announced, and registered in this process."""

    def __init__(self, pool: asyncpg.Pool, tenants: Tenants, registry: SubscriptionRegistry) -> None:
        self._pool = pool
        self._tenants = tenants
        self._registry = registry

    async def create(self, prepared: Prepared, host_context: HostContext) -> None:
        """Store a new subscription (creating its tenant); AlreadyExists when the id is taken."""
        compiled, context = prepared.compiled, prepared.context
        tenant = compiled.tenant
        if await rows.fetch(self._pool, tenant, compiled.id) is not None:
            # Checked before hosting an inline @context, so a repeated request leaves nothing behind.
            raise AlreadyExists(f"subscription {compiled.id} already exists")
        if context is not None and not isinstance(context, str):
            hosted = await host_context(context)
            if compiled.context == context:  # not replaced by a jsonldContext
                compiled = replace(compiled, context=hosted)
            context = hosted
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
        self._tenants.created(tenant)
        self._registry.put(compiled)

    async def update(self, tenant: str, subscription_id: str, revise: Revise) -> None:
        """Replace a subscription by ``revise(stored)``, the row locked meanwhile; 404 if there is none."""
        await self._tenants.require(self._pool, tenant)
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await rows.fetch(conn, tenant, subscription_id, for_update=True)
            if stored is None:
                raise ResourceNotFound(f"subscription {subscription_id} does not exist")
            prepared = await revise(stored)
            compiled = prepared.compiled
            await rows.update(
                conn,
                tenant,
                subscription_id,
                prepared.body,
                prepared.context,
                is_active=compiled.active,
                expires_at=compiled.expires_at,
            )
        self._registry.put(compiled)

    async def delete(self, tenant: str, subscription_id: str) -> None:
        """Delete a subscription and its queued notifications; 404 if there is none."""
        await self._tenants.require(self._pool, tenant)
        async with self._pool.acquire() as conn:
            deleted = await rows.delete(conn, tenant, subscription_id)
        if not deleted:
            raise ResourceNotFound(f"subscription {subscription_id} does not exist")
        self._registry.remove(tenant, subscription_id)
