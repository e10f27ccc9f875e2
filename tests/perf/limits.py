"""The machine's raw limits, measured in the same run as the broker's figures.

- PostgreSQL: asyncpg upserts of entity-shaped jsonb rows (a snowplow, ~400 bytes), 100 rows a
  statement, one transaction each, 4 connections, into a table shaped like ``entities``.
- aiohttp: a hello-world server (uvloop, a small orjson body) driven by wrk (tests/perf/loadgen.py),
  the generator that drives the broker.
- MQTT: paho publishers -> Mosquitto -> one paho subscriber acknowledging at once, QoS 1, the
  uplink bodies the ingest benchmark sends.

    .venv/bin/python -m tests.perf.limits [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import signal
import sys
import time

import asyncpg
import orjson

from tests.perf import harness, loadgen, mqttgen

_TABLE = """
CREATE TABLE raw_entities (
    tenant text NOT NULL, id text NOT NULL, types text[] NOT NULL,
    created_at timestamptz NOT NULL, modified_at timestamptz NOT NULL, attrs jsonb NOT NULL,
    PRIMARY KEY (tenant, id))
"""
_UPSERT = """
INSERT INTO raw_entities AS e (tenant, id, types, created_at, modified_at, attrs)
SELECT $1, u.id, u.types, now(), now(), u.attrs
FROM jsonb_to_recordset($2::jsonb) AS u(id text, types text[], attrs jsonb)
ON CONFLICT (tenant, id) DO UPDATE SET modified_at = now(), attrs = EXCLUDED.attrs
"""


async def postgres_upsert_rate(seconds: float, connections: int = 4, batch: int = 100) -> float:
    """Rows/s of batched jsonb upserts (ids cycle through 100,000, so most are updates after the first pass)."""
    async with harness.bench_schema("rawpg") as (_, _schema, dsn):
        pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
        try:
            await pool.execute(_TABLE)
            rows = 0
            deadline = time.perf_counter() + seconds

            async def writer(w: int) -> None:
                nonlocal rows
                rng = random.Random(w)
                n = w * batch
                while time.perf_counter() < deadline:
                    entities = [loadgen.vehicle((n + i) % 100_000, rng) for i in range(batch)]
                    n += connections * batch
                    payload = [
                        {
                            "id": e["id"],
                            "types": [e["type"]],
                            "attrs": {k: [v] for k, v in e.items() if k[0] != "i"},
                        }
                        for e in entities
                    ]
                    await pool.execute(_UPSERT, "raw", orjson.dumps(payload).decode())
                    rows += batch

            started = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(connections)))
            return rows / (time.perf_counter() - started)
        finally:
            await pool.close()


async def aiohttp_hello_rate(seconds: float, concurrency: int, workers: int = 1) -> loadgen.Outcome:
    """Requests/s the load generator gets from an aiohttp hello-world server (``workers`` processes)."""
    port = harness.free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.perf.hello",
        str(port),
        str(workers),
        cwd=harness.ROOT,
        start_new_session=True,
    )
    try:
        await _wait_port(port)
        workload = loadgen.Workload("get", f"http://127.0.0.1:{port}", path="/hello")
        return await loadgen.run_async(workload, concurrency=concurrency, seconds=seconds)
    finally:
        # The whole session: with several workers the server's children must go too.
        os.killpg(server.pid, signal.SIGTERM)
        await server.wait()


async def _wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def mqtt_qos1_rate(port: int, seconds: float, publishers: int = 2) -> float:
    """Messages/s one QoS 1 subscriber receives from ``publishers`` publishing as fast as acknowledged."""
    context = multiprocessing.get_context("spawn")
    ready, result = context.Event(), context.Queue()
    subscriber = context.Process(
        target=mqttgen.subscribe_count, args=(port, "bench/raw/#", seconds, ready, result)
    )
    subscriber.start()
    ready.wait(10)
    plan = mqttgen.Plan(port, devices=1000, seconds=seconds + 1.5, rate=0, raw_topic="bench/raw/x")
    mqttgen.run_publishers(plan, publishers)
    rate = float(result.get(timeout=30))
    subscriber.join(10)
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    print(f"PostgreSQL batched upsert: {await postgres_upsert_rate(args.seconds):,.0f} rows/s")
    hello = await aiohttp_hello_rate(args.seconds, args.concurrency)
    print(
        f"aiohttp hello world: {hello.rate:,.0f} req/s, p99 {hello.p99_ms:.1f} ms ({args.concurrency} connections, wrk)"
    )
    with harness.mosquitto() as broker:
        rate = await asyncio.to_thread(mqtt_qos1_rate, broker.port, args.seconds)
    print(f"paho/Mosquitto QoS 1 end to end: {rate:,.0f} msg/s")


if __name__ == "__main__":
    asyncio.run(main())
