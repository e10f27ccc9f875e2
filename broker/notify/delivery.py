"""Sending one Notification (clause 5.3.1) to its endpoint: HTTP POST (6.3) or an MQTT publish (clause 7).

Either sender returns once the endpoint has the notification (a 2xx answer; an MQTT
publish written to the broker for QoS 0, acknowledged for QoS 1 and 2) and raises
``DeliveryError`` with a short reason otherwise; the dispatcher records that reason
as the subscription's lastErrorReason and retries later.

MQTT runs one loop-driven paho client (broker.mqtt) per broker connection (host, port,
TLS, credentials, protocol version): the endpoints are third parties' brokers, whose
TCP and TLS handshakes happen in an executor, so a slow one costs the event loop nothing.
A connection lost is opened again by the next notification for it.

Both connect only to addresses the guard (broker.netguard, via broker.notify.endpoints)
resolved and allowed: HTTP through the session's connector, MQTT by pinning paho to them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from broker.clock import SYSTEM, Clock
from broker.logs import REQUEST_ID
from broker.model.entity import format_time
from broker.mqtt import QOS, Broker, LoopClient, MqttError, MqttVersion, parse_url
from broker.netguard import GuardedResolver, RefusedAddress
from broker.notify.endpoints import REFUSED, WITHHELD
from broker.notify.model import Endpoint
from broker.notify.redact import redact_uri

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
    """A notification that did not reach its endpoint; ``reason`` is fit for lastErrorReason,
    ``detail`` (the reason by default) for the broker's log."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:_MAX_REASON]
        self.detail = detail or reason


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
    if request_id := REQUEST_ID.get():  # the request that caused it (broker.logs)
        headers["X-Request-Id"] = request_id
    return headers


def body_for(endpoint: Endpoint, note: dict[str, Any], context_url: str) -> dict[str, Any]:
    """The notification, with its @context as a member when sent as application/ld+json.

    Clause 5.8.6 (and 6.3.11: no Link header then): the @context goes in the body, on the
    Notification and on each entity of ``data``, so that an entity taken out of the
    notification is still a JSON-LD document on its own.
    """
    if media_type(endpoint) == JSON_LD:
        data = [{**entity, "@context": context_url} for entity in note["data"]]
        return {**note, "data": data, "@context": context_url}
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
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, RefusedAddress):
            raise DeliveryError(REFUSED, f"{REFUSED}: {exc.os_error}") from None
        raise DeliveryError(f"HTTP request failed: {type(exc).__name__}: {exc}") from None
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


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """An MQTT endpoint URI and notifierInfo, parsed (clause 7.2)."""

    broker: Broker
    version: MqttVersion
    topic: str
    qos: int

    @property
    def connection(self) -> tuple[Broker, MqttVersion]:
        """What one client connection is shared by: everything but topic and QoS."""
        return (self.broker, self.version)


def mqtt_target(endpoint: Endpoint) -> MqttTarget:
    """Parse ``mqtt[s]://[user[:password]@]host[:port]/topic[/subtopic]*`` and MQTT-Version / MQTT-QoS."""
    info = {key.lower(): value.strip() for key, value in endpoint.notifier_info}
    version = info.get("mqtt-version", MqttVersion.V5).lower()
    qos_text = info.get("mqtt-qos", "0")
    try:
        broker, topic = parse_url(endpoint.uri)
    except ValueError as exc:
        shown = redact_uri(endpoint.uri)  # lastErrorReason is shown on GET: no password in it
        why = str(exc).replace(endpoint.uri, shown)
        raise DeliveryError(f"MQTT endpoint {shown} is unusable: {why}") from None
    if not topic:
        raise DeliveryError("MQTT endpoint must be mqtt[s]://host[:port]/topic")
    if version not in tuple(MqttVersion):
        raise DeliveryError(f"MQTT-Version {version!r} is not supported (mqtt3.1.1 or mqtt5.0)")
    if qos_text not in {str(q) for q in QOS}:
        raise DeliveryError(f"MQTT-QoS {qos_text!r} is not 0, 1 or 2")
    return MqttTarget(broker=broker, version=MqttVersion(version), topic=topic, qos=int(qos_text))


class _MqttConnection:
    """One loop-driven paho client, connected on demand to the addresses the guard checked."""

    def __init__(self, target: MqttTarget, timeout: float, clock: Clock, guard: GuardedResolver) -> None:
        self._clock = clock
        self._guard = guard
        self._where = (target.broker.host, target.broker.port)
        self._opening = asyncio.Lock()  # deliveries to one broker share its connection attempt
        self.last_used = clock.monotonic()
        client_id = f"ngsi-ld-notifier-{uuid.uuid4().hex[:16]}"
        self._client = LoopClient(target.broker, client_id, version=target.version, timeout=timeout)

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.last_used = self._clock.monotonic()
        try:
            async with self._opening:
                if not self._client.connected:
                    self._client.pin(await self._guard.addresses(*self._where))
                await self._client.open()
            await self._client.publish(topic, payload, qos)
        except RefusedAddress as exc:
            raise DeliveryError(REFUSED, f"{REFUSED}: {exc}") from None
        except OSError as exc:  # the name did not resolve
            raise DeliveryError(f"MQTT connect failed: {exc.strerror or exc}") from None
        except MqttError as exc:
            raise DeliveryError(f"MQTT {exc}") from None

    async def close(self) -> None:
        await self._client.close()


class MqttSender:
    """Publishes notifications, reusing one connection per MQTT broker and credentials."""

    def __init__(self, timeout: float, guard: GuardedResolver, clock: Clock = SYSTEM) -> None:
        self._timeout = timeout
        self._guard = guard
        self._clock = clock
        self._connections: dict[tuple[Broker, MqttVersion], _MqttConnection] = {}

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
            connection = _MqttConnection(target, self._timeout, self._clock, self._guard)
            self._connections[target.connection] = connection
        await connection.publish(target.topic, payload, target.qos)

    async def close_idle(self, idle_seconds: float) -> None:
        """Disconnect from brokers no notification went to for ``idle_seconds``."""
        horizon = self._clock.monotonic() - idle_seconds
        for key, connection in list(self._connections.items()):
            if connection.last_used <= horizon:
                del self._connections[key]
                await connection.close()

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


# ------------------------------------------------------------------------------------------------ both


class Senders:
    """The HTTP session and MQTT connections notifications go out on, chosen by the endpoint's scheme.

    Every connection is made to addresses ``guard`` resolved and checked (broker.netguard); a
    failure at an address the client could not otherwise see is reported without details.
    """

    def __init__(self, timeout: float, guard: GuardedResolver, clock: Clock = SYSTEM) -> None:
        self._timeout = timeout
        self.guard = guard
        self._session: aiohttp.ClientSession | None = None
        self.mqtt = MqttSender(timeout, guard, clock)

    async def open(self) -> None:
        # trust_env stays off: a proxy from the environment would connect where the guard cannot see.
        connector = aiohttp.TCPConnector(resolver=self.guard)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.mqtt.close()
        await self.guard.close()

    async def send(self, endpoint: Endpoint, note: dict[str, Any], context_url: str, tenant: str) -> None:
        """Deliver one notification; DeliveryError with the reason when the endpoint does not have it."""
        try:
            await self._send(endpoint, note, context_url, tenant)
        except DeliveryError as exc:
            if exc.reason != REFUSED and self.guard.hides_details(endpoint.uri):
                raise DeliveryError(WITHHELD, exc.detail) from None
            raise

    async def _send(self, endpoint: Endpoint, note: dict[str, Any], context_url: str, tenant: str) -> None:
        scheme = urlsplit(endpoint.uri).scheme.lower()
        if scheme in ("http", "https"):
            assert self._session is not None, "Senders.open() was not awaited"
            try:
                self.guard.check_url(endpoint.uri)  # a literal address: the connector does not resolve it
            except RefusedAddress as exc:
                raise DeliveryError(REFUSED, f"{REFUSED}: {exc}") from None
            await send_http(self._session, endpoint, note, context_url, tenant)
        elif scheme in ("mqtt", "mqtts"):
            await self.mqtt.send(endpoint, note, context_url, tenant)
        else:
            raise DeliveryError(f"unsupported endpoint scheme {scheme!r}")
