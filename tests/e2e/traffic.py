"""Load for fault tests: an HTTP writer, a QoS 1 device publisher and notification recorders.

Each generator records what the other side acknowledged (a 2xx, a PUBACK) so that the test can
check afterwards that exactly that was stored and notified, whatever happened meanwhile. Every
value written is distinct (one counter for the whole writer), so a notification or a history row
names the one write it comes from.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.services import free_port
from tests.integration.test_device_ingest import gauge, tts_message

PROBLEM_TYPES = "https://uri.etsi.org/ngsi-ld/errors/"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)


@dataclass
class Refusal:
    """What was wrong with one 503 (None fields are fine)."""

    status: int
    problem: str | None


@dataclass
class HttpWriter:
    """Creates entities of ``entity_type`` and PATCHes their attribute ``n``, recording what was acknowledged.

    ``acked`` holds (entity id, value) of every write answered 2xx; ``refused`` counts 503s,
    ``bad_refusals`` the 503s without ProblemDetails or Retry-After, ``unexpected`` any other
    answer (a 500 during an outage is a bug), ``connection_errors`` requests that got no answer.
    """

    base: str
    tenant: str
    entity_type: str
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acked: list[tuple[str, int]] = field(default_factory=list)
    refused: int = 0
    bad_refusals: list[str] = field(default_factory=list)
    unexpected: list[tuple[int, str]] = field(default_factory=list)
    connection_errors: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    last_attempted: dict[str, int] = field(default_factory=dict)
    _values: itertools.count[int] = field(default_factory=itertools.count)
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def headers(self) -> dict[str, str]:
        return {"NGSILD-Tenant": self.tenant}

    def last_acked(self) -> dict[str, int]:
        """The last acknowledged value of each entity."""
        return dict(self.acked)

    async def create(self, session: aiohttp.ClientSession) -> bool:
        """Create one new entity; True when it was acknowledged (201)."""
        entity_id = f"urn:ngsi-ld:{self.entity_type}:{self.prefix}-{next(self._names):04d}"
        value = next(self._values)
        body = {"id": entity_id, "type": self.entity_type, "n": {"type": "Property", "value": value}}
        url = f"{self.base}/ngsi-ld/v1/entities"
        if await self._send(session, "POST", url, body, entity_id, value, 201):
            self.created.append(entity_id)
            return True
        return False

    async def update(self, session: aiohttp.ClientSession, entity_id: str) -> bool:
        """PATCH a new value into ``entity_id``; True when it was acknowledged (204)."""
        value = next(self._values)
        url = f"{self.base}/ngsi-ld/v1/entities/{entity_id}/attrs"
        body = {"n": {"type": "Property", "value": value}}
        return await self._send(session, "PATCH", url, body, entity_id, value, 204)

    async def run(
        self, session: aiohttp.ClientSession, stop: asyncio.Event, writes: int, pause: float
    ) -> None:
        """Up to ``writes`` writes until ``stop``: one create in five, else an update of a created entity."""
        for number in range(writes):
            if stop.is_set():
                return
            if number % 5 == 0 or not self.created:
                done = await self.create(session)
            else:
                done = await self.update(session, self.created[number % len(self.created)])
            # Refused: back off as a client told to retry later does, not spending the budget at once.
            await asyncio.sleep(pause if done else 10 * pause)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: dict[str, Any],
        entity_id: str,
        value: int,
        expected: int,
    ) -> bool:
        self.last_attempted[entity_id] = value
        try:
            async with session.request(
                method,
                url,
                data=orjson.dumps(body),
                headers={**self.headers, "Content-Type": "application/json"},
            ) as response:
                text = await response.text()
                if response.status == expected:
                    self.acked.append((entity_id, value))
                    return True
                if response.status == 503:
                    self._check_refusal(response, text)
                else:
                    self.unexpected.append((response.status, text[:300]))
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.connection_errors.append(f"{method} {url}: {type(exc).__name__} {exc}")
        return False

    def _check_refusal(self, response: aiohttp.ClientResponse, text: str) -> None:
        self.refused += 1
        if "Retry-After" not in response.headers:
            self.bad_refusals.append(f"no Retry-After: {text[:200]}")
        try:
            problem = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.bad_refusals.append(f"not JSON: {text[:200]}")
            return
        complete = isinstance(problem, dict) and all(problem.get(key) for key in ("type", "title", "detail"))
        if not complete or not str(problem["type"]).startswith(PROBLEM_TYPES) or problem.get("status") != 503:
            self.bad_refusals.append(f"not ProblemDetails of a 503: {text[:200]}")


class DevicePublisher:
    """A gateway publishing The Things Stack uplinks of one gauge with QoS 1, on a paho thread.

    Its session is persistent (clean_session off, its own client id), so what Mosquitto has not
    acknowledged when the connection goes is sent again after the reconnection. ``acked()`` are
    the frame counters Mosquitto sent a PUBACK for: the broker must store each of them.
    """

    def __init__(self, host: str, port: int, eui: str, device_id: str) -> None:
        self.eui = eui
        self.device_id = device_id
        self.topic = f"v3/takamatsu-flood@ttn/devices/{device_id}/up"
        self._host, self._port = host, port
        # A message published while disconnected stays queued in paho (sent on reconnection), but
        # its MessageInfo keeps the "not connected" code: PUBACKs are counted from on_publish.
        self._frames: dict[int, int] = {}  # message id -> frame counter
        self._acked: set[int] = set()  # message ids
        # Two locks: paho calls on_publish holding its own lock, which publish() takes too.
        self._lock = threading.Lock()
        self._acked_lock = threading.Lock()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"e2e-gw-{uuid.uuid4().hex[:8]}", clean_session=False
        )
        self._client.on_publish = self._on_publish
        self._client.max_inflight_messages_set(20)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)

    @staticmethod
    def level(f_cnt: int) -> float:
        """The level (m) the broker stores for frame ``f_cnt``: a bank of 2.0 m plus -2.0 + f_cnt mm."""
        return round(f_cnt / 1000, 6)

    def start(self) -> None:
        self._client.connect(self._host, self._port)
        self._client.loop_start()

    def publish(self, f_cnt: int) -> None:
        message = tts_message(self.eui, self.device_id, -2.0 + f_cnt / 1000, f_cnt=f_cnt)
        info = self._client.publish(self.topic, orjson.dumps(message), qos=1)
        with self._lock:
            self._frames[info.mid] = f_cnt

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        with self._acked_lock:
            self._acked.add(mid)

    def run(self, first: int, count: int, pause: float, stop: threading.Event) -> None:
        """Publish frames ``first``.. (at most ``count``) every ``pause`` s until ``stop`` (on a thread)."""
        for f_cnt in range(first, first + count):
            if stop.is_set():
                return
            self.publish(f_cnt)
            stop.wait(pause)

    def published(self) -> int:
        with self._lock:
            return len(self._frames)

    def acked(self) -> set[int]:
        with self._acked_lock:
            mids = set(self._acked)
        with self._lock:
            return {self._frames[mid] for mid in mids if mid in self._frames}

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class NotificationRecorder:
    """An HTTP endpoint on 127.0.0.1 recording the (id, attribute value) pairs of keyValues notifications."""

    attribute: str = "n"
    notifications: list[dict[str, Any]] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/notify", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.notifications.append(await request.json())
        return web.Response(status=204)

    def seen(self) -> set[tuple[str, Any]]:
        return pairs(self.notifications, self.attribute)


def pairs(notifications: list[dict[str, Any]], attribute: str) -> set[tuple[str, Any]]:
    """(entity id, value of ``attribute``) of every entity in ``notifications`` (keyValues format)."""
    return {(d["id"], d[attribute]) for note in notifications for d in note["data"] if attribute in d}


class MqttRecorder:
    """A subscriber of MQTT notifications with a persistent session that reconnects after a restart."""

    def __init__(self, host: str, port: int, topic: str, attribute: str = "n") -> None:
        self.topic = topic
        self.attribute = attribute
        self.notifications: list[dict[str, Any]] = []
        self.connects: Counter[str] = Counter()
        self._subscribed = threading.Event()
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"e2e-rec-{uuid.uuid4().hex[:8]}", clean_session=False
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connects[str(reason)] += 1
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        body = orjson.loads(message.payload)
        # An MQTT notification is {"metadata": {...}, "body": <the notification>} (clause 7.2.2).
        self.notifications.append(body.get("body", body))

    def start(self) -> None:
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        if not self._subscribed.wait(timeout=30):
            raise AssertionError(f"no SUBACK for {self.topic}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def seen(self) -> set[tuple[str, Any]]:
        return pairs(list(self.notifications), self.attribute)


# ------------------------------------------------------------------------------------------- set-up


async def provision_gauge(
    session: aiohttp.ClientSession, base: str, tenant: str, gateway: DevicePublisher
) -> str:
    """Provision the gateway's gauge (The Things Stack) in ``tenant``; its entity id."""
    entity_id = f"urn:ngsi-ld:FloodMonitoring:{gateway.eui[:10]}"
    device = {**gauge(gateway.eui, entity_id), "device_id": gateway.device_id}
    async with session.post(
        f"{base}/iot/devices", json={"devices": [device]}, headers={"fiware-service": tenant}
    ) as response:
        assert response.status == 201, await response.text()
    return entity_id


async def subscribe(session: aiohttp.ClientSession, writer: HttpWriter, endpoint: dict[str, Any]) -> None:
    """Subscribe ``endpoint`` to every change of the writer's entities (keyValues, attribute n)."""
    subscription = {
        "type": "Subscription",
        "entities": [{"type": writer.entity_type}],
        "notification": {"attributes": ["n"], "format": "keyValues", "endpoint": endpoint},
    }
    async with session.post(
        f"{writer.base}/ngsi-ld/v1/subscriptions", json=subscription, headers=writer.headers
    ) as response:
        assert response.status == 201, await response.text()


async def mqtt_connected(session: aiohttp.ClientSession, base: str) -> bool:
    """Whether the broker at ``base`` says its MQTT ingest is connected (/health)."""
    async with session.get(f"{base}/health") as response:
        health = await response.json()
    return bool(health.get("devices", {}).get("mqtt", {}).get("connected"))
