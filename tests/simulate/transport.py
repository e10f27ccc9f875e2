"""Where simulated messages go: an MQTT broker (QoS 1, acknowledged), an HTTP endpoint, or stdout."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp
import orjson
import paho.mqtt.client as mqtt

from broker.mqtt import Broker, LoopClient
from tests.simulate.core import Outgoing, iso_z


class Unreachable(Exception):
    """The MQTT broker could not be reached or refused the connection."""


@dataclass(slots=True)
class Tally:
    """Per family: messages handed over, confirmed (PUBACK or HTTP 2xx), failed, and why."""

    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    downlinks: int = 0  # Sigfox BIDIR replies that carried a downlink
    reasons: Counter[str] = field(default_factory=Counter)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.reasons[reason] += 1


class MqttPublisher:
    """Publishes with paho driven by the asyncio loop; at most ``window`` QoS 1 messages await their PUBACK.

    Waiting for PUBACKs (rather than for paho's send queue) makes the reported rate the rate
    the MQTT broker accepted.
    """

    def __init__(self, url: str, client_id: str, *, qos: int = 1, window: int = 200) -> None:
        self._paho = LoopClient(Broker.from_url(url), client_id)
        self._qos = qos
        self._window = asyncio.Semaphore(window)
        self._pending: dict[int, str] = {}  # mid -> family
        self._early: set[int] = set()  # QoS 0: paho reports the write before publish() returns
        self._idle = asyncio.Event()
        self._idle.set()
        self._connected = asyncio.Event()
        self._lost: str | None = None
        self.tally: dict[str, Tally] = {}
        client = self._paho.client
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    async def connect(self, wait_s: float = 10.0) -> None:
        """Connect and wait for the CONNACK; raises Unreachable when the broker refuses or is absent."""
        where = self._paho.broker.where
        try:
            await self._paho.connect(wait_s)
            await asyncio.wait_for(self._connected.wait(), wait_s)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"MQTT broker {where} unreachable: {exc}") from exc
        if self._lost:
            raise Unreachable(f"MQTT broker {where} refused: {self._lost}")

    async def send(self, message: Outgoing) -> None:
        """Publish once a slot in the window is free; the slot is freed by the PUBACK.

        Raises Unreachable once the connection is lost: the run stops rather than fail every message.
        """
        tally = self.tally.setdefault(message.family, Tally())
        if self._lost:
            raise Unreachable(f"MQTT connection lost: {self._lost}")
        assert message.topic is not None
        await self._window.acquire()
        info = self._client.publish(message.topic, orjson.dumps(message.body), qos=self._qos)
        tally.sent += 1
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._window.release()
            tally.fail(mqtt.error_string(info.rc))
            return
        if info.mid in self._early:
            self._early.discard(info.mid)
            self._window.release()
            tally.confirmed += 1
            return
        self._pending[info.mid] = message.family
        self._idle.clear()

    async def drain(self, wait_s: float = 30.0) -> None:
        """Wait for the outstanding PUBACKs; what does not come in time counts as failed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), wait_s)
        for family in self._pending.values():
            self.tally[family].fail("no PUBACK")
        self._pending.clear()

    async def close(self) -> None:
        await self._paho.close()

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._lost = str(reason)
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        self._lost = self._lost or f"disconnected ({reason})"
        # Nothing more will be acknowledged on this connection: free the senders.
        for family in self._pending.values():
            self.tally[family].fail("connection lost before PUBACK")
            self._window.release()
        self._pending.clear()
        self._idle.set()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        family = self._pending.pop(mid, None)
        if family is None:
            self._early.add(mid)
            return
        self._window.release()
        self.tally[family].confirmed += 1
        if not self._pending:
            self._idle.set()


class HttpPoster:
    """POSTs JSON bodies to the broker's HTTP bindings with at most ``window`` requests open."""

    def __init__(self, base_url: str, *, window: int = 16) -> None:
        self._base = base_url.rstrip("/")
        self._window = asyncio.Semaphore(window)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.tally: dict[str, Tally] = {}

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def send(self, message: Outgoing) -> None:
        tally = self.tally.setdefault(message.family, Tally())
        await self._window.acquire()
        tally.sent += 1
        task = asyncio.create_task(self._post(self._base + message.path, message.body, tally))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, body: Any, tally: Tally) -> None:
        assert self._session is not None
        try:
            headers = {"Content-Type": "application/json"}
            async with self._session.post(url, data=orjson.dumps(body), headers=headers) as response:
                reply = await response.read()
                if response.status < 300:
                    tally.confirmed += 1
                    tally.downlinks += _is_downlink(reply)
                else:
                    tally.fail(f"HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.fail(type(exc).__name__)
        finally:
            self._window.release()

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _is_downlink(reply: bytes) -> bool:
    """A Sigfox BIDIR reply: {"<device>": {"downlinkData": "<16 hex digits>"}}."""
    try:
        document = orjson.loads(reply) if reply else None
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and any(
        isinstance(v, dict) and "downlinkData" in v for v in document.values()
    )


class DryRun:
    """Prints each message as one JSON line instead of sending it."""

    def __init__(self, out: TextIO | None = None, http_url: str = "", *, via_http: bool = False) -> None:
        self._out = out or sys.stdout
        self._base = http_url.rstrip("/")
        self._via_http = via_http
        self.tally: dict[str, Tally] = {}

    async def send(self, message: Outgoing) -> None:
        tally = self.tally.setdefault(message.family, Tally())
        line: dict[str, Any] = {"family": message.family, "at": iso_z(message.at, digits=3)}
        if message.topic is None or self._via_http:
            line["url"] = self._base + message.path
        else:
            line["topic"] = message.topic
        line["body"] = message.body
        self._out.write(orjson.dumps(line).decode() + "\n")
        tally.sent += 1
        tally.confirmed += 1
