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
