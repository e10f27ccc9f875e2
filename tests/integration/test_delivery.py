"""Senders against real receivers: an aiohttp server on loopback and the Mosquitto of MQTT_URL.

Also home of the two receivers test_worker.py uses: ``Receiver`` (HTTP, with a plan of
answers per path) and ``MqttListener`` (a paho subscriber).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from paho.mqtt.enums import CallbackAPIVersion

from broker.jsonld.context import CORE_URL
from broker.netguard import GuardedResolver
from broker.notify.delivery import (
    CONTEXT_REL,
    DeliveryError,
    MqttSender,
    mqtt_target,
    notification,
    send_http,
)
from broker.notify.endpoints import notify_policy
from broker.notify.model import Endpoint
from tests.conftest import EVENTUALLY_SECONDS, eventually


def loopback_guard() -> GuardedResolver:
    """The guard of a notifier allowed to reach the tests' loopback receivers and Mosquitto."""
    return GuardedResolver(aiohttp.ThreadedResolver(), notify_policy(allow_private=True))


MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
MQTT_HOST = urlsplit(MQTT_URL).hostname or "127.0.0.1"
MQTT_PORT = urlsplit(MQTT_URL).port or 1883
CONTEXT = "https://example.org/city/context.jsonld"


# ------------------------------------------------------------------------------------------ receivers


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # loop.time() at arrival


@dataclass
class Receiver:
    """Records every POST; ``plan[path]`` lists the answers to give (a status, "slow", "hang"), then 204."""

    server: TestServer | None = None
    requests: list[Received] = field(default_factory=list)
    plan: dict[str, list[int | str]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["name"]
        self.requests.append(
            Received(
                path,
                dict(request.headers),
                orjson.loads(await request.read()),
                asyncio.get_running_loop().time(),
            )
        )
        steps = self.plan.get(path)
        answer = steps.pop(0) if steps else 204
        if answer == "hang":
            await self.release.wait()
            return web.Response(status=503)
        if answer == "slow":
            await asyncio.sleep(0.3)
            return web.Response(status=204)
        return web.Response(status=int(answer))

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/{path}"))

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait(self, path: str, count: int, within: float = EVENTUALLY_SECONDS) -> list[Received]:
        """The first ``count`` requests to ``path``, once they have arrived (failing after ``within`` s)."""
        arrived = lambda: len(self.at(path)) >= count  # noqa: E731
        await eventually(arrived, within=within, what=f"{count} requests to /{path}")
        return self.at(path)[:count]


@asynccontextmanager
async def serving() -> AsyncIterator[Receiver]:
    """A Receiver listening on a loopback port until the block ends."""
    recorder = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", recorder.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    recorder.server = server
    try:
        yield recorder
    finally:
        recorder.release.set()
        await server.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as recorder:
        yield recorder


class MqttListener:
    """A paho subscriber on its own thread; messages reach the test through a list it polls."""

    def __init__(self, topic: str, qos: int = 1) -> None:
        self.topic = topic
        self.messages: list[mqtt.MQTTMessage] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-listener-{uuid.uuid4().hex[:8]}"
        )
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=qos)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, message: self.messages.append(message)

    async def __aenter__(self) -> MqttListener:
        self._client.connect(MQTT_HOST, MQTT_PORT)
        self._client.loop_start()
        assert await asyncio.to_thread(self._subscribed.wait, 5), "no SUBACK from Mosquitto"
        return self

    async def __aexit__(self, *_: object) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def wait(self, count: int, within: float = EVENTUALLY_SECONDS) -> list[mqtt.MQTTMessage]:
        """The first ``count`` messages, once they have arrived (failing after ``within`` s)."""
        arrived = lambda: len(self.messages) >= count  # noqa: E731
        await eventually(arrived, within=within, what=f"{count} MQTT messages on {self.topic}")
        return self.messages[:count]


def mqtt_topic() -> str:
    return f"test/notify/{uuid.uuid4().hex[:10]}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def sample(subscription_id: str = "urn:ngsi-ld:Subscription:s1") -> dict[str, Any]:
    data = [{"id": "urn:ngsi-ld:Thing:t1", "type": "Thing", "level": {"type": "Property", "value": 1.5}}]
    return notification(subscription_id, f"urn:ngsi-ld:Notification:{uuid.uuid4()}", data, datetime.now(UTC))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as created:
        yield created


# ------------------------------------------------------------------------------------------ HTTP


async def test_http_notification_is_json_with_link_tenant_and_receiver_info(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    endpoint = Endpoint(
        uri=receiver.url("n"),
        receiver_info=(
            ("X-Auth-Token", "s3cret"),
            ("Content-Type", "text/plain"),
            ("Fiware-Correlator", "c-1"),
        ),
    )
    note = sample()
    await send_http(session, endpoint, note, CONTEXT, "takamatsu")
    (request,) = await receiver.wait("n", 1)
    assert request.body == note
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Link"] == f'<{CONTEXT}>; rel="{CONTEXT_REL}"; type="application/ld+json"'
    assert request.headers["NGSILD-Tenant"] == "takamatsu"
    assert request.headers["X-Auth-Token"] == "s3cret"
    assert request.headers["Fiware-Correlator"] == "c-1"
    assert note["type"] == "Notification"
    assert note["notifiedAt"].endswith("Z")


async def test_ld_json_notification_carries_its_context_in_the_body_and_no_link(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    endpoint = Endpoint(uri=receiver.url("ld"), accept="application/ld+json")
    note = sample()
    await send_http(session, endpoint, note, CORE_URL, "")
    (request,) = await receiver.wait("ld", 1)
    assert request.headers["Content-Type"] == "application/ld+json"
    assert "Link" not in request.headers
    assert "NGSILD-Tenant" not in request.headers  # the default tenant
    # Clause 5.8.6: on the Notification, and on each entity of data (ETSI test suite 046_14).
    data = [{**entity, "@context": CORE_URL} for entity in note["data"]]
    assert request.body == {**note, "data": data, "@context": CORE_URL}


async def test_a_non_2xx_answer_is_a_delivery_error_naming_the_status(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.plan["bad"] = [500]
    with pytest.raises(DeliveryError) as raised:
        await send_http(session, Endpoint(uri=receiver.url("bad")), sample(), CORE_URL, "t")
    assert raised.value.reason == "HTTP 500 Internal Server Error"


async def test_a_receiver_that_does_not_answer_is_a_timeout(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.plan["slow"] = ["hang"]
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        await send_http(session, Endpoint(uri=receiver.url("slow")), sample(), CORE_URL, "t")
    assert raised.value.reason == "no answer within 1 s"
    assert 0.9 < time.monotonic() - started < 2.0


async def test_a_refused_connection_is_a_short_delivery_error(session: aiohttp.ClientSession) -> None:
    endpoint = Endpoint(uri=f"http://127.0.0.1:{closed_port()}/n")
    with pytest.raises(DeliveryError) as raised:
        await send_http(session, endpoint, sample(), CORE_URL, "t")
    assert raised.value.reason.startswith("HTTP request failed: ClientConnectorError")
    assert len(raised.value.reason) <= 200


# ------------------------------------------------------------------------------------------ MQTT


def test_mqtt_endpoints_parse_with_the_defaults_of_clause_7() -> None:
    target = mqtt_target(Endpoint(uri="mqtts://user:p%40ss@broker.example.org/city/flood/alerts"))
    assert (target.broker.host, target.broker.port, target.broker.tls) == ("broker.example.org", 8883, True)
    assert (target.broker.username, target.broker.password) == ("user", "p@ss")
    assert (target.topic, target.qos, target.version) == ("city/flood/alerts", 0, "mqtt5.0")
    plain = mqtt_target(
        Endpoint(uri="mqtt://h/t", notifier_info=(("MQTT-QoS", "1"), ("mqtt-version", "mqtt3.1.1")))
    )
    assert (plain.broker.port, plain.broker.tls, plain.qos, plain.version, plain.broker.username) == (
        1883,
        False,
        1,
        "mqtt3.1.1",
        None,
    )


@pytest.mark.parametrize(
    ("uri", "info", "reason"),
    [
        ("mqtt://h", (), "mqtt[s]://host[:port]/topic"),
        ("mqtt://h:port/t", (), "invalid port"),
        ("mqtt://h/t", (("MQTT-QoS", "3"),), "MQTT-QoS '3'"),
        ("mqtt://h/t", (("MQTT-Version", "mqtt4"),), "MQTT-Version 'mqtt4'"),
    ],
)
def test_unusable_mqtt_endpoints_are_delivery_errors(
    uri: str, info: tuple[tuple[str, str], ...], reason: str
) -> None:
    with pytest.raises(DeliveryError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        mqtt_target(Endpoint(uri=uri, notifier_info=info))


def test_an_unusable_mqtt_endpoint_does_not_show_its_password_in_the_reason() -> None:
    with pytest.raises(DeliveryError) as raised:
        mqtt_target(Endpoint(uri="mqtt://plow:s3cret@h:port/t"))
    assert "s3cret" not in raised.value.reason
    assert "plow:***@h" in raised.value.reason


async def publish_one(
    sender: MqttSender, uri: str, info: tuple[tuple[str, str], ...], **endpoint: Any
) -> tuple[dict[str, Any], mqtt.MQTTMessage]:
    topic = urlsplit(uri).path.lstrip("/")
    async with MqttListener(topic, qos=2) as listener:
        note = sample()
        await sender.send(Endpoint(uri=uri, notifier_info=info, **endpoint), note, CONTEXT, "ayagawa")
        (message,) = await listener.wait(1)
    return note, message


async def test_mqtt_qos0_publish_carries_metadata_and_body() -> None:
    sender = MqttSender(timeout=2.0, guard=loopback_guard())
    try:
        uri = f"mqtt://{MQTT_HOST}:{MQTT_PORT}/{mqtt_topic()}"
        note, message = await publish_one(sender, uri, (), receiver_info=(("X-Key", "k"),))
    finally:
        await sender.close()
    assert message.qos == 0
    assert orjson.loads(message.payload) == {
        "metadata": {
            "X-Key": "k",
            "Content-Type": "application/json",
            "Link": f'<{CONTEXT}>; rel="{CONTEXT_REL}"; type="application/ld+json"',
            "NGSILD-Tenant": "ayagawa",
        },
        "body": note,
    }


@pytest.mark.parametrize(
    ("version", "qos"), [("mqtt3.1.1", 1), ("mqtt5.0", 1), ("mqtt3.1.1", 2), ("mqtt5.0", 2)]
)
async def test_mqtt_qos1_and_2_publishes_return_once_acknowledged(version: str, qos: int) -> None:
    sender = MqttSender(timeout=2.0, guard=loopback_guard())
    try:
        uri = f"mqtt://notifier:secret@{MQTT_HOST}:{MQTT_PORT}/{mqtt_topic()}"
        info = (("MQTT-QoS", str(qos)), ("MQTT-Version", version))
        note, message = await publish_one(sender, uri, info, accept="application/ld+json")
    finally:
        await sender.close()
    assert message.qos == qos
    payload = orjson.loads(message.payload)
    data = [{**entity, "@context": CONTEXT} for entity in note["data"]]
    assert payload["body"] == {**note, "data": data, "@context": CONTEXT}
    assert payload["metadata"]["Content-Type"] == "application/ld+json"
    assert "Link" not in payload["metadata"]


async def test_mqtt_connections_are_reused_per_broker_and_protocol_version() -> None:
    sender = MqttSender(timeout=2.0, guard=loopback_guard())
    base = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"
    try:
        for topic in (mqtt_topic(), mqtt_topic()):
            await sender.send(Endpoint(uri=f"{base}/{topic}"), sample(), CONTEXT, "")
        assert sender.connection_count == 1
        v3 = (("MQTT-Version", "mqtt3.1.1"),)
        await sender.send(Endpoint(uri=f"{base}/{mqtt_topic()}", notifier_info=v3), sample(), CONTEXT, "")
        assert sender.connection_count == 2
        await sender.close_idle(0.0)
        assert sender.connection_count == 0
    finally:
        await sender.close()


async def test_an_unreachable_mqtt_broker_is_a_prompt_delivery_error() -> None:
    sender = MqttSender(timeout=3.0, guard=loopback_guard())
    endpoint = Endpoint(uri=f"mqtt://127.0.0.1:{closed_port()}/t")
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError, match="MQTT connect failed"):
            await sender.send(endpoint, sample(), CONTEXT, "")
        # The next attempt fails at once too (the client keeps reconnecting on its thread).
        with pytest.raises(DeliveryError, match="MQTT connect failed"):
            await sender.send(endpoint, sample(), CONTEXT, "")
    finally:
        await sender.close()
    assert time.monotonic() - started < 2.5
