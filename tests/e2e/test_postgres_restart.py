"""The whole PostgreSQL server restarted while HTTP writes, QoS 1 device messages and notifications flow.

A broker process on a cluster this module owns (tests/e2e/services.py), its MQTT ingest on a
Mosquitto of its own. Mid-stream the cluster is stopped (held down until the writer has seen
the outage) and started again. Afterwards: every write answered 2xx is stored and was notified,
every PUBACKed device message is stored once, the outage was answered 503 with ProblemDetails
and Retry-After (never 500, never a dropped connection), and ``/ready`` is 200 again.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid

import aiohttp
import pytest

from tests.conftest import eventually
from tests.e2e.checks import (
    LEVEL_ATTR,
    N_ATTR,
    every_frame_stored,
    history_count,
    history_values,
    read_back,
    ready,
    stored_frame_counters,
    unready,
    writes_one_by_one,
)
from tests.e2e.services import OwnedMosquitto, OwnedPostgres
from tests.e2e.test_device_restart import mqtt_counts
from tests.e2e.test_process import broker_process, free_port, wait_ready
from tests.e2e.traffic import (
    DevicePublisher,
    HttpWriter,
    NotificationRecorder,
    provision_gauge,
    subscribe,
)

pytestmark = pytest.mark.slow

WRITES = 2000  # at most, before the writer is stopped
FRAMES = 400  # at most, before the publisher is stopped
BEFORE = 30  # acknowledged writes and frames before the restart
AFTER_STREAM = 30  # acknowledged writes of the stream after the restart
AFTER_EXPLICIT = 20  # writes made one by one after the stream stopped, each must succeed


async def set_up(dsn: str, port: int, writer: HttpWriter, gateway: DevicePublisher, recorder_url: str) -> str:
    """Provision the gauge and subscribe the recorder through a broker of its own, stopped again:
    every worker of the broker under test then loads both at its start. The gauge's entity id."""
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        with broker_process(port, dsn, {"NGSI_WORKERS": "1"}) as broker:
            await wait_ready(session, port, broker)
            gauge_id = await provision_gauge(session, base, writer.tenant, gateway)
            await subscribe(session, writer, {"uri": recorder_url})
    return gauge_id


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_postgres_restart_loses_no_acknowledged_write_message_or_notification(
    owned_postgres: OwnedPostgres, owned_mosquitto: OwnedMosquitto, workers: int
) -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "MQTT_URL": owned_mosquitto.url,
        "NGSI_MQTT_INGEST": "true",
        "NGSI_MQTT_CLIENT_ID": f"e2e-pg-{uuid.uuid4().hex[:8]}",
        # Two workers split the uplinks by a shared subscription, as in production.
        "NGSI_MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}" if workers > 1 else "",
        "NGSI_WORKERS": str(workers),
    }
    writer = HttpWriter(base, tenant, "Meter")
    eui = secrets.token_hex(8)
    gateway = DevicePublisher("127.0.0.1", owned_mosquitto.port, eui, f"wl-{eui[:6]}")
    recorder = NotificationRecorder()
    await recorder.start()
    stop_writer, stop_gateway = asyncio.Event(), threading.Event()
    # A connection per request: with two workers sharing the port, requests go to both.
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        gauge_id = await set_up(owned_postgres.dsn, port, writer, gateway, recorder.url)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=15)
        ) as session:
            with broker_process(port, owned_postgres.dsn, env) as broker:
                await wait_ready(session, port, broker)
                connected = await mqtt_counts(session, port, workers)
                assert len(connected) == workers, (
                    f"MQTT ingest connected in {len(connected)} of {workers} workers"
                )
                gateway.start()

                writing = asyncio.create_task(writer.run(session, stop_writer, WRITES, pause=0.01))
                publishing = asyncio.create_task(
                    asyncio.to_thread(gateway.run, 1, FRAMES, 0.02, stop_gateway)
                )
                await eventually(
                    lambda: len(writer.acked) >= BEFORE and len(gateway.acked()) >= BEFORE,
                    what="traffic flowing before the restart",
                )

                await asyncio.to_thread(owned_postgres.stop)
                await eventually(lambda: writer.refused >= 10, what="the writer seeing the outage")
                assert "database" in await unready(session, base)
                acked_at_restart = len(writer.acked)
                await asyncio.to_thread(owned_postgres.start)

                await eventually(
                    lambda: len(writer.acked) >= acked_at_restart + AFTER_STREAM or writing.done(),
                    within=60,
                    what="writes acknowledged again after the restart",
                )
                stop_writer.set()
                stop_gateway.set()
                await writing
                await publishing
                assert len(writer.acked) >= acked_at_restart + AFTER_STREAM, "no traffic after the restart"

                await ready(session, base)
                await writes_one_by_one(session, writer, AFTER_EXPLICIT)
                await every_frame_stored(gateway, owned_postgres.dsn, tenant)

                acked = set(writer.acked)
                await eventually(
                    lambda: acked <= recorder.seen(),
                    within=60,
                    interval=0.2,
                    what="every acknowledged write notified",
                )
                problems = await read_back(session, writer)
                history = await history_values(owned_postgres.dsn, tenant, N_ATTR)
                frames = await stored_frame_counters(owned_postgres.dsn, tenant, gateway.device_id)
                levels = await history_count(owned_postgres.dsn, tenant, gauge_id, LEVEL_ATTR)
                await ready(session, base)
    finally:
        stop_writer.set()
        stop_gateway.set()
        gateway.stop()
        await recorder.stop()

    print(
        f"{workers} worker(s): writes acked {len(acked)} (at restart {acked_at_restart}), refused {writer.refused};"
        f" frames published {gateway.published()}, stored {len(frames)}; notifications {len(recorder.notifications)}"
    )
    assert problems == [], problems
    assert acked <= history, f"acknowledged writes missing from the history: {sorted(acked - history)[:10]}"
    assert len(frames) == len(set(frames)), "a frame stored twice"
    assert levels == len(frames), (
        f"{levels} history rows of the gauge for {len(frames)} frames: one applied twice"
    )
    assert writer.refused > 0, "the outage was never seen: the test proved nothing"
    assert writer.bad_refusals == [], writer.bad_refusals[:5]
    assert writer.unexpected == [], writer.unexpected[:5]
    assert writer.connection_errors == [], writer.connection_errors[:5]
