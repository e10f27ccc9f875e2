"""Notification latency under load: 100 subscriptions, 1,000 updates/s for 60 s (the subscription issue's figures).

A broker process on a fresh schema, 100 subscriptions (one per group of entities)
pointing at an HTTP receiver in this program; updates are sent at a fixed rate
through the NGSI-LD API. Each notification's latency is receive time minus the
time its update was sent. Prints p50/p95/p99, notifications/s, what was lost,
and the raw floor: the same receiver's latency for a direct POST from this process.

    .venv/bin/python tests/perf/bench_notify.py [--rate 1000] [--seconds 60] [--subscriptions 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DEFAULT_DB = "postgresql://ngsi:ngsi@127.0.0.1:5432/ngsi"
TENANT = "bench"
TARGET_P99_MS = 50.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


class Receiver:
    def __init__(self) -> None:
        self.sent_at: dict[tuple[str, int], float] = {}
        self.latencies: list[float] = []
        self.ids: set[str] = set()
        self.duplicates = 0

    async def handle(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        note = await request.json()
        if note["id"] in self.ids:
            self.duplicates += 1
            return web.Response(status=204)
        self.ids.add(note["id"])
        for item in note["data"]:
            sent = self.sent_at.get((item["id"], item["n"]))
            if sent is not None:
                self.latencies.append((arrived - sent) * 1000)
        return web.Response(status=204)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000, help="updates per second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--entities-per-subscription", type=int, default=10)
    args = parser.parse_args()

    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/notify", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    receiver_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()

    base_dsn = os.environ.get("DATABASE_URL", DEFAULT_DB)
    schema = f"benchn_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{base_dsn}{'&' if '?' in base_dsn else '?'}search_path={schema},public"
    port = free_port()
    env = {**os.environ, "DATABASE_URL": dsn, "NGSI_PORT": str(port), "NGSI_LOG_LEVEL": "WARNING"}
    env["NGSI_NOTIFY_ALLOW_PRIVATE"] = "true"  # the receiver listens on 127.0.0.1
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "broker", env=env)
    base = f"http://127.0.0.1:{port}/ngsi-ld/v1"
    headers = {"NGSILD-Tenant": TENANT}
    try:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            floor = []
            for i in range(300):
                started = time.perf_counter()
                async with session.post(
                    f"http://127.0.0.1:{receiver_port}/notify", json={"id": f"floor-{i}", "data": []}
                ) as r:
                    await r.read()
                floor.append((time.perf_counter() - started) * 1000)
            receiver.ids.clear()
            ids = [
                f"urn:ngsi-ld:Sensor:s{s:03d}-{e:03d}"
                for s in range(args.subscriptions)
                for e in range(args.entities_per_subscription)
            ]
            entities = [{"id": i, "type": "Sensor", "n": {"type": "Property", "value": -1}} for i in ids]
            for chunk in range(0, len(entities), 500):
                async with session.post(
                    f"{base}/entityOperations/create", json=entities[chunk : chunk + 500], headers=headers
                ) as r:
                    assert r.status == 201, await r.text()
            for s in range(args.subscriptions):
                subscription = {
                    "type": "Subscription",
                    "entities": [{"type": "Sensor", "idPattern": f"^urn:ngsi-ld:Sensor:s{s:03d}-"}],
                    "watchedAttributes": ["n"],
                    "notification": {
                        "attributes": ["n"],
                        "format": "keyValues",
                        "endpoint": {"uri": f"http://127.0.0.1:{receiver_port}/notify"},
                    },
                }
                async with session.post(f"{base}/subscriptions", json=subscription, headers=headers) as r:
                    assert r.status == 201, await r.text()
            await asyncio.sleep(1)

            total = args.rate * args.seconds
            failures = 0
            patch_ms: list[float] = []
            in_flight: set[asyncio.Task[None]] = set()

            async def update(index: int) -> None:
                nonlocal failures
                entity = ids[index % len(ids)]
                value = index
                sent = receiver.sent_at[(entity, value)] = time.perf_counter()
                async with session.patch(
                    f"{base}/entities/{entity}/attrs",
                    json={"n": {"type": "Property", "value": value}},
                    headers=headers,
                ) as r:
                    if r.status != 204:
                        failures += 1
                patch_ms.append((time.perf_counter() - sent) * 1000)

            started = time.perf_counter()
            for index in range(total):
                target = started + index / args.rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(update(index))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.gather(*in_flight)
            sending = time.perf_counter() - started
            deadline = time.perf_counter() + 60
            # Polling with a deadline: the receiver is counted, not signalled.
            while len(receiver.latencies) < total - failures and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
            outbox_left = await admin.fetchval(f"SELECT count(*) FROM {schema}.outbox")
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
        await runner.cleanup()

    received = len(receiver.latencies)
    f50, f95, f99 = percentiles(floor)
    print(f"updates sent: {total} in {sending:.1f} s ({total / sending:,.0f}/s), failed: {failures}")
    print(
        f"notifications received: {received} ({received / elapsed:,.0f}/s over {elapsed:.1f} s), "
        f"missing: {total - failures - received}, duplicates: {receiver.duplicates}, left in outbox: {outbox_left}"
    )
    u50, u95, u99 = percentiles(patch_ms)
    print(f"PATCH response time p50/p95/p99: {u50:.2f} / {u95:.2f} / {u99:.2f} ms")
    print(f"raw floor (direct POST to the receiver) p50/p95/p99: {f50:.2f} / {f95:.2f} / {f99:.2f} ms")
    if received >= 100:
        p50, p95, p99 = percentiles(receiver.latencies)
        verdict = "met" if p99 < TARGET_P99_MS else "MISSED"
        print(
            f"update-to-received latency p50/p95/p99: {p50:.2f} / {p95:.2f} / {p99:.2f} ms "
            f"(p99/floor {p99 / f99:.1f}); target p99 < {TARGET_P99_MS} ms: {verdict}"
        )


if __name__ == "__main__":
    asyncio.run(main())
