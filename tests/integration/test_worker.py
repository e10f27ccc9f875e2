"""The dispatcher on the real database: order, retries, back-off, isolation, throttling, periodic, MQTT.

Subscriptions are inserted with SQL and registered in a stub registry, and outbox rows
are queued with broker.store.outbox.insert as the write path does: the tests do not
depend on the subscription API. Each test has its own tenant and removes its subscriptions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from broker.jsonld.context import DEFAULT_VOCAB, core_term_map
from broker.model.entity import Entity, now
from broker.notify.matcher import OutboxRow
from broker.notify.model import Endpoint, EntitySelector, Subscription
from broker.notify.worker import Notifier, derived_id, notifications_of, postgres_pattern, seal_runs
from broker.query.qregex import translate_regex
from broker.query.types import parse_type_expr
from broker.store import outbox
from broker.store.entities import write
from broker.store.migrate import migrate
from broker.store.pool import create_pool
from tests.conftest import database_url
from tests.integration.test_delivery import (
    MQTT_HOST,
    MQTT_PORT,
    MqttListener,
    Receiver,
    closed_port,
    mqtt_topic,
    serving,
)

TM = core_term_map()
SEQ = itertools.count()


class Registry:
    """The part of SubscriptionRegistry the notifier uses."""

    def __init__(self) -> None:
        self.subscriptions: dict[tuple[str, str], Subscription] = {}

    def put(self, subscription: Subscription) -> None:
        self.subscriptions[(subscription.tenant, subscription.id)] = subscription

    def for_tenant(self, tenant: str) -> list[Subscription]:
        return [s for (t, _), s in self.subscriptions.items() if t == tenant]


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url(), min_size=2, max_size=20, connect_timeout=10)
    await migrate(created)
    yield created
    await created.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as recorder:
        yield recorder


@pytest.fixture
async def space(pool: asyncpg.Pool, tenant: str) -> AsyncIterator[Space]:
    await pool.execute("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
    created = Space(pool, tenant)
    yield created
    for notifier in created.notifiers:
        await notifier.stop(grace=0)
    await pool.execute("DELETE FROM subscriptions WHERE tenant = $1", tenant)


class Space:
    """One tenant's subscriptions, outbox and notifiers."""

    def __init__(self, pool: asyncpg.Pool, tenant: str) -> None:
        self.pool = pool
        self.tenant = tenant
        self.registry = Registry()
        self.notifiers: list[Notifier] = []

    async def subscribe(self, uri: str, registry: Registry | None = None, **options: Any) -> Subscription:
        endpoint = Endpoint(
            uri=uri,
            accept=options.pop("accept", "application/json"),
            notifier_info=options.pop("notifier_info", ()),
        )
        sid = f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex[:10]}"
        subscription = Subscription(
            tenant=self.tenant, id=sid, endpoint=endpoint, context=None, tm=TM, **options
        )
        await self.pool.execute(
            "INSERT INTO subscriptions (tenant, id, body, is_active, expires_at) VALUES ($1, $2, $3, $4, $5)",
            self.tenant,
            sid,
            {"id": sid, "type": "Subscription"},
            subscription.active,
            subscription.expires_at,
        )
        (registry or self.registry).put(subscription)
        return subscription

    async def queue(self, subscription: Subscription, *entity_ids: str) -> list[str]:
        """Queue one row per entity id, in one transaction as a write would; the rows' notification ids."""
        rows = [
            OutboxRow(
                subscription.id,
                f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
                entity_id,
                {"id": entity_id, "type": "Thing", "seq": {"type": "Property", "value": next(SEQ)}},
            )
            for entity_id in entity_ids
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await outbox.insert(conn, self.tenant, rows)
        return [row.notification_id for row in rows]

    async def start(
        self, registry: Registry | None = None, pool: asyncpg.Pool | None = None, **settings: Any
    ) -> Notifier:
        notifier = Notifier(pool or self.pool, registry or self.registry, **settings)
        await notifier.start()
        self.notifiers.append(notifier)
        return notifier

    async def pending(self, subscription: Subscription) -> int:
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE tenant = $1 AND subscription_id = $2",
            self.tenant,
            subscription.id,
        )
        return count

    async def state(self, subscription: Subscription) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM subscriptions WHERE tenant = $1 AND id = $2", self.tenant, subscription.id
        )
        assert row is not None
        return row


def seqs(requests: list[Any]) -> list[tuple[str, int]]:
    """(entity id, seq) of every entity in the notifications, in the order received."""
    return [(e["id"], e["seq"]["value"]) for r in requests for e in r.body["data"]]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------------ pure parts


def rows_of(spec: str) -> list[dict[str, Any]]:
    """Rows from "A1 B1 A2": entity letter and notification id digit, ids in order."""
    return [{"id": n, "entity_id": w[0], "notification_id": w[1:]} for n, w in enumerate(spec.split())]


def test_rows_sharing_an_id_are_one_notification_others_one_each() -> None:
    notes = notifications_of(rows_of("A1 B2 C2 A3 D2"))
    assert [(nid, [r["entity_id"] for r in rows]) for nid, rows in notes] == [
        ("1", ["A"]),
        ("2", ["B", "C", "D"]),
        ("3", ["A"]),
    ]


def test_one_entity_twice_under_one_id_is_split_with_derived_ids() -> None:
    notes = notifications_of(rows_of("A1 B1 A1"))
    assert [[r["entity_id"] for r in rows] for _, rows in notes] == [["A", "B"], ["A"]]
    assert notes[0][0] == "1"
    assert notes[1][0] == derived_id("1", "1") == notifications_of(rows_of("A1 B1 A1"))[1][0]


def test_a_throttled_release_merges_runs_of_distinct_entities_and_leaves_shared_ids() -> None:
    runs = seal_runs(rows_of("A1 B2 A3 C4 D5 D5 E6 F7 F8"))
    assert [[r["entity_id"] for r in run] for _, run in runs] == [["A", "B"], ["A", "C"], ["E", "F"]]
    assert runs[0][0] == derived_id("1", "2") != runs[1][0]
    assert seal_runs(rows_of("A1 A2 B3 B3")) == []


def test_compiled_id_patterns_translate_back_for_postgres() -> None:
    regex = translate_regex("(?i)^urn:ngsi-ld:Vehicle:plow-0\\d+$")
    compiled = re.compile(regex.python, re.DOTALL | re.IGNORECASE)
    assert postgres_pattern(compiled) == "(?i)" + regex.postgres


# ------------------------------------------------------------------------------------------ delivery


async def test_rows_are_delivered_in_order_then_removed(space: Space, receiver: Receiver) -> None:
    subscription = await space.subscribe(receiver.url("ordered"))
    entities = [f"urn:ngsi-ld:Thing:{n}" for n in "abc"]
    await space.start(batch_size=7)
    queued: list[str] = []
    for _ in range(4):
        queued += await space.queue(subscription, *entities, entities[0])
    await eventually(lambda: _zero(space, subscription))
    requests = receiver.at("ordered")
    assert [r.body["id"] for r in requests] == queued  # one notification per row, under its id
    assert [seq for _, seq in seqs(requests)] == sorted(seq for _, seq in seqs(requests))
    for request in requests:
        assert request.body["type"] == "Notification"
        assert request.body["subscriptionId"] == subscription.id
        assert len(request.body["data"]) == 1
    state = await space.state(subscription)
    assert state["times_sent"] == len(queued) == 16
    assert (state["times_failed"], state["consecutive_errors"]) == (0, 0)
    assert state["last_success"] == state["last_notification"] is not None


async def _zero(space: Space, subscription: Subscription) -> bool:
    return await space.pending(subscription) == 0


async def test_a_failed_notification_is_sent_again_with_the_same_id(space: Space, receiver: Receiver) -> None:
    subscription = await space.subscribe(receiver.url("flaky"))
    receiver.plan["flaky"] = [500]
    await space.start()
    (queued,) = await space.queue(subscription, "urn:ngsi-ld:Thing:x")
    first, second = await receiver.wait("flaky", 2)
    assert first.body["id"] == second.body["id"] == queued
    assert first.body["notifiedAt"] < second.body["notifiedAt"]
    await eventually(lambda: _zero(space, subscription))
    state = await space.state(subscription)
    assert (state["times_sent"], state["times_failed"], state["consecutive_errors"]) == (2, 1, 0)
    assert state["last_error_reason"] == "HTTP 500 Internal Server Error"
    assert state["last_failure"] < state["last_success"] == state["last_notification"]


async def test_a_delivery_cut_before_commit_is_repeated_with_the_same_id(
    space: Space, receiver: Receiver
) -> None:
    subscription = await space.subscribe(receiver.url("cut"))
    receiver.plan["cut"] = ["hang"]
    first_notifier = await space.start()
    (queued,) = await space.queue(subscription, "urn:ngsi-ld:Thing:y")
    await receiver.wait("cut", 1)
    await first_notifier.stop(grace=0)  # as a crash: the transaction rolls back
    assert await space.pending(subscription) == 1
    assert (await space.state(subscription))["times_sent"] == 0
    await space.start()
    first, second = await receiver.wait("cut", 2)
    assert first.body["id"] == second.body["id"] == queued
    await eventually(lambda: _zero(space, subscription))


async def test_a_row_queued_during_a_delivery_follows_it_without_waiting_for_the_poll(
    space: Space, receiver: Receiver
) -> None:
    subscription = await space.subscribe(receiver.url("busy"))
    receiver.plan["busy"] = ["slow"]
    await space.start(poll_interval=5.0)
    await space.queue(subscription, "urn:ngsi-ld:Thing:b")
    (first,) = await receiver.wait("busy", 1)
    await space.queue(subscription, "urn:ngsi-ld:Thing:b")  # while the first is being answered
    _, second = await receiver.wait("busy", 2, within=2.0)
    assert second.at - first.at < 0.6  # 0.3 s answer, then at once rather than at the next poll


async def test_failures_back_off_exponentially_and_are_recorded(space: Space, receiver: Receiver) -> None:
    subscription = await space.subscribe(receiver.url("down"))
    receiver.plan["down"] = [503, 503, 503, 503]
    await space.start()
    await space.queue(subscription, "urn:ngsi-ld:Thing:z")
    await receiver.wait("down", 3)
    await eventually(lambda: _errors(space, subscription, 3))
    state = await space.state(subscription)
    assert state["times_failed"] == 3
    assert state["last_error_reason"] == "HTTP 503 Service Unavailable"
    assert state["retry_at"] - state["last_failure"] == timedelta(seconds=2)
    attempts = await receiver.wait("down", 5, within=10)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    for gap, expected in zip(gaps, [0.5, 1, 2, 4], strict=True):
        assert expected - 0.05 < gap < expected + 0.35, gaps
    await eventually(lambda: _zero(space, subscription))
    state = await space.state(subscription)
    assert (state["times_failed"], state["consecutive_errors"], state["times_sent"]) == (4, 0, 5)


async def test_a_dead_endpoint_delays_neither_other_subscriptions_nor_writers(
    space: Space, receiver: Receiver
) -> None:
    receiver.plan["dead"] = ["hang"] * 10
    dead = [await space.subscribe(receiver.url("dead")) for _ in range(6)]
    alive = await space.subscribe(receiver.url("alive"))
    await space.start(http_timeout=3.0, per_endpoint=2, max_concurrent=4)
    for subscription in dead:
        await space.queue(subscription, "urn:ngsi-ld:Thing:d")
    hanging = await receiver.wait("dead", 2)
    await asyncio.sleep(0.2)
    assert len(receiver.at("dead")) == 2, "more than per_endpoint deliveries to one endpoint at once"
    # A writer queueing a row for a subscription being delivered is not blocked by the claim.
    busy = next(s for s in dead if s.id == hanging[0].body["subscriptionId"])
    await asyncio.wait_for(space.queue(busy, "urn:ngsi-ld:Thing:d2"), 0.5)
    started = asyncio.get_running_loop().time()
    await space.queue(alive, "urn:ngsi-ld:Thing:a")
    (request,) = await receiver.wait("alive", 1, within=1.0)
    latency = request.at - started
    assert latency < 0.5, latency
    await eventually(lambda: _failed(space, busy), within=5)
    assert (await space.state(busy))["last_error_reason"] == "no answer within 3 s"


async def _errors(space: Space, subscription: Subscription, count: int) -> bool:
    return bool((await space.state(subscription))["consecutive_errors"] == count)


async def _failed(space: Space, subscription: Subscription) -> bool:
    return bool((await space.state(subscription))["times_failed"] >= 1)


async def test_throttling_holds_notifications_back_then_sends_all_of_them(
    space: Space, receiver: Receiver
) -> None:
    subscription = await space.subscribe(receiver.url("throttled"), throttling=1.5)
    await space.start()
    a, b = "urn:ngsi-ld:Thing:a", "urn:ngsi-ld:Thing:b"
    await space.queue(subscription, a)
    (first,) = await receiver.wait("throttled", 1)
    await space.queue(subscription, a, b)
    await space.queue(subscription, a)
    await asyncio.sleep(1.0)
    assert len(receiver.at("throttled")) == 1
    _, second, third = await receiver.wait("throttled", 3, within=3)
    assert 1.45 < second.at - first.at < 1.9
    assert third.at - second.at < 0.3  # one release: everything pending goes out together
    assert [e for e, _ in seqs([second, third])] == [a, b, a]
    assert [e["id"] for e in second.body["data"]] == [a, b]
    await asyncio.sleep(0.2)
    assert await space.pending(subscription) == 0


async def test_a_merged_throttled_notification_is_retried_whole_under_the_same_id(
    space: Space, receiver: Receiver
) -> None:
    subscription = await space.subscribe(receiver.url("sealed"), throttling=0.5)
    receiver.plan["sealed"] = [204, 500]
    await space.start()
    a, b, c = "urn:ngsi-ld:Thing:a", "urn:ngsi-ld:Thing:b", "urn:ngsi-ld:Thing:c"
    await space.queue(subscription, a)
    await receiver.wait("sealed", 1)
    queued = await space.queue(subscription, a, b)
    _, failed = await receiver.wait("sealed", 2, within=3)
    await space.queue(subscription, c)  # arrives before the retry: not part of the sealed notification
    _, _, retried, *rest = await receiver.wait("sealed", 4, within=4)
    assert retried.body["id"] == failed.body["id"] == derived_id(*queued)
    assert retried.body["data"] == failed.body["data"]
    assert [e["id"] for e in retried.body["data"]] == [a, b]
    assert [e["id"] for e in rest[0].body["data"]] == [c]
    await eventually(lambda: _zero(space, subscription))


async def test_inactive_and_expired_subscriptions_are_not_delivered_to(
    space: Space, receiver: Receiver
) -> None:
    paused = await space.subscribe(receiver.url("paused"), active=False)
    expired = await space.subscribe(
        receiver.url("expired"), expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    notifier = await space.start()
    await space.queue(paused, "urn:ngsi-ld:Thing:p")
    await space.queue(expired, "urn:ngsi-ld:Thing:e")
    await asyncio.sleep(1.5)
    assert receiver.requests == []
    assert await space.pending(paused) == await space.pending(expired) == 1
    # Reactivated (as PATCH isActive would do): the rows that waited go out.
    await space.pool.execute(
        "UPDATE subscriptions SET is_active = true WHERE tenant = $1 AND id = $2", space.tenant, paused.id
    )
    space.registry.put(dataclasses.replace(paused, active=True))
    notifier.wake()
    await receiver.wait("paused", 1)
    assert receiver.at("expired") == []


# ------------------------------------------------------------------------------------------ periodic


async def test_a_periodic_subscription_fires_once_per_interval_across_two_notifiers(
    space: Space, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    stamp = now()
    things = [
        Entity(
            id=f"urn:ngsi-ld:Thing:{space.tenant}-{n}",
            types=[DEFAULT_VOCAB + "Thing"],
            attrs={DEFAULT_VOCAB + "level": [{"type": "Property", "value": n}]},
            created_at=stamp,
            modified_at=stamp,
        )
        for n in range(2)
    ]
    async with pool.acquire() as conn, conn.transaction():
        assert await write(conn, space.tenant, things, [], []) == []
    selector = EntitySelector(types=parse_type_expr("Thing", TM))
    other = Registry()
    subscription = await space.subscribe(receiver.url("periodic"), entities=(selector,), time_interval=1.0)
    other.put(subscription)
    second_pool = await create_pool(database_url(), min_size=1, max_size=8, connect_timeout=10)
    try:
        await space.start()
        second = Notifier(second_pool, other)
        await second.start()
        await asyncio.sleep(3.4)
        await second.stop(grace=0)
    finally:
        await second_pool.close()
    # Delivery is at least once: a notifier stopped in the middle of a POST leaves its row to the
    # other one, which sends it again with the same id. Receivers drop those; so does the test.
    firsts: dict[str, Any] = {}
    for request in receiver.at("periodic"):
        firsts.setdefault(request.body["id"], request)
    requests = list(firsts.values())
    assert 3 <= len(requests) <= 4, [r.at for r in requests]
    for request in requests:
        assert sorted(e["id"] for e in request.body["data"]) == [t.id for t in things]
        assert request.body["data"][0]["level"] == {"type": "Property", "value": 0}
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(requests)]
    assert all(0.9 < gap < 1.15 for gap in gaps), gaps  # once per interval, on time
    assert (await space.state(subscription))["last_fired"] is not None


# ------------------------------------------------------------------------------------------ MQTT


@pytest.mark.parametrize("qos", ["0", "1"])
async def test_mqtt_subscriptions_are_delivered_in_order_at_their_qos(space: Space, qos: str) -> None:
    topic = mqtt_topic()
    subscription = await space.subscribe(
        f"mqtt://{MQTT_HOST}:{MQTT_PORT}/{topic}", notifier_info=(("MQTT-QoS", qos),)
    )
    async with MqttListener(topic) as listener:
        await space.start()
        queued = await space.queue(subscription, "urn:ngsi-ld:Thing:m", "urn:ngsi-ld:Thing:m")
        messages = await listener.wait(2)
    payloads = [orjson.loads(m.payload) for m in messages]
    assert [p["body"]["id"] for p in payloads] == queued
    assert [m.qos for m in messages] == [int(qos)] * 2
    assert payloads[0]["metadata"]["NGSILD-Tenant"] == space.tenant
    await eventually(lambda: _zero(space, subscription))


async def test_an_unreachable_mqtt_broker_is_retried_with_back_off(space: Space) -> None:
    subscription = await space.subscribe(
        f"mqtt://127.0.0.1:{closed_port()}/t", notifier_info=(("MQTT-QoS", "1"),)
    )
    await space.start()
    await space.queue(subscription, "urn:ngsi-ld:Thing:q")
    await eventually(lambda: _failed(space, subscription))
    state = await space.state(subscription)
    assert state["last_error_reason"].startswith("MQTT connect failed")
    assert await space.pending(subscription) == 1


# ------------------------------------------------------------------------------------------ two processes


async def test_two_notifiers_on_one_database_send_each_notification_once(
    space: Space, receiver: Receiver
) -> None:
    """No fault, two processes racing for the same subscriptions: not one notification twice.

    Claiming a subscription that the other process has just delivered must not read rows that
    process deleted (issue 11, defect 8: 8-30 duplicates of 2,400 before the fix).
    """
    subscriptions = [await space.subscribe(receiver.url("race")) for _ in range(8)]
    other = Registry()
    for subscription in subscriptions:
        other.put(subscription)
    second_pool = await create_pool(database_url(), min_size=1, max_size=8, connect_timeout=10)
    try:
        await space.start()
        await space.start(other, pool=second_pool)
        queued = [
            nid
            for n in range(300)
            for subscription in subscriptions
            for nid in await space.queue(subscription, f"urn:ngsi-ld:Thing:{n}")
        ]
        await eventually(lambda: _all_delivered(space, subscriptions), within=60)
    finally:
        for notifier in space.notifiers:
            await notifier.stop(grace=0)
        space.notifiers.clear()
        await second_pool.close()
    received = Counter(request.body["id"] for request in receiver.at("race"))
    assert set(received) == set(queued)
    assert {nid: n for nid, n in received.items() if n > 1} == {}


async def _all_delivered(space: Space, subscriptions: list[Subscription]) -> bool:
    return all([await space.pending(subscription) == 0 for subscription in subscriptions])
