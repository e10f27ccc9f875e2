"""No notification lost: a receiver down for a while, a broker SIGKILLed mid-stream, two processes.

N updates (N >= 5,000) go to two broker processes on one database; one process is
killed with SIGKILL halfway and restarted; the receiver answers 503 for the first
seconds. Afterwards every update has been notified, duplicates (at least once)
carry the same notification id, and each entity's notifications arrive in order.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import defaultdict
from functools import partial
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import database_url, eventually
from tests.e2e.test_process import broker_process, free_port, fresh_schema, wait_ready, with_search_path

ENTITIES = 50
UPDATES_PER_ENTITY = 100  # 5,000 updates
RECEIVER_DOWN_SECONDS = 3.0
DEADLINE_SECONDS = 240.0
_PROBES = itertools.count()


class Receiver:
    """An HTTP endpoint that refuses notifications for a while from the first one, then records them.

    ``/probe`` takes the notifications of a second subscription at once, so the test can tell
    when a process has loaded the subscriptions.
    """

    def __init__(self) -> None:
        self.started: float | None = None
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.probes: list[dict[str, Any]] = []

    async def probe(self, request: web.Request) -> web.Response:
        self.probes.append(await request.json())
        return web.Response(status=204)

    def seen(self) -> set[tuple[str, int]]:
        """(entity, value) of every update notified so far."""
        return {(d["id"], d["n"]) for note in self.received for d in note["data"]}

    async def handle(self, request: web.Request) -> web.Response:
        if self.started is None:
            self.started = time.monotonic()
        if time.monotonic() - self.started < RECEIVER_DOWN_SECONDS:
            self.refused += 1
            return web.Response(status=503)
        self.received.append(await request.json())
        return web.Response(status=204)


async def _probed(
    session: aiohttp.ClientSession, receiver: Receiver, port: int, headers: dict[str, str]
) -> bool:
    """Write the probe entity through ``port``; True once that process notified a write of it
    (then it holds both subscriptions: the probe one was created after the other)."""
    url = f"http://127.0.0.1:{port}/ngsi-ld/v1/entities/urn:ngsi-ld:Probe:p/attrs"
    value = f"{port}/{next(_PROBES)}"  # a new value each time: a repeated one is no update
    async with session.patch(url, json={"n": {"type": "Property", "value": value}}, headers=headers) as r:
        assert r.status == 204, await r.text()
    return any(str(d["n"]).startswith(f"{port}/") for note in receiver.probes for d in note["data"])


async def _update(
    session: aiohttp.ClientSession, ports: list[int], entity: str, value: int, headers: dict[str, str]
) -> None:
    """PATCH one value, trying the other process when one is down (a retry repeats the same value)."""
    for attempt in range(200):
        port = ports[(value + attempt) % len(ports)]
        url = f"http://127.0.0.1:{port}/ngsi-ld/v1/entities/{entity}/attrs"
        try:
            async with session.patch(
                url, json={"n": {"type": "Property", "value": value}}, headers=headers
            ) as response:
                if response.status == 204:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"update {entity}={value} never succeeded")


@pytest.mark.slow
async def test_every_update_is_notified_once_per_id_in_order_through_outage_and_sigkill() -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/notify", receiver.handle)
    app.router.add_post("/probe", receiver.probe)
    runner = web.AppRunner(app)
    await runner.setup()
    receiver_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    tenant = "durability"
    headers = {"NGSILD-Tenant": tenant}
    ids = [f"urn:ngsi-ld:Sensor:d{i:03d}" for i in range(ENTITIES)]
    try:
        async with fresh_schema() as schema, aiohttp.ClientSession() as session:
            dsn = with_search_path(database_url(), schema)
            ports = [free_port(), free_port()]
            with broker_process(ports[0], dsn) as first, broker_process(ports[1], dsn) as second:
                await asyncio.gather(
                    wait_ready(session, ports[0], first), wait_ready(session, ports[1], second)
                )
                base = f"http://127.0.0.1:{ports[1]}/ngsi-ld/v1"
                entities = [{"id": i, "type": "Sensor", "n": {"type": "Property", "value": -1}} for i in ids]
                entities.append(
                    {"id": "urn:ngsi-ld:Probe:p", "type": "Probe", "n": {"type": "Property", "value": 0}}
                )
                async with session.post(
                    f"{base}/entityOperations/create", json=entities, headers=headers
                ) as r:
                    assert r.status == 201, await r.text()
                subscription = {
                    "type": "Subscription",
                    "entities": [{"type": "Sensor"}],
                    "watchedAttributes": ["n"],
                    "notification": {
                        "attributes": ["n"],
                        "format": "keyValues",
                        "endpoint": {"uri": f"http://127.0.0.1:{receiver_port}/notify"},
                    },
                }
                async with session.post(f"{base}/subscriptions", json=subscription, headers=headers) as r:
                    assert r.status == 201, await r.text()
                probe = {
                    "type": "Subscription",
                    "entities": [{"type": "Probe"}],
                    "notification": {
                        "format": "keyValues",
                        "endpoint": {"uri": f"http://127.0.0.1:{receiver_port}/probe"},
                    },
                }
                async with session.post(f"{base}/subscriptions", json=probe, headers=headers) as r:
                    assert r.status == 201, await r.text()
                for port in ports:  # both processes have the subscriptions (LISTEN/NOTIFY)
                    await eventually(
                        partial(_probed, session, receiver, port, headers), what=f"{port} loaded"
                    )
                done = 0

                async def entity_stream(entity: str) -> None:
                    nonlocal done
                    for value in range(UPDATES_PER_ENTITY):
                        await _update(session, ports, entity, value, headers)
                        done += 1

                expected = ENTITIES * UPDATES_PER_ENTITY
                streams = asyncio.gather(*(entity_stream(i) for i in ids))
                await eventually(lambda: done >= expected // 2, what="half the updates acknowledged")
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                with broker_process(ports[0], dsn) as restarted:
                    await wait_ready(session, ports[0], restarted)
                    await streams
                    await eventually(
                        lambda: len(receiver.seen()) >= expected,
                        within=DEADLINE_SECONDS,
                        interval=0.5,
                        what="every update notified",
                    )
    finally:
        await runner.cleanup()

    by_id: dict[str, list[tuple[str, int]]] = {}
    arrivals: dict[str, list[int]] = defaultdict(list)
    for note in receiver.received:
        pairs = [(d["id"], d["n"]) for d in note["data"]]
        if note["id"] in by_id:
            assert by_id[note["id"]] == pairs, "a notification id was reused for different content"
            continue
        by_id[note["id"]] = pairs
        for entity, value in pairs:
            arrivals[entity].append(value)
    assert receiver.refused > 0, "the receiver outage did not happen"
    for entity in ids:
        values = arrivals[entity]
        assert sorted(set(values)) == list(range(UPDATES_PER_ENTITY)), f"{entity} missed updates"
        assert values == sorted(values), f"{entity} notified out of order"
        assert len(values) == len(set(values)), f"{entity}: one update notified under two ids"
