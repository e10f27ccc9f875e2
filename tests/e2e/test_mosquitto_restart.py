"""Mosquitto restarted mid-stream: device messages, HTTP writes and MQTT and HTTP notifications flow through.

A broker process whose MQTT_URL is a Mosquitto this module owns (with persistence, stopped with
SIGTERM so it saves its sessions and queued messages). A gateway publishes QoS 1 uplinks, an app
writes over HTTP, and the writes are notified both to an HTTP endpoint and, at QoS 1, to a topic
of that Mosquitto. Mid-stream Mosquitto is stopped (held down until the broker has noticed) and
started again. Afterwards every PUBACKed uplink is stored once, the broker is connected again
(``/ready`` 200), and every acknowledged write was notified on both endpoints.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid

import aiohttp
import pytest

from tests.conftest import database_url, eventually
from tests.e2e.checks import (
    LEVEL_ATTR,
    every_frame_stored,
    history_count,
    ready,
    stored_frame_counters,
    unready,
    writes_one_by_one,
)
from tests.e2e.services import OwnedMosquitto
from tests.e2e.test_process import broker_process, free_port, fresh_schema, wait_ready, with_search_path
from tests.e2e.traffic import (
    DevicePublisher,
    HttpWriter,
    MqttRecorder,
    NotificationRecorder,
    mqtt_connected,
    provision_gauge,
    subscribe,
)

pytestmark = pytest.mark.slow

WRITES = 2000  # at most, before the writer is stopped
FRAMES = 400  # at most, before the publisher is stopped
BEFORE = 30  # acknowledged writes and frames before the restart
AFTER_STREAM = 30  # frames Mosquitto acknowledged after the restart, before the stream stops
AFTER_EXPLICIT = 20  # writes made one by one after the stream stopped, each must succeed
BURST = 200  # frames published at once just before the stop, so that Mosquitto holds some for the broker
BURST_FIRST = 100_001  # their frame counters, apart from the stream's


async def test_a_mosquitto_restart_loses_no_acknowledged_message_and_the_broker_reconnects(
    owned_mosquitto: OwnedMosquitto,
) -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "MQTT_URL": owned_mosquitto.url,
        "NGSI_MQTT_INGEST": "true",
        "NGSI_MQTT_CLIENT_ID": f"e2e-mq-{uuid.uuid4().hex[:8]}",
        "NGSI_MQTT_SHARE_GROUP": "",
        "NGSI_WORKERS": "1",
        # The MQTT notifications go to the Mosquitto the broker ingests from, one of its own
        # listeners, which the endpoint rule refuses unless the allow-list names it.
        "NGSI_NOTIFY_ALLOW": "127.0.0.1",
    }
    writer = HttpWriter(base, tenant, "Meter")
    eui = secrets.token_hex(8)
    gateway = DevicePublisher("127.0.0.1", owned_mosquitto.port, eui, f"wl-{eui[:6]}")
    recorder = NotificationRecorder()
    topic = f"e2e/{tenant}/notify"
    mqtt_recorder = MqttRecorder("127.0.0.1", owned_mosquitto.port, topic)
    await recorder.start()
    await asyncio.to_thread(mqtt_recorder.start)
    stop_writer, stop_gateway = asyncio.Event(), threading.Event()
    try:
        async with (
            fresh_schema() as schema,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        ):
            # A schema of its own: the subscriptions to this module's Mosquitto go with it.
            dsn = with_search_path(database_url(), schema)
            with broker_process(port, dsn, env) as broker:
                await wait_ready(session, port, broker)
                gauge_id = await provision_gauge(session, base, tenant, gateway)
                await subscribe(session, writer, {"uri": recorder.url})
                mqtt_endpoint = {
                    "uri": f"{owned_mosquitto.url}/{topic}",
                    "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
                }
                await subscribe(session, writer, mqtt_endpoint)
                await eventually(
                    lambda: mqtt_connected(session, base), what="the broker's MQTT ingest connected"
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

                burst = set(range(BURST_FIRST, BURST_FIRST + BURST))
                await asyncio.to_thread(gateway.run, BURST_FIRST, BURST, 0.0, threading.Event())
                await eventually(lambda: burst <= gateway.acked(), what="Mosquitto acknowledging the burst")
                await asyncio.to_thread(owned_mosquitto.stop)
                stored_at_stop = len(await stored_frame_counters(dsn, tenant, gateway.device_id))
                await eventually(
                    lambda: not_connected(session, base), what="the broker noticing Mosquitto is gone"
                )
                assert "device-mqtt" in await unready(session, base)
                acked_at_restart = len(gateway.acked())
                await asyncio.to_thread(owned_mosquitto.start)

                await eventually(
                    lambda: len(gateway.acked()) >= acked_at_restart + AFTER_STREAM or publishing.done(),
                    within=60,
                    what="frames acknowledged again after the restart",
                )
                stop_writer.set()
                stop_gateway.set()
                await writing
                await publishing
                assert len(gateway.acked()) >= acked_at_restart + AFTER_STREAM, "no frames after the restart"

                await ready(session, base)
                await eventually(
                    lambda: mqtt_connected(session, base), what="the broker's MQTT ingest reconnected"
                )
                await writes_one_by_one(session, writer, AFTER_EXPLICIT)
                await every_frame_stored(gateway, dsn, tenant)
                acked = set(writer.acked)
                await eventually(
                    lambda: acked <= recorder.seen(),
                    within=60,
                    interval=0.2,
                    what="every write notified over HTTP",
                )
                await eventually(
                    lambda: acked <= mqtt_recorder.seen(),
                    within=60,
                    interval=0.2,
                    what="every write notified over MQTT",
                )
                frames = await stored_frame_counters(dsn, tenant, gateway.device_id)
                levels = await history_count(dsn, tenant, gauge_id, LEVEL_ATTR)
    finally:
        stop_writer.set()
        stop_gateway.set()
        gateway.stop()
        mqtt_recorder.stop()
        await recorder.stop()

    print(
        f"frames published {gateway.published()}, acked at restart {acked_at_restart}, stored at the stop"
        f" {stored_at_stop}, at the end {len(frames)};"
        f" writes acked {len(acked)}; notifications HTTP {len(recorder.notifications)},"
        f" MQTT {len(mqtt_recorder.notifications)}; recorder connections {dict(mqtt_recorder.connects)}"
    )
    assert stored_at_stop < acked_at_restart, (
        "Mosquitto held nothing for the broker when stopped: nothing proved"
    )
    assert len(frames) == len(set(frames)), "a frame stored twice"
    assert levels == len(frames), (
        f"{levels} history rows of the gauge for {len(frames)} frames: one applied twice"
    )
    assert sum(mqtt_recorder.connects.values()) >= 2, "the MQTT recorder never saw the restart"
    assert writer.unexpected == [], writer.unexpected[:5]
    assert writer.connection_errors == [], writer.connection_errors[:5]
    assert writer.refused == 0, "an MQTT restart made the HTTP API refuse writes"


async def not_connected(session: aiohttp.ClientSession, base: str) -> bool:
    return not await mqtt_connected(session, base)
