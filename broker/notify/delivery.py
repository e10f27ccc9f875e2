"""Sending one Notification (clause 5.3.1) to its endpoint: HTTP POST (6.3) or an MQTT publish (clause 7).

Either sender returns once the endpoint has the notification (a 2xx answer; an MQTT
publish written to the broker for QoS 0, acknowledged for QoS 1 and 2) and raises
``DeliveryError`` with a short reason otherwise; the dispatcher records that reason
as the subscription's lastErrorReason and retries later.

MQTT runs one paho client per broker connection (host, port, TLS, credentials,
protocol version), each with its own network thread (``loop_start``): the endpoints
are third parties' brokers, whose DNS look-ups, TCP and TLS handshakes and
reconnect waits paho performs blocking. Everything paho reports is handed to the
event loop with ``call_soon_threadsafe``; futures are only touched on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker.model.entity import format_time
from broker.notify.model import Endpoint

log = logging.getLogger(__name__)

JSON = "application/json"
JSON_LD = "application/ld+json"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
# receiverInfo cannot replace what describes the request itself.
_RESERVED = frozenset(
    {"content-type", "content-length", "link", "host", "transfer-encoding", "connection", "ngsild-tenant"}
)
_MAX_ANSWER = 65_536  # bytes of a receiver's answer read (so the connection is reused) before giving up
_MAX_REASON = 200


class DeliveryError(Exception):
    """A notification that did not reach its endpoint; ``reason`` is fit for lastErrorReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:_MAX_REASON]


def notification(
    subscription_id: str, notification_id: str, data: Sequence[Any], at: datetime
) -> dict[str, Any]:
    """The Notification data type of clause 5.3.1; ``at`` is notifiedAt, the time of sending."""
    return {
        "id": notification_id,
        "type": "Notification",
        "subscriptionId": subscription_id,
        "notifiedAt": format_time(at),
        "data": list(data),
    }


def media_type(endpoint: Endpoint) -> str:
    """application/ld+json when the endpoint asks for it, else application/json (clause 5.2.15)."""
    return JSON_LD if endpoint.accept.strip().lower() == JSON_LD else JSON


def headers_for(endpoint: Endpoint, context_url: str, tenant: str) -> dict[str, str]:
    """HTTP headers of a notification (MQTT 'metadata'): receiverInfo, type, @context link, tenant."""
    headers = {key: value for key, value in endpoint.receiver_info if key.lower() not in _RESERVED}
    media = media_type(endpoint)
    headers["Content-Type"] = media
    if media == JSON:
        headers["Link"] = f'<{context_url}>; rel="{CONTEXT_REL}"; type="{JSON_LD}"'
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    return headers


def body_for(endpoint: Endpoint, note: dict[str, Any], context_url: str) -> dict[str, Any]:
    """The notification, with its @context as a member when sent as application/ld+json."""
    if media_type(endpoint) == JSON_LD:
        return {**note, "@context": context_url}
    return note


async def send_http(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    notification: dict[str, Any],
    context_url: str,
    tenant: str,
) -> None:
    """POST ``notification`` to an http(s) endpoint; DeliveryError unless it answers 2xx in time.

    The time allowed is the session's timeout (the Notifier's http_timeout).
    """
    data = orjson.dumps(body_for(endpoint, notification, context_url))
    try:
        async with session.post(
            endpoint.uri,
            data=data,
            headers=headers_for(endpoint, context_url, tenant),
            allow_redirects=False,
        ) as response:
            await _drain(response)
            if not 200 <= response.status < 300:
                raise DeliveryError(f"HTTP {response.status} {response.reason or ''}".strip())
    except TimeoutError:
        raise DeliveryError(f"no answer within {session.timeout.total or 0:g} s") from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise DeliveryError(f"HTTP request failed: {type(exc).__name__}: {exc}") from None


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read a short answer to its end, so the keep-alive connection can carry the next notification."""
    read = 0
    while read <= _MAX_ANSWER:
        chunk = await response.content.readany()
        if not chunk:
            return
        read += len(chunk)


# ------------------------------------------------------------------------------------------------ MQTT

MQTT_V311 = "mqtt3.1.1"
MQTT_V5 = "mqtt5.0"


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """An MQTT endpoint URI and notifierInfo, parsed (clause 7.2)."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    version: str  # MQTT_V311 or MQTT_V5
    topic: str
    qos: int

    @property
    def connection(self) -> tuple[str, int, bool, str | None, str | None, str]:
        """What one client connection is shared by: everything but topic and QoS."""
        return (self.host, self.port, self.tls, self.username, self.password, self.version)


def mqtt_target(endpoint: Endpoint) -> MqttTarget:
    """Parse ``mqtt[s]://[user[:password]@]host[:port]/topic[/subtopic]*`` and MQTT-Version / MQTT-QoS."""
    parts = urlsplit(endpoint.uri)
    scheme = parts.scheme.lower()
    info = {key.lower(): value.strip() for key, value in endpoint.notifier_info}
    version = info.get("mqtt-version", MQTT_V5).lower()
    qos_text = info.get("mqtt-qos", "0")
    topic = unquote(parts.path.lstrip("/"))
    try:
        port = parts.port or (8883 if scheme == "mqtts" else 1883)
    except ValueError:
        raise DeliveryError(f"MQTT endpoint has an invalid port: {endpoint.uri}") from None
    if scheme not in ("mqtt", "mqtts") or not parts.hostname or not topic:
        raise DeliveryError("MQTT endpoint must be mqtt[s]://host[:port]/topic")
    if version not in (MQTT_V311, MQTT_V5):
        raise DeliveryError(f"MQTT-Version {version!r} is not supported (mqtt3.1.1 or mqtt5.0)")
    if qos_text not in ("0", "1", "2"):
        raise DeliveryError(f"MQTT-QoS {qos_text!r} is not 0, 1 or 2")
    return MqttTarget(
        host=parts.hostname,
        port=port,
        tls=scheme == "mqtts",
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        version=version,
        topic=topic,
        qos=int(qos_text),
    )


class _MqttConnection:
    """One paho client and its network thread; publish results bridged to futures on the loop."""

    def __init__(self, target: MqttTarget, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._connected = False
        self._error = "not connected yet"
        self._first: asyncio.Future[None] = self._loop.create_future()  # the first connect's outcome
        self._pending: dict[int, asyncio.Future[None]] = {}
        self.last_used = time.monotonic()
        protocol = mqtt.MQTTv5 if target.version == MQTT_V5 else mqtt.MQTTv311
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"ngsi-ld-notifier-{uuid.uuid4().hex[:16]}",
            protocol=protocol,
        )
        if target.username is not None:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(target.host, target.port, keepalive=30)
        client.loop_start()
        self._client = client

    # Network thread: hand every event to the loop.
    def _post(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._post(self._connect_result, not reason.is_failure, str(reason))

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        self._post(self._connect_result, False, "connection failed")

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._post(self._lost, str(reason))

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        self._post(self._published, mid, bool(reason.is_failure), str(reason))

    # Event loop.
    def _connect_result(self, ok: bool, reason: str) -> None:
        self._connected = ok
        if not ok:
            self._error = f"MQTT connect failed: {reason}"
        if not self._first.done():
            self._first.set_result(None)

    def _lost(self, reason: str) -> None:
        self._connected = False
        self._error = f"MQTT connection lost: {reason}"
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(DeliveryError(self._error))

    def _published(self, mid: int, failed: bool, reason: str) -> None:
        future = self._pending.pop(mid, None)
        if future is None or future.done():
            return
        if failed:
            future.set_exception(DeliveryError(f"MQTT broker refused the publish: {reason}"))
        else:
            future.set_result(None)

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.last_used = time.monotonic()
        if not self._first.done():
            try:
                async with asyncio.timeout(self._timeout):
                    await asyncio.shield(self._first)
            except TimeoutError:
                raise DeliveryError(
                    f"MQTT broker did not accept a connection within {self._timeout:g} s"
                ) from None
        if not self._connected:
            raise DeliveryError(self._error)
        try:
            info = self._client.publish(topic, payload, qos)
        except ValueError as exc:
            raise DeliveryError(f"MQTT publish refused: {exc}") from None
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeliveryError(f"MQTT publish failed: {mqtt.error_string(info.rc)}")
        # No await since publish(): the thread's report cannot have reached the loop yet.
        future = self._loop.create_future()
        self._pending[info.mid] = future
        try:
            async with asyncio.timeout(self._timeout):
                await future
        except TimeoutError:
            raise DeliveryError(f"MQTT publish not acknowledged within {self._timeout:g} s") from None
        finally:
            self._pending.pop(info.mid, None)

    async def close(self) -> None:
        self._client.disconnect()
        # loop_stop joins the network thread, which may sit in a reconnect wait (up to 1 s).
        await asyncio.to_thread(self._client.loop_stop)
        self._lost("closed")


class MqttSender:
    """Publishes notifications, reusing one connection per MQTT broker and credentials."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._connections: dict[tuple[str, int, bool, str | None, str | None, str], _MqttConnection] = {}

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def send(
        self, endpoint: Endpoint, notification: dict[str, Any], context_url: str, tenant: str
    ) -> None:
        """Publish ``{"metadata": headers, "body": notification}`` (clause 7.2) at the endpoint's QoS."""
        target = mqtt_target(endpoint)
        payload = orjson.dumps(
            {
                "metadata": headers_for(endpoint, context_url, tenant),
                "body": body_for(endpoint, notification, context_url),
            }
        )
        connection = self._connections.get(target.connection)
        if connection is None:
            connection = self._connections[target.connection] = _MqttConnection(target, self._timeout)
        await connection.publish(target.topic, payload, target.qos)

    async def close_idle(self, idle_seconds: float) -> None:
        """Disconnect from brokers no notification went to for ``idle_seconds``."""
        horizon = time.monotonic() - idle_seconds
        for key, connection in list(self._connections.items()):
            if connection.last_used < horizon:
                del self._connections[key]
                await connection.close()

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
