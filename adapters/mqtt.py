"""The adapters' MQTT client: paho on the asyncio loop, QoS 1 acknowledged only after the commit.

paho's socket is driven by the event loop (add_reader / add_writer and a once-a-second misc
task), not by a thread, so message callbacks run on the loop next to the pipeline. The session
is persistent (clean session off, a stable client id): what gateways publish while this process
is down waits in the MQTT broker. With several processes, shared subscriptions ($share/<group>/…)
split the messages between them. A message is acknowledged when the pipeline has committed it,
or stored it as a dead letter; until then the MQTT broker keeps it and redelivers it after a
reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

# Receives (topic, payload) and returns a future that completes once the message is safe.
Handler = Callable[[str, bytes], "asyncio.Future[Any]"]

_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_KEEPALIVE = 30


class MqttIngest:
    """Subscribes to the uplink topics of every family and hands each message to ``handler``."""

    def __init__(
        self,
        url: str,
        client_id: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        share_group: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL {url!r} must start with mqtt:// or mqtts://")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self._filters = [f"$share/{share_group}/{t}" if share_group else t for t in topics]
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if parts.username:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            self._client.tls_set()
        self._client.max_inflight_messages_set(1000)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_register_write
        self._client.on_socket_unregister_write = self._on_unregister_write
        self._connected = asyncio.Event()
        self._closing = False
        self._configured = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.received = 0
        self.acknowledged = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect in the background (retrying with back-off) and return at once."""
        self._spawn(self._connect_loop())
        self._spawn(self._misc_loop())

    async def wait_connected(self) -> None:
        """Until the client is connected and subscribed (callers bound it with asyncio.timeout)."""
        await self._connected.wait()

    async def close(self) -> None:
        """Disconnect; unacknowledged messages stay with the MQTT broker for the next session."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.connected:
            self._client.disconnect()
        sock = self._client.socket()
        if sock is not None:
            self._forget_socket(sock)
        self._connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Send ``payload`` (commands down to devices); paho queues it while disconnected."""
        self._client.publish(topic, payload, qos=qos)

    # --- connection -------------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        attempt = 0
        while not self._closing:
            if not self.connected:
                try:
                    await self._connect_once()
                    attempt = 0
                except OSError as exc:
                    delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                    attempt += 1
                    where = f"{self._host}:{self._port}"
                    log.warning("MQTT %s unreachable (%s); retrying in %.1f s", where, exc, delay)
                    await asyncio.sleep(delay)
                    continue
            await asyncio.sleep(1.0)

    async def _connect_once(self) -> None:
        # paho connects with a blocking socket call: make sure the port answers first, so a down
        # MQTT broker costs the loop nothing but this awaitable probe.
        _, writer = await asyncio.wait_for(asyncio.open_connection(self._host, self._port), 5.0)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        if self._configured:
            self._client.reconnect()
        else:
            self._configured = True
            self._client.connect(self._host, self._port, keepalive=_KEEPALIVE)
        await asyncio.wait_for(self._connected.wait(), 10.0)

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._client.socket() is not None:
                self._client.loop_misc()

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        # Resubscribing is harmless with a kept session and needed with a new one.
        client.subscribe([(topic, 1) for topic in self._filters])
        self._connected.set()
        log.info(
            "MQTT connected to %s:%d (session %s), %d topic filters",
            self._host,
            self._port,
            "resumed" if flags.session_present else "new",
            len(self._filters),
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        if not self._closing:
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    # --- messages ---------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.received += 1
        mid, qos = message.mid, message.qos
        try:
            future = self._handler(message.topic, bytes(message.payload))
        except Exception:
            # The handler dead-letters what it cannot parse; reaching here is a bug: keep the
            # message unacknowledged so it is redelivered after a restart rather than lost.
            log.exception("MQTT message on %r could not be handed over", message.topic)
            return
        if qos == 0:
            return

        def acknowledge(done: asyncio.Future[Any]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            client.ack(mid, qos)
            self.acknowledged += 1

        future.add_done_callback(acknowledge)

    # --- paho's socket on the event loop ----------------------------------------------------

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._forget_socket(sock)

    def _on_register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _forget_socket(self, sock: socket.socket | Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
