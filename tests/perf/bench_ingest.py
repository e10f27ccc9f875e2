"""MQTT ingest end to end: TTS gauges publishing QoS 1 uplinks through a private Mosquitto into the broker.

A private Mosquitto (queues as in deploy/mosquitto.conf), a broker process (``--workers``) on a
fresh schema subscribed to it, ``--devices`` water-level gauges provisioned through /iot/devices,
and publisher processes sending each gauge's uplinks (a new frame counter and level each time)
at ``--rate`` messages/s in total for ``--seconds``. The broker decodes, maps to
FloodMonitoring, validates, stores with history and acknowledges after the commit.

Counted from the database: each stored message claims one device_frames row in the
transaction that stores it, so the rows stored during the window give the sustained rate, and
the rows after draining, compared with what Mosquitto acknowledged to the publishers, give
what was lost. Mosquitto's log says when it drops messages.

    .venv/bin/python -m tests.perf.bench_ingest [--seconds 60] [--rate 12000] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass

import aiohttp
import asyncpg

from tests.perf import harness, mqttgen

TARGET = 10_000.0
TARGET_RATIO = 0.65
TENANT = "bench-flood"


@dataclass
class IngestFigures:
    published: int
    publish_seconds: float
    stored_in_window: int
    window_seconds: float
    stored_total: int
    not_stored: int
    mosquitto_drop_lines: int
    history_rows: int
    dead_letters: int
    rss_mb: list[float]
    drained_seconds: float
    # Broker CPU seconds used during the window: per stored message, a figure the machine's load
    # moves far less than the rate (the broker's own work, not what it was given of the cores).
    window_cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.stored_in_window / self.window_seconds if self.window_seconds else 0.0

    @property
    def cpu_ms_per_message(self) -> float:
        return 1000 * self.window_cpu_seconds / self.stored_in_window if self.stored_in_window else 0.0


async def provision(base: str, devices: int) -> None:
    async with aiohttp.ClientSession() as session:
        for first in range(0, devices, 500):
            body = {"devices": [mqttgen.provisioning(n) for n in range(first, min(first + 500, devices))]}
            async with session.post(
                f"{base}/iot/devices", json=body, headers={"fiware-service": TENANT}
            ) as response:
                if response.status != 201:
                    raise RuntimeError(f"provisioning answered {response.status}: {await response.text()}")


async def frames(admin: asyncpg.Connection, schema: str) -> int:
    return int(await admin.fetchval(f"SELECT count(*) FROM {schema}.device_frames WHERE tenant = $1", TENANT))


async def measure(
    seconds: float,
    rate: float,
    workers: int = 1,
    devices: int = 1000,
    publishers: int = 2,
    drain: float = 60.0,
    **env: str,
) -> IngestFigures:
    with harness.mosquitto() as mqtt:
        async with (
            harness.bench_schema("benchi") as (admin, schema, dsn),
            harness.broker(
                dsn,
                workers,
                MQTT_URL=mqtt.url,
                NGSI_MQTT_INGEST="true",
                NGSI_MQTT_CLIENT_ID=f"bench-ingest-{uuid.uuid4().hex[:6]}",
                **env,
            ) as running,
        ):
            await provision(running.base, devices)
            await asyncio.sleep(1.5)  # the registry reloads on NOTIFY; the MQTT session subscribes
            plan = mqttgen.Plan(mqtt.port, devices, seconds, rate / publishers)
            publishing = asyncio.create_task(asyncio.to_thread(mqttgen.run_publishers, plan, publishers))
            # The window: skip the first second (process start-up of the publishers), count 'seconds - 2'.
            await asyncio.sleep(1.5)
            start_count, started = await frames(admin, schema), time.perf_counter()
            cpu_at_start = running.cpu_seconds()
            await asyncio.sleep(max(1.0, seconds - 2.5))
            end_count, window = await frames(admin, schema), time.perf_counter() - started
            window_cpu = running.cpu_seconds() - cpu_at_start
            rss = running.rss_mb()
            published, publish_seconds = await publishing
            drained_at = time.perf_counter()
            deadline = drained_at + drain
            stored = await frames(admin, schema)
            while stored < published and time.perf_counter() < deadline:
                await asyncio.sleep(0.5)
                stored = await frames(admin, schema)
            drained = time.perf_counter() - drained_at
            history = await admin.fetchval(
                f"SELECT count(*) FROM {schema}.attribute_history WHERE tenant = $1", TENANT
            )
            letters = await admin.fetchval(f"SELECT count(*) FROM {schema}.dead_letters")
    return IngestFigures(
        published=published,
        publish_seconds=publish_seconds,
        stored_in_window=end_count - start_count,
        window_seconds=window,
        stored_total=stored,
        not_stored=published - stored,
        mosquitto_drop_lines=mqtt.dropped_lines(),
        history_rows=int(history or 0),
        dead_letters=int(letters or 0),
        rss_mb=rss,
        drained_seconds=drained,
        window_cpu_seconds=window_cpu,
    )


def report(figures: IngestFigures) -> None:
    f = figures
    print(
        f"published (acknowledged by Mosquitto): {f.published:,} in {f.publish_seconds:.1f} s "
        f"({f.published / f.publish_seconds:,.0f}/s)"
    )
    print(
        f"stored during the window: {f.stored_in_window:,} in {f.window_seconds:.1f} s = {f.rate:,.0f} msg/s "
        f"(target {TARGET:,.0f}); broker CPU {f.cpu_ms_per_message:.3f} ms per stored message "
        f"({f.window_cpu_seconds:.1f} s in the window)"
    )
    print(
        f"stored in all: {f.stored_total:,} after draining {f.drained_seconds:.1f} s; not stored yet (still queued "
        f"in Mosquitto when it stopped): {f.not_stored:,}; "
        f"Mosquitto drop messages in its log: {f.mosquitto_drop_lines}; dead letters: {f.dead_letters}; "
        f"history rows: {f.history_rows:,}; broker RSS MB {[round(r) for r in f.rss_mb]}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=12_000, help="messages/s offered in total")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--drain", type=float, default=60, help="seconds to wait for the backlog at the end")
    args = parser.parse_args()
    report(await measure(args.seconds, args.rate, args.workers, args.devices, args.publishers, args.drain))


if __name__ == "__main__":
    asyncio.run(main())
