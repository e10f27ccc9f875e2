"""The adapters' MQTT client: QoS 1 device messages acknowledged only after the commit.

paho runs on the event loop (broker/mqtt), so message callbacks run next to the
pipeline. The session is persistent (clean session off, a stable client id): what gateways
publish while this process is down waits in the MQTT broker. With several processes, shared
subscriptions ($share/<group>/...) split the messages between them. A message is acknowledged
when the pipeline has committed it, or stored it as a dead letter; until then the MQTT broker
keeps it and redelivers it after a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt

from adapters.message import for_log
from broker.clock import SYSTEM, Clock, wait_event
from broker.mqtt import Broker, LoopClient
from broker.supervise import Supervisor

log = logging.getLogger(__name__)

# The connection keeper's name under the process Supervisor, and its health probe's (on /ready).
PART = "device-mqtt"

# Receives (topic, payload) and returns a future that completes once the message is safe.
Handler = Callable[[str, bytes], "asyncio.Future[Any]"]

_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


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
        backlog: Callable[[], int] | None = None,
        high_water: int = 2000,
        clock: Clock = SYSTEM,
    ) -> None:
        # Flow control: Mosquitto 2.0.11 keeps sending past max_inflight_messages once acks flow
        # (measured: 170,000 unacknowledged messages, 750 MB, in a minute of overload), so the
        # client stops reading while ``backlog()`` is above ``high_water`` and resumes below half.
        self._backlog = backlog
        self._high_water = high_water
        self.paused_times = 0
        self._filters = [f"$share/{share_group}/{t}" if share_group else t for t in topics]
        self._handler = handler
        self._paho = LoopClient(Broker.from_url(url), client_id, clean_session=False, manual_ack=True)
        client = self._paho.client
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._clock = clock
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._supervisor: Supervisor | None = None
        # Why the last attempt to connect failed (None before the first attempt ends, and once it worked).
        self._failure: str | None = None
        self._attempted = False
        self.received = 0
        self.acknowledged = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Connect in the background (retrying with back-off) and return at once.

        With ``supervisor``, the connection keeper is supervised (restarted after a fault) and the
        connection is its health probe: /ready names ``device-mqtt`` while it is down.
        """
        if supervisor is None:
            self._task = asyncio.get_running_loop().create_task(self.run())
            return
        self._supervisor = supervisor
        supervisor.probe(PART, self.problem)
        supervisor.spawn(PART, self.run)

    def problem(self) -> str | None:
        """None while connected (or still making its first attempt), else why not (a probe)."""
        if self.connected or not self._attempted:
            return None
        return f"not connected to MQTT {self._paho.broker.where} ({self._failure or 'connection lost'})"

    async def wait_connected(self) -> None:
        """Until the client is connected and subscribed (callers bound it with asyncio.timeout)."""
        await self._connected.wait()

    async def close(self) -> None:
        """Disconnect; unacknowledged messages stay with the MQTT broker for the next session."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.unprobe(PART)
            await self._supervisor.cancel(PART)
            self._supervisor = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._paho.close()
        self._connected.clear()

    def pause(self) -> None:
        """Take no more messages (a graceful stop); acknowledgements still go out."""
        self._backlog = None  # no automatic resume
        self._paho.pause_reading()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Send ``payload`` (commands down to devices); paho queues it while disconnected."""
        self._paho.client.publish(topic, payload, qos=qos)

    async def run(self) -> None:
        """Keep the connection: connect, and again as soon as it is lost, backing off while the
        MQTT broker is away. Anything but a refused or timed-out connection is a fault to restart."""
        attempt = 0
        while not self._closing:
            if self.connected:
                self._lost.clear()
                if self.connected:
                    await self._lost.wait()
                continue
            try:
                await self._paho.connect()
                if not await wait_event(self._clock, self._connected, 10.0):
                    raise TimeoutError("no CONNACK within 10 s")
            except (OSError, TimeoutError) as exc:
                self._failure = f"{type(exc).__name__}: {exc}"
                delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                attempt += 1
                log.warning(
                    "MQTT %s unreachable (%s); retrying in %.1f s", self._paho.broker.where, exc, delay
                )
                await self._clock.sleep(delay)
                continue
            finally:
                self._attempted = True
            attempt = 0
            self._failure = None

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        # Resubscribing is harmless with a kept session and needed with a new one.
        client.subscribe([(topic, 1) for topic in self._filters])
        self._connected.set()
        log.info(
            "MQTT connected to %s (session %s), %d topic filters",
            self._paho.broker.where,
            "resumed" if flags.session_present else "new",
            len(self._filters),
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        self._lost.set()
        if not self._closing:
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.received += 1
        mid, qos = message.mid, message.qos
        try:
            future = self._handler(message.topic, bytes(message.payload))
        except Exception:
            # The handler dead-letters what it cannot parse; reaching here is a bug: keep the
            # message unacknowledged so it is redelivered after a restart rather than lost.
            log.exception(
                "MQTT message on %r could not be handed over", for_log(message.topic, message.topic)
            )
            return
        if self._backlog is not None and self._backlog() > self._high_water and not self._paho.paused:
            self._paho.pause_reading()
            self.paused_times += 1
        if qos == 0:
            future.add_done_callback(self._maybe_resume)
            return

        def acknowledge(done: asyncio.Future[Any]) -> None:
            self._maybe_resume(done)
            if done.cancelled() or done.exception() is not None:
                return
            client.ack(mid, qos)
            self.acknowledged += 1

        future.add_done_callback(acknowledge)

    def _maybe_resume(self, _: object) -> None:
        if self._paho.paused and self._backlog is not None and self._backlog() <= self._high_water // 2:
            self._paho.resume_reading()
