"""The subscription registry keeps what changed while it reloads everything (after a lost LISTEN).

A reload reads every subscription and swaps the result in whole; a subscription created (or
deleted) between its read and its swap must survive it, or a subscription answered 201 would
never notify until the next reload. The database read is replaced by one the test holds open.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg
import pytest

from broker.jsonld.context import core_term_map
from broker.jsonld.resolver import ContextResolver
from broker.notify.model import Endpoint, Subscription
from broker.notify.registry import SubscriptionRegistry
from broker.store import subscriptions as stored_subscriptions
from broker.store.subscriptions import SubscriptionBody


def subscription(tenant: str, sid: str) -> Subscription:
    endpoint = Endpoint(uri="http://127.0.0.1:9/notify", accept="application/json", notifier_info=())
    return Subscription(tenant=tenant, id=sid, endpoint=endpoint, context=None, tm=core_term_map())


class HeldRead:
    """The registry's read of every stored subscription, answering [] when the test lets it."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def bodies(self, _pool: Any) -> list[SubscriptionBody]:
        self.reading.set()
        await self.release.wait()
        return []


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> HeldRead:
    read = HeldRead()
    monkeypatch.setattr(stored_subscriptions, "bodies", read.bodies)
    return read


def registry() -> SubscriptionRegistry:
    # Neither the pool nor the resolver is reached: the read is held, and it returns nothing to compile.
    return SubscriptionRegistry(cast(asyncpg.Pool, None), cast(ContextResolver, None))


async def test_a_subscription_put_during_a_reload_is_kept(held: HeldRead) -> None:
    subscriptions = registry()
    reload = asyncio.create_task(subscriptions.load_all())
    await held.reading.wait()
    subscriptions.put(subscription("flood", "urn:ngsi-ld:Subscription:new"))
    held.release.set()
    await reload
    assert [s.id for s in subscriptions.for_tenant("flood")] == ["urn:ngsi-ld:Subscription:new"]


async def test_a_subscription_removed_during_a_reload_stays_removed(held: HeldRead) -> None:
    subscriptions = registry()
    subscriptions.put(subscription("flood", "urn:ngsi-ld:Subscription:old"))
    reload = asyncio.create_task(subscriptions.load_all())
    await held.reading.wait()
    subscriptions.put(subscription("flood", "urn:ngsi-ld:Subscription:brief"))
    subscriptions.remove("flood", "urn:ngsi-ld:Subscription:brief")
    held.release.set()
    await reload
    # "old" was not in what the reload read (deleted elsewhere, its NOTIFY missed): dropped.
    assert subscriptions.for_tenant("flood") == []


async def test_changes_after_a_reload_are_not_replayed_into_the_next(held: HeldRead) -> None:
    subscriptions = registry()
    held.release.set()
    await subscriptions.load_all()
    subscriptions.put(subscription("flood", "urn:ngsi-ld:Subscription:later"))
    await subscriptions.load_all()
    assert subscriptions.for_tenant("flood") == []
