"""QoS 1 device messages survive the broker being down or killed mid-batch, and are stored once.

A real broker process with its persistent MQTT session (a client id of this test's own), a real
Mosquitto, and a gauge publishing over The Things Stack's topic. Each stored message claims its
frame key in the transaction that stores it, so counting the device's keys counts the messages
committed, and a redelivery that were applied twice would show in the history as an extra row.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import database_url, forget_mqtt_session
from tests.e2e.test_process import broker_process, free_port, wait_ready
from tests.integration.test_delivery import MQTT_HOST, MQTT_PORT, MQTT_URL
from tests.integration.test_device_ingest import gauge, tts_message

DOWN_MESSAGES = 300
KILLED_MESSAGES = 3000


def publish_all(messages: list[tuple[str, bytes]]) -> None:
    """Publish with QoS 1 and wait for every PUBACK: Mosquitto has each one when this returns."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-gauge-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(100)
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    try:
        infos = [client.publish(topic, body, qos=1) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def stored_frames(tenant: str, device: str) -> int:
    conn = await asyncpg.connect(database_url())
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM device_frames WHERE tenant = $1 AND device = $2", tenant, device
        )
    finally:
        await conn.close()
    return int(count)


async def history_rows(tenant: str, entity_id: str) -> int | None:
    """History rows of the gauge's currentLevel (None when this database keeps no history)."""
    conn = await asyncpg.connect(database_url())
    try:
        if await conn.fetchval("SELECT to_regclass('attribute_history')") is None:
            return None
        count = await conn.fetchval(
            "SELECT count(*) FROM attribute_history WHERE tenant = $1 AND entity_id = $2"
            " AND attr LIKE '%currentLevel'",
            tenant,
            entity_id,
        )
    finally:
        await conn.close()
    return int(count)


async def wait_frames(tenant: str, device: str, expected: int, within: float = 60.0) -> int:
    deadline = time.monotonic() + within
    count = 0
    while time.monotonic() < deadline:
        count = await stored_frames(tenant, device)
        if count >= expected:
            return count
        await asyncio.sleep(0.2)
    return count


async def provision(session: aiohttp.ClientSession, port: int, tenant: str, device: dict[str, Any]) -> None:
    async with session.post(
        f"http://127.0.0.1:{port}/iot/devices", json={"devices": [device]}, headers={"fiware-service": tenant}
    ) as response:
        assert response.status == 201, await response.text()


async def test_messages_published_while_down_or_killed_mid_batch_are_all_stored_once() -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    eui = secrets.token_hex(8)
    device_id = f"wl-{eui[:6]}"
    entity_id = f"urn:ngsi-ld:FloodMonitoring:{eui[:10]}"
    client_id = f"e2e-ingest-{uuid.uuid4().hex[:8]}"
    env = {"NGSI_MQTT_INGEST": "true", "NGSI_MQTT_CLIENT_ID": client_id, "NGSI_MQTT_SHARE_GROUP": ""}
    topic = f"v3/takamatsu-flood@ttn/devices/{device_id}/up"

    def uplinks(first: int, count: int) -> list[tuple[str, bytes]]:
        return [
            # a distinct level each (the gauge reports millimetres): each one is a change to historise
            (topic, orjson.dumps(tts_message(eui, device_id, -2.0 + n / 1000, f_cnt=n)))
            for n in range(first, first + count)
        ]

    port = free_port()
    try:
        async with aiohttp.ClientSession() as session:
            with broker_process(port, database_url(), env) as first:
                await wait_ready(session, port, first)
                await provision(session, port, tenant, gauge(eui, entity_id))
                await asyncio.sleep(0.5)  # subscribed before it goes away
                first.send_signal(signal.SIGTERM)
                first.wait(timeout=20)

            # Down: Mosquitto keeps the QoS 1 messages for the persistent session.
            await asyncio.to_thread(publish_all, uplinks(1, DOWN_MESSAGES))

            with broker_process(port, database_url(), env) as second:
                await wait_ready(session, port, second)
                assert await wait_frames(tenant, device_id, DOWN_MESSAGES) == DOWN_MESSAGES
                # Killed while a stream is arriving: whatever was not committed is redelivered.
                publishing = asyncio.create_task(
                    asyncio.to_thread(publish_all, uplinks(DOWN_MESSAGES + 1, KILLED_MESSAGES))
                )
                await asyncio.sleep(0.4)
                second.send_signal(signal.SIGKILL)
                second.wait(timeout=10)
                await publishing
            killed_at = await stored_frames(tenant, device_id)

            with broker_process(port, database_url(), env) as third:
                await wait_ready(session, port, third)
                total = DOWN_MESSAGES + KILLED_MESSAGES
                assert await wait_frames(tenant, device_id, total) == total
                await asyncio.sleep(1.0)  # nothing beyond the total arrives late
                assert await stored_frames(tenant, device_id) == total
                history = await history_rows(tenant, entity_id)
                assert history in (None, total)
    finally:
        await asyncio.to_thread(forget_mqtt_session, MQTT_URL, client_id)
    assert killed_at < total, "the kill came after everything was stored: the test proved nothing"


async def test_two_workers_split_the_mqtt_ingest_by_shared_subscription_and_store_each_message_once() -> None:
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    eui = secrets.token_hex(8)
    device_id = f"wl-{eui[:6]}"
    entity_id = f"urn:ngsi-ld:FloodMonitoring:{eui[:10]}"
    client_id = f"e2e-split-{uuid.uuid4().hex[:8]}"
    env = {
        "NGSI_WORKERS": "2",
        "NGSI_MQTT_INGEST": "true",
        "NGSI_MQTT_CLIENT_ID": client_id,
        "NGSI_MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}",
    }
    topic = f"v3/takamatsu-flood@ttn/devices/{device_id}/up"
    count = 1000
    port = free_port()
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            with broker_process(port, database_url(), env) as broker:
                await wait_ready(session, port, broker)
                await provision(session, port, tenant, gauge(eui, entity_id))
                received = await mqtt_counts(session, port, workers=2)
                assert len(received) == 2, "both workers must be up and subscribed"
                messages = [
                    (topic, orjson.dumps(tts_message(eui, device_id, -2.0 + n / 1000, f_cnt=n)))
                    for n in range(1, count + 1)
                ]
                await asyncio.to_thread(publish_all, messages)
                assert await wait_frames(tenant, device_id, count) == count
                received = await mqtt_counts(session, port, workers=2)
    finally:
        for index in (0, 1):
            await asyncio.to_thread(forget_mqtt_session, MQTT_URL, f"{client_id}-{index}")
    assert await stored_frames(tenant, device_id) == count
    assert all(n > 0 for n in received.values()), f"one worker received nothing: {received}"


async def mqtt_counts(session: aiohttp.ClientSession, port: int, workers: int) -> dict[int, int]:
    """MQTT messages received per worker pid, once ``workers`` connected workers have answered."""
    counts: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(counts) < workers:
        async with session.get(f"http://127.0.0.1:{port}/health") as response:
            health = await response.json()
        mqtt_state = health.get("devices", {}).get("mqtt", {})
        if mqtt_state.get("connected"):
            counts[health["pid"]] = mqtt_state["received"]
        await asyncio.sleep(0.05)
    return counts
