"""The subscriptions every broker process matches against, kept coherent with LISTEN/NOTIFY.

Each process holds all active subscriptions compiled in memory (matching runs
inside every write, so it must not query the database). A create, update or
delete in any process notifies ``ngsi_subscriptions`` with "tenant<US>id" in the
same transaction; every process then reloads that one subscription.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from broker.errors import NgsiLdError
from broker.jsonld.resolver import ContextResolver
from broker.notify.model import Subscription
from broker.notify.parse import compile_subscription
from broker.store import subscriptions as rows
from broker.store.listener import Listener
from broker.store.pool import Connection
from broker.store.subscriptions import SUBSCRIPTIONS_CHANNEL, SubscriptionBody
from broker.supervise import Supervisor

log = logging.getLogger(__name__)

# The supervised part that keeps the registry's LISTEN (named on /ready while it is lost).
LISTENER = "subscriptions.listener"


class SubscriptionRegistry:
    """Compiled subscriptions by tenant, for the matcher."""

    def __init__(self, pool: asyncpg.Pool, resolver: ContextResolver) -> None:
        self._pool = pool
        self._resolver = resolver
        self._by_tenant: dict[str, dict[str, Subscription]] = {}
        self._listener = Listener(pool, SUBSCRIPTIONS_CHANNEL, self._on_notify, self.load_all)
        self._tasks: set[asyncio.Task[None]] = set()
        # One log per reload in progress: the puts and removes made while it reads, replayed in
        # order over what it read, so a subscription created during a reload is not swapped out.
        self._reloading: list[list[tuple[str, str, Subscription | None]]] = []

    def for_tenant(self, tenant: str) -> list[Subscription]:
        return list(self._by_tenant.get(tenant, {}).values())

    def put(self, subscription: Subscription) -> None:
        _apply(self._by_tenant, subscription.tenant, subscription.id, subscription)
        for changes in self._reloading:
            changes.append((subscription.tenant, subscription.id, subscription))

    def remove(self, tenant: str, subscription_id: str) -> None:
        _apply(self._by_tenant, tenant, subscription_id, None)
        for changes in self._reloading:
            changes.append((tenant, subscription_id, None))

    async def _compile(self, stored: SubscriptionBody) -> Subscription | None:
        try:
            tm = await self._resolver.term_map(stored.context, tenant=stored.tenant)
            wanted = stored.body.get("jsonldContext")
            notify_tm = None
            if isinstance(wanted, str):
                notify_tm = await self._resolver.term_map(wanted, tenant=stored.tenant)
            return compile_subscription(
                stored.tenant, stored.id, stored.body, tm, stored.context, notify_tm=notify_tm
            )
        except NgsiLdError as exc:
            # A stored subscription whose @context vanished: keep serving the others, say why.
            log.error(
                "subscription %s of tenant %r cannot be loaded: %s", stored.id, stored.tenant, exc.detail
            )
            return None

    async def load_all(self) -> None:
        """Read every subscription again and swap them in whole (deletions missed are dropped).

        Changes made while it reads (a create answered meanwhile, a NOTIFY's refresh) are each
        newer than what the database gave or as new, so they are applied again over the result.
        """
        loaded: dict[str, dict[str, Subscription]] = {}
        changes: list[tuple[str, str, Subscription | None]] = []
        self._reloading.append(changes)
        try:
            for stored in await rows.bodies(self._pool):
                subscription = await self._compile(stored)
                if subscription is not None:
                    loaded.setdefault(subscription.tenant, {})[subscription.id] = subscription
        finally:
            self._reloading.remove(changes)
        for tenant, subscription_id, changed in changes:
            _apply(loaded, tenant, subscription_id, changed)
        self._by_tenant = loaded
        log.info("loaded %d subscriptions", sum(len(s) for s in self._by_tenant.values()))

    async def refresh(self, tenant: str, subscription_id: str) -> None:
        """Reload one subscription from the database (or forget it when it is gone)."""
        stored = await rows.body(self._pool, tenant, subscription_id)
        subscription = None if stored is None else await self._compile(stored)
        if subscription is None:
            self.remove(tenant, subscription_id)
        else:
            self.put(subscription)

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        tenant, subscription_id = rows.changed(str(payload))
        task = asyncio.get_running_loop().create_task(self.refresh(tenant, subscription_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, supervisor: Supervisor) -> None:
        """Listen first, then load, so no change between the two is missed; after a lost
        connection the listener listens again and everything is reloaded."""
        await self._listener.start(supervisor, LISTENER)
        await self.load_all()

    async def stop(self) -> None:
        await self._listener.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _apply(
    by_tenant: dict[str, dict[str, Subscription]],
    tenant: str,
    subscription_id: str,
    subscription: Subscription | None,
) -> None:
    """Put ``subscription`` under its id, or forget the id when it is None."""
    if subscription is None:
        by_tenant.get(tenant, {}).pop(subscription_id, None)
    else:
        by_tenant.setdefault(tenant, {})[subscription_id] = subscription
