"""paho on the asyncio loop against the real Mosquitto: connect, publish, close cleanly."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import pytest

from adapters.mqtt_loop import Broker, LoopClient
from tests.integration.test_delivery import MQTT_URL


def test_a_broker_url_gives_host_port_credentials_and_tls() -> None:
    assert Broker.from_url("mqtt://u%40x:p%3A@gw.example:1999") == Broker(
        "gw.example", 1999, "u@x", "p:", False
    )
    assert Broker.from_url("mqtts://gw.example").port == 8883
    assert Broker.from_url("mqtt://127.0.0.1").username is None
    with pytest.raises(ValueError, match="mqtt://"):
        Broker.from_url("http://gw.example")


async def test_a_loop_client_connects_publishes_and_closes_without_leaving_its_socket() -> None:
    connected = asyncio.Event()
    published = asyncio.Event()
    paho = LoopClient(Broker.from_url(MQTT_URL), f"test-loop-{uuid.uuid4().hex[:8]}")
    paho.client.on_connect = lambda *_: connected.set()

    def on_publish(*_: Any) -> None:
        published.set()

    paho.client.on_publish = on_publish
    await paho.connect()
    async with asyncio.timeout(5):
        await connected.wait()
    paho.client.publish(f"test/loop/{uuid.uuid4().hex[:6]}", b"x", qos=1)
    async with asyncio.timeout(5):
        await published.wait()

    await paho.close()

    assert paho.client.socket() is None
    del paho
    gc.collect()  # with filterwarnings=error, an unclosed socket or a teardown error fails here


async def test_the_ingest_client_stops_reading_while_its_backlog_is_high_and_loses_nothing() -> None:
    from adapters.mqtt import MqttIngest
    from tests.conftest import forget_mqtt_session
    from tests.e2e.test_device_restart import publish_all

    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[None]] = []
    most = 0

    def handler(_topic: str, _payload: bytes) -> asyncio.Future[None]:
        nonlocal most
        future: asyncio.Future[None] = loop.create_future()
        waiting.append(future)
        most = max(most, len(waiting))
        return future

    async def slow_consumer() -> None:
        while True:
            await asyncio.sleep(0.01)
            for future in waiting[:50]:
                future.set_result(None)
            del waiting[:50]

    topic = f"test/flow/{uuid.uuid4().hex[:8]}"
    client_id = f"test-flow-{uuid.uuid4().hex[:8]}"
    ingest = MqttIngest(
        MQTT_URL, client_id, [f"{topic}/+"], handler, backlog=lambda: len(waiting), high_water=200
    )
    await ingest.start()
    consumer = loop.create_task(slow_consumer())
    try:
        async with asyncio.timeout(10):
            await ingest.wait_connected()
        await asyncio.to_thread(publish_all, [(f"{topic}/x", b"m" * 200)] * 3000)
        deadline = loop.time() + 30
        while ingest.acknowledged < 3000:
            assert loop.time() < deadline, f"{ingest.acknowledged} of 3000 acknowledged"
            await asyncio.sleep(0.05)
    finally:
        consumer.cancel()
        await ingest.close()
        await asyncio.to_thread(forget_mqtt_session, MQTT_URL, client_id)

    assert ingest.paused_times > 0
    assert most <= 201, f"{most} messages held at once with a high-water mark of 200"
