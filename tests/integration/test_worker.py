"""The dispatcher on the real database: order, retries, back-off, isolation, throttling, periodic, MQTT.

Subscriptions are inserted with SQL and registered in a stub registry, and outbox rows
are queued with broker.store.outbox.insert as the write path does: the tests do not
depend on the subscription API. Each test has its own tenant and removes its subscriptions.

Time is a ManualClock: back-off, throttling, periodic firing and polling wait on it, so a
test moves it by exactly what it means and waits (``eventually``) for what must follow;
nothing depends on how fast the machine runs. Network timeouts stay on real time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.api import health
from broker.api.keys import POOL, STATUS, SUPERVISOR
from broker.jsonld.context import DEFAULT_VOCAB, core_term_map
from broker.model.entity import Entity, now, parse_time
from broker.notify.dispatcher import DISPATCHER, LISTENER, Notifier
from broker.notify.endpoints import notify_policy
from broker.notify.grouping import derived_id, notifications_of, seal_runs, whole_batch
from broker.notify.model import Endpoint, EntitySelector, Subscription
from broker.notify.periodic import postgres_pattern
from broker.query.qregex import translate_regex
from broker.query.types import parse_type_expr
from broker.store import outbox
from broker.store.delivery import Pending
from broker.store.entities import write
from broker.store.faults import TRANSIENT
from broker.store.migrate import migrate
from broker.store.outbox import OutboxRow
from broker.store.pool import create_pool
from broker.supervise import Supervisor
from tests.clock import ManualClock
from tests.conftest import database_url, eventually
from tests.integration.test_delivery import (
    MQTT_HOST,
    MQTT_PORT,
    MqttListener,
    Received,
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


class FaultyRegistry(Registry):
    """A registry whose first ``faults`` reads raise, as a bug in the dispatch loop would."""

    def __init__(self, faults: int) -> None:
        super().__init__()
        self.faults = faults

    def for_tenant(self, tenant: str) -> list[Subscription]:
        if self.faults > 0:
            self.faults -= 1
            raise RuntimeError("registry fault injected by the test")
        return super().for_tenant(tenant)


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
    await created.stop()
    await pool.execute("DELETE FROM subscriptions WHERE tenant = $1", tenant)


class Space:
    """One tenant's subscriptions, outbox and notifiers, on one hand-driven clock."""

    def __init__(self, pool: asyncpg.Pool, tenant: str) -> None:
        self.pool = pool
        self.tenant = tenant
        self.clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
        self.registry = Registry()
        self.notifiers: list[tuple[Notifier, Supervisor]] = []

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
        supervisor = Supervisor(self.clock)
        # The receivers listen on 127.0.0.1 (the address policy's own tests: test_endpoint_policy).
        settings.setdefault("policy", notify_policy(allow_private=True))
        notifier = Notifier(pool or self.pool, registry or self.registry, clock=self.clock, **settings)
        await notifier.start(supervisor)
        self.notifiers.append((notifier, supervisor))
        return notifier

    async def stop(self) -> None:
        for notifier, supervisor in self.notifiers:
            await notifier.stop(grace=0)
            await supervisor.stop()
        self.notifiers.clear()

    async def settle(self) -> None:
        """Until every notifier has scanned at the clock's present time and has nothing in flight:
        whatever is due now has been delivered, so what has not been is not due."""
        for notifier, _ in self.notifiers:
            await eventually(_settled(notifier), what="a settled notifier")

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

    async def delivered(self, subscription: Subscription) -> bool:
        return await self.pending(subscription) == 0

    async def errors_are(self, subscription: Subscription, count: int) -> bool:
        return bool((await self.state(subscription))["consecutive_errors"] == count)

    async def failed(self, subscription: Subscription) -> bool:
        return bool((await self.state(subscription))["times_failed"] >= 1)


def _settled(notifier: Notifier) -> Callable[[], bool]:
    """A check that holds once ``notifier`` has scanned since now, with nothing left in flight."""
    before = notifier.scans
    notifier.wake()
    return lambda: notifier.scans > before and notifier.idle


def seqs(requests: list[Received]) -> list[tuple[str, int]]:
    """(entity id, seq) of every entity in the notifications, in the order received."""
    return [(e["id"], e["seq"]["value"]) for r in requests for e in r.body["data"]]


def sent_at(request: Received) -> datetime:
    """notifiedAt: when the notifier sent it, on its clock."""
    return parse_time(request.body["notifiedAt"])


def gap(earlier: Received, later: Received) -> float:
    return (sent_at(later) - sent_at(earlier)).total_seconds()


async def ready(supervisor: Supervisor, pool: asyncpg.Pool) -> tuple[int, dict[str, Any]]:
    """What /ready answers for ``supervisor``'s parts (the broker's own handler, on a loopback port)."""
    app = web.Application()
    app[SUPERVISOR] = supervisor
    app[POOL] = pool
    app[STATUS] = {}
    app.router.add_routes(health.routes)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get("/ready")
        body: dict[str, Any] = await response.json()
        return response.status, body


# ------------------------------------------------------------------------------------------ pure parts


def rows_of(spec: str) -> list[Pending]:
    """Rows from "A1 B1 A2": entity letter and notification id digit, ids in order."""
    return [Pending(n, w[1:], w[0], {}) for n, w in enumerate(spec.split())]


def test_rows_sharing_an_id_are_one_notification_others_one_each() -> None:
    notes = notifications_of(rows_of("A1 B2 C2 A3 D2"))
    assert [(nid, [r.entity_id for r in rows]) for nid, rows in notes] == [
        ("1", ["A"]),
        ("2", ["B", "C", "D"]),
        ("3", ["A"]),
    ]


def test_one_entity_twice_under_one_id_is_split_with_derived_ids() -> None:
    notes = notifications_of(rows_of("A1 B1 A1"))
    assert [[r.entity_id for r in rows] for _, rows in notes] == [["A", "B"], ["A"]]
    assert notes[0][0] == "1"
    assert notes[1][0] == derived_id("1", "1") == notifications_of(rows_of("A1 B1 A1"))[1][0]


def test_a_throttled_release_merges_runs_of_distinct_entities_and_leaves_shared_ids() -> None:
    runs = seal_runs(rows_of("A1 B2 A3 C4 D5 D5 E6 F7 F8"))
    assert [[r.entity_id for r in run] for _, run in runs] == [["A", "B"], ["A", "C"], ["E", "F"]]
    assert runs[0][0] == derived_id("1", "2") != runs[1][0]
    assert seal_runs(rows_of("A1 A2 B3 B3")) == []


def test_a_batch_never_cuts_a_notification_in_two() -> None:
    rows = rows_of("A1 B2 C3 D3 E4")
    assert whole_batch(rows[:2], 2) == (rows[:2], False, None)
    assert whole_batch(rows[:3], 2) == (rows[:2], True, None)
    assert whole_batch(rows[:4], 3) == (rows[:2], True, None)  # C3 goes with D3, next time
    assert whole_batch(rows_of("A1 B1 C1"), 2) == ([], True, "1")  # larger than a batch: read whole


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
    await eventually(lambda: space.delivered(subscription))
    requests = receiver.at("ordered")
    # Every row exactly once and in queue order, however the notifier happened to group them.
    assert [seq for _, seq in seqs(requests)] == sorted(seq for _, seq in seqs(requests))
    assert len(seqs(requests)) == len(queued) == 16
    for request in requests:
        assert request.body["type"] == "Notification"
        assert request.body["subscriptionId"] == subscription.id
        ids = [e["id"] for e in request.body["data"]]
        assert len(ids) == len(set(ids))  # one entity at most once per notification
    state = await space.state(subscription)
    assert state["times_sent"] == len(requests)
    assert (state["times_failed"], state["consecutive_errors"]) == (0, 0)
    assert state["last_success"] == state["last_notification"] == space.clock.now()


async def test_a_backlog_goes_out_merged_a_lone_row_alone_under_its_id(
    space: Space, receiver: Receiver
) -> None:
    """Rows pending together: runs of distinct entities in one notification each (clause 5.3.1)."""
    subscription = await space.subscribe(receiver.url("backlog"))
    entities = [f"urn:ngsi-ld:Thing:{n}" for n in "abc"]
    for _ in range(4):
        await space.queue(subscription, *entities, entities[0])  # a b c a, four times, before start
    await space.start(batch_size=7)
    await eventually(lambda: space.delivered(subscription))
    requests = receiver.at("backlog")
    assert [seq for _, seq in seqs(requests)] == sorted(seq for _, seq in seqs(requests))
    assert len(seqs(requests)) == 16
    assert len(requests) < 16
    assert max(len(r.body["data"]) for r in requests) == 3
    for request in requests:
        ids = [e["id"] for e in request.body["data"]]
        assert len(ids) == len(set(ids))
    assert (await space.state(subscription))["times_sent"] == len(requests)
    (alone,) = await space.queue(subscription, entities[1])
    await eventually(lambda: len(receiver.at("backlog")) == len(requests) + 1)
    last = receiver.at("backlog")[-1].body
    assert (last["id"], [e["id"] for e in last["data"]]) == (alone, [entities[1]])


async def test_a_merged_notification_that_failed_is_sent_again_the_same(
    space: Space, receiver: Receiver
) -> None:
    """The merge is committed before the send: a retry repeats the same id with the same entities."""
    subscription = await space.subscribe(receiver.url("merged-flaky"))
    receiver.plan["merged-flaky"] = [500]
    await space.queue(subscription, *[f"urn:ngsi-ld:Thing:{n}" for n in "xyz"])
    await space.start()
    await receiver.wait("merged-flaky", 1)
    await space.settle()
    await space.clock.advance(0.6)  # past the first back-off, 0.5 s
    first, again = await receiver.wait("merged-flaky", 2)
    await eventually(lambda: space.delivered(subscription))
    assert first.body["id"] == again.body["id"]
    assert first.body["data"] == again.body["data"]
    assert len(first.body["data"]) == 3


async def test_a_failed_notification_is_sent_again_with_the_same_id(space: Space, receiver: Receiver) -> None:
    subscription = await space.subscribe(receiver.url("flaky"))
    receiver.plan["flaky"] = [500]
    await space.start()
    (queued,) = await space.queue(subscription, "urn:ngsi-ld:Thing:x")
    await receiver.wait("flaky", 1)
    await space.settle()
    await space.clock.advance(0.6)  # past the first back-off, 0.5 s
    first, second = await receiver.wait("flaky", 2)
    assert first.body["id"] == second.body["id"] == queued
    assert 0.5 <= gap(first, second) <= 0.6
    await eventually(lambda: space.delivered(subscription))
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
    await eventually(lambda: space.delivered(subscription))


async def test_a_delivery_cut_by_the_database_going_away_is_a_warning_and_is_repeated_with_the_same_id(
    space: Space, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    subscription = await space.subscribe(receiver.url("db-cut"))
    receiver.plan["db-cut"] = ["hang"]
    await space.start()
    (queued,) = await space.queue(subscription, "urn:ngsi-ld:Thing:w")
    await receiver.wait("db-cut", 1)
    # The delivery holds its claim in a transaction while the endpoint answers: end that session
    # as a PostgreSQL restart does, then let the endpoint answer.
    ended = await space.pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
    )
    assert ended >= 1
    with caplog.at_level(logging.WARNING, logger="broker.notify.dispatcher"):
        receiver.release.set()
        await eventually(
            lambda: any("database unavailable" in r.getMessage() for r in caplog.records),
            what="the interrupted delivery logged",
        )
    await space.clock.advance(1.0)  # the next poll
    first, second = await receiver.wait("db-cut", 2)
    assert first.body["id"] == second.body["id"] == queued
    await eventually(lambda: space.delivered(subscription))
    mine = [r for r in caplog.records if r.name == "broker.notify.dispatcher"]
    assert not any(r.levelno >= logging.ERROR or r.exc_info for r in mine), [r.getMessage() for r in mine]


async def test_a_row_queued_during_a_delivery_follows_it_without_waiting_for_the_poll(
    space: Space, receiver: Receiver
) -> None:
    subscription = await space.subscribe(receiver.url("busy"))
    receiver.plan["busy"] = ["slow"]
    await space.start()
    await space.queue(subscription, "urn:ngsi-ld:Thing:b")
    await receiver.wait("busy", 1)
    await space.queue(subscription, "urn:ngsi-ld:Thing:b")  # while the first is being answered
    # The clock stands still: no poll ever comes, the second goes out on the first one's heels.
    _, second = await receiver.wait("busy", 2)
    assert sent_at(second) == space.clock.now()


async def test_failures_back_off_exponentially_and_are_recorded(space: Space, receiver: Receiver) -> None:
    subscription = await space.subscribe(receiver.url("down"))
    receiver.plan["down"] = [503, 503, 503, 503]
    await space.start()
    await space.queue(subscription, "urn:ngsi-ld:Thing:z")
    retries: list[datetime] = []
    for errors, wait in enumerate([0.5, 1.0, 2.0, 4.0], start=1):
        await eventually(partial(space.errors_are, subscription, errors), what=f"{errors} errors")
        state = await space.state(subscription)
        assert state["retry_at"] - state["last_failure"] == timedelta(seconds=wait)
        retries.append(state["retry_at"])
        await space.clock.advance(wait - 0.05)
        await space.settle()
        assert len(receiver.at("down")) == errors, "sent again before its back-off ended"
        await space.clock.advance(0.1)
    attempts = await receiver.wait("down", 5)
    # Each retry at its back-off's end, or within the 0.05 s the test stepped past it.
    for attempt, retry in zip(attempts[1:], retries, strict=True):
        assert retry <= sent_at(attempt) <= retry + timedelta(seconds=0.05)
    await eventually(lambda: space.delivered(subscription))
    state = await space.state(subscription)
    assert state["times_failed"] == 4
    assert state["last_error_reason"] == "HTTP 503 Service Unavailable"
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
    # A writer queueing a row for a subscription being delivered is not blocked by the claim.
    busy = next(s for s in dead if s.id == hanging[0].body["subscriptionId"])
    await asyncio.wait_for(space.queue(busy, "urn:ngsi-ld:Thing:d2"), 2.0)
    await space.queue(alive, "urn:ngsi-ld:Thing:a")
    await receiver.wait("alive", 1)
    # The alive one went out while the dead ones still hang, the clock never moving (no poll).
    assert len(receiver.at("dead")) == 2, "more than per_endpoint deliveries to one endpoint at once"
    assert (await space.state(busy))["times_failed"] == 0
    await eventually(lambda: space.failed(busy))
    assert (await space.state(busy))["last_error_reason"] == "no answer within 3 s"


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
    await space.clock.advance(1.45)
    await space.settle()
    assert len(receiver.at("throttled")) == 1, "notified again within the throttling window"
    assert (await space.state(subscription))["retry_at"] == sent_at(first) + timedelta(seconds=1.5)
    await space.clock.advance(0.1)
    _, second, third = await receiver.wait("throttled", 3)
    assert 1.5 <= gap(first, second) <= 1.55
    assert gap(second, third) == 0  # one release: everything pending goes out together
    assert [e for e, _ in seqs([second, third])] == [a, b, a]
    assert [e["id"] for e in second.body["data"]] == [a, b]
    await eventually(lambda: space.delivered(subscription))


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
    await space.settle()
    await space.clock.advance(0.6)  # the throttling window ends: a and b go out merged, and fail
    _, failed = await receiver.wait("sealed", 2)
    await space.queue(subscription, c)  # arrives before the retry: not part of the sealed notification
    await space.settle()
    await space.clock.advance(0.6)  # the back-off (0.5 s) ends
    _, _, retried, *rest = await receiver.wait("sealed", 4)
    assert retried.body["id"] == failed.body["id"] == derived_id(*queued)
    assert retried.body["data"] == failed.body["data"]
    assert [e["id"] for e in retried.body["data"]] == [a, b]
    assert [e["id"] for e in rest[0].body["data"]] == [c]
    await eventually(lambda: space.delivered(subscription))


async def test_inactive_and_expired_subscriptions_are_not_delivered_to(
    space: Space, receiver: Receiver
) -> None:
    paused = await space.subscribe(receiver.url("paused"), active=False)
    expired = await space.subscribe(
        receiver.url("expired"), expires_at=space.clock.now() - timedelta(seconds=1)
    )
    await space.start()
    await space.queue(paused, "urn:ngsi-ld:Thing:p")
    await space.queue(expired, "urn:ngsi-ld:Thing:e")
    await space.clock.advance(1.5)
    await space.settle()
    assert receiver.requests == []
    assert await space.pending(paused) == await space.pending(expired) == 1
    # Reactivated (as PATCH isActive would do): the rows that waited go out.
    await space.pool.execute(
        "UPDATE subscriptions SET is_active = true WHERE tenant = $1 AND id = $2", space.tenant, paused.id
    )
    space.registry.put(dataclasses.replace(paused, active=True))
    await space.settle()
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
        await space.start(other, pool=second_pool)
        for firings in range(1, 5):  # the first at once (never fired), then one per interval
            await eventually(partial(_fired, receiver, firings), what=f"firing {firings}")
            await space.settle()
            if firings < 4:
                await space.clock.advance(1.0)
    finally:
        await space.stop()
        await second_pool.close()
    requests = _once_each(receiver.at("periodic"))
    assert len(requests) == 4, [r.body["notifiedAt"] for r in requests]
    for request in requests:
        assert sorted(e["id"] for e in request.body["data"]) == [t.id for t in things]
        assert request.body["data"][0]["level"] == {"type": "Property", "value": 0}
    gaps = [gap(earlier, later) for earlier, later in itertools.pairwise(requests)]
    assert gaps == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)  # once per interval, on time
    assert (await space.state(subscription))["last_fired"] == sent_at(requests[-1])


def _fired(receiver: Receiver, firings: int) -> bool:
    return len(_once_each(receiver.at("periodic"))) == firings


def _once_each(requests: list[Received]) -> list[Received]:
    """The first request of each notification id (delivery is at least once: receivers drop the others)."""
    firsts: dict[str, Received] = {}
    for request in requests:
        firsts.setdefault(request.body["id"], request)
    return list(firsts.values())


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
        await space.stop()
        await second_pool.close()
    received = Counter(request.body["id"] for request in receiver.at("race"))
    assert set(received) == set(queued)
    assert {nid: n for nid, n in received.items() if n > 1} == {}


async def _all_delivered(space: Space, subscriptions: list[Subscription]) -> bool:
    return all([await space.delivered(subscription) for subscription in subscriptions])


# ------------------------------------------------------------------------------------------ faults


async def test_a_fault_in_the_dispatch_loop_restarts_it_and_ready_names_it_meanwhile(
    space: Space, receiver: Receiver
) -> None:
    registry = FaultyRegistry(faults=1)
    subscription = await space.subscribe(receiver.url("fault"), registry=registry)
    await space.queue(subscription, "urn:ngsi-ld:Thing:f")
    await space.start(registry)
    _, supervisor = space.notifiers[0]
    fault = "RuntimeError: registry fault injected by the test"
    down = f"restarting after: {fault}"
    await eventually(lambda: supervisor.problems() == {DISPATCHER: down}, what="the loop reported down")
    status, body = await ready(supervisor, space.pool)
    assert (status, body["down"]) == (503, {DISPATCHER: down})
    assert receiver.requests == []
    await space.clock.advance(0.5)  # the supervisor's first back-off
    await receiver.wait("fault", 1)
    assert supervisor.report()[DISPATCHER] == {"running": True, "restarts": 1, "lastError": fault}
    assert await ready(supervisor, space.pool) == (200, {"status": "ready", "database": "ok"})


async def test_after_every_connection_is_cut_the_notifier_listens_again_and_ready_names_it_meanwhile(
    space: Space, receiver: Receiver
) -> None:
    """Issue 11, defect 2, at the notifier's own level: its LISTEN is lost with its connection;
    /ready names it until the listener has listened again, and new rows are then notified."""
    subscription = await space.subscribe(receiver.url("relisten"))
    notifier = await space.start()
    _, supervisor = space.notifiers[0]
    await space.queue(subscription, "urn:ngsi-ld:Thing:r")
    await receiver.wait("relisten", 1)
    conn = await asyncpg.connect(database_url())
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    await eventually(lambda: LISTENER in supervisor.problems(), what="the lost LISTEN reported")
    status, body = await ready(supervisor, space.pool)
    assert status == 503
    # (The pool's own connections may be named too, as "database", until they are replaced.)
    assert body["down"][LISTENER] == "LISTEN ngsi_outbox lost; listening again once the database answers"
    await eventually(lambda: _queued(space, subscription), what="a row queued after the cut")
    await space.clock.advance(1.0)  # the listener's check: it listens again and the notifier scans
    await receiver.wait("relisten", 2)
    assert notifier.report()["relistened"] == 1
    await eventually(lambda: _ready_again(supervisor, space.pool), what="/ready answering 200 again")


async def _ready_again(supervisor: Supervisor, pool: asyncpg.Pool) -> bool:
    return await ready(supervisor, pool) == (200, {"status": "ready", "database": "ok"})


# What a cut connection raises: asyncpg also says "cannot switch to state ..." (InternalClientError)
# on a connection whose termination it has not processed yet.
CUT: tuple[type[BaseException], ...] = (*TRANSIENT, asyncpg.InternalClientError)


async def _queued(space: Space, subscription: Subscription) -> bool:
    """Queue one row (False while the pool's connections are still being replaced)."""
    try:
        await space.queue(subscription, "urn:ngsi-ld:Thing:r")
    except CUT:
        return False
    return True


# ------------------------------------------------------------------------------------------ MQTT


@pytest.mark.parametrize("qos", ["0", "1", "2"])
async def test_mqtt_subscriptions_are_delivered_in_order_at_their_qos(space: Space, qos: str) -> None:
    topic = mqtt_topic()
    subscription = await space.subscribe(
        f"mqtt://{MQTT_HOST}:{MQTT_PORT}/{topic}", notifier_info=(("MQTT-QoS", qos),)
    )
    async with MqttListener(topic, qos=2) as listener:
        await space.start()
        queued = await space.queue(subscription, "urn:ngsi-ld:Thing:m", "urn:ngsi-ld:Thing:m")
        messages = await listener.wait(2)
    payloads = [orjson.loads(m.payload) for m in messages]
    assert [p["body"]["id"] for p in payloads] == queued
    assert [m.qos for m in messages] == [int(qos)] * 2
    assert payloads[0]["metadata"]["NGSILD-Tenant"] == space.tenant
    await eventually(lambda: space.delivered(subscription))


async def test_an_unreachable_mqtt_broker_is_retried_with_back_off(space: Space) -> None:
    subscription = await space.subscribe(
        f"mqtt://127.0.0.1:{closed_port()}/t", notifier_info=(("MQTT-QoS", "1"),)
    )
    await space.start()
    await space.queue(subscription, "urn:ngsi-ld:Thing:q")
    await eventually(lambda: space.failed(subscription))
    state = await space.state(subscription)
    assert state["last_error_reason"].startswith("MQTT connect failed")
    assert state["retry_at"] - state["last_failure"] == timedelta(seconds=0.5)
    assert await space.pending(subscription) == 1
