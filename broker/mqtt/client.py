"""paho-mqtt driven by the asyncio loop: the one MQTT client of the process (ingest, notifications, tools).

As Home Assistant's MQTT integration does: paho's blocking connect (DNS, TCP, TLS handshake)
runs in an executor, then its socket is watched with add_reader / add_writer and a
once-a-second task runs its keepalive, so every callback runs on the loop, next to the code
it feeds; no network thread. ``open`` waits for the CONNACK, ``publish`` for the broker's
acknowledgement of that message id (PUBACK, PUBCOMP; the write itself at QoS 0), each
within a timeout.

Callers that set paho's own ``on_connect`` / ``on_disconnect`` / ``on_publish`` take those
events over: ``open`` and ``publish`` then refuse to run, since nothing would tell them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker.mqtt.address import QOS, Broker, MqttVersion
from broker.tasks import cancel_and_wait

log = logging.getLogger(__name__)

KEEPALIVE = 30
_CLOSE_WAIT = 1.0  # seconds to let the broker close the connection after DISCONNECT
# Most packets read off a connection the peer reset, in one go, before paho sees its end.
_DRAIN_LIMIT = 100_000


class MqttError(Exception):
    """A connect or publish that did not succeed; the message says why, briefly."""


class _PinnedClient(mqtt.Client):
    """paho, connecting to addresses checked beforehand (``pinned``, see broker.netguard) rather than
    looking its host up again; TLS still checks the certificate against the host name."""

    pinned: tuple[str, ...] = ()

    def _create_socket_connection(self) -> socket.socket:
        if not self.pinned:
            return super()._create_socket_connection()
        error: OSError | None = None
        for address in self.pinned:
            try:
                return socket.create_connection(
                    (address, self._port),
                    timeout=self._connect_timeout,
                    source_address=(self._bind_address, self._bind_port),
                )
            except OSError as exc:
                error = exc
        assert error is not None
        raise error


class LoopClient:
    """A paho client whose socket the running asyncio loop drives."""

    def __init__(
        self,
        broker: Broker,
        client_id: str,
        *,
        version: MqttVersion = MqttVersion.V311,
        timeout: float = 5.0,
        **options: Any,
    ) -> None:
        self.broker = broker
        self.timeout = timeout  # seconds for a connection, a CONNACK, an acknowledgement
        protocol = mqtt.MQTTv5 if version is MqttVersion.V5 else mqtt.MQTTv311
        self.client = _PinnedClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **options
        )
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set()
        self.client.connect_timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._misc: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[Any] | None = None
        self._configured = False
        self._paused = False
        self._connack: asyncio.Future[str | None] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._socket_closed = asyncio.Event()
        self.connected = False
        client = self.client
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish

    # ------------------------------------------------------------------------------------ connecting

    def pin(self, addresses: Sequence[str]) -> None:
        """Connect to these addresses (already checked), in order, instead of resolving the host."""
        self.client.pinned = tuple(addresses)

    async def connect(self, within: float | None = None) -> None:
        """Open the connection (the CONNACK arrives later, in on_connect); raises OSError/TimeoutError.

        paho's connect blocks (DNS look-up, TCP and TLS handshakes): it runs in an executor, so an
        absent or slow MQTT broker costs the loop nothing. ``within``: seconds (default ``timeout``).
        """
        if within is not None and within != self.client.connect_timeout:
            with contextlib.suppress(RuntimeError):  # paho refuses while a connection is under way
                self.client.connect_timeout = within
        if self._configured:
            call: Callable[[], Any] = self.client.reconnect
        else:
            host, port = self.broker.host, self.broker.port
            call = lambda: self.client.connect(host, port, keepalive=KEEPALIVE)  # noqa: E731
        attempt = self._connecting = self._loop.run_in_executor(None, _connect, call)
        attempt.add_done_callback(self._connect_ended)
        # Shielded: a caller that gives up must not leave paho half connected behind close().
        await asyncio.shield(attempt)
        self._configured = True
        if self._misc is None:
            self._misc = self._loop.create_task(self._keepalive(), name=f"mqtt keepalive {self.broker.where}")

    def _connect_ended(self, attempt: asyncio.Future[Any]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # seen: whoever awaited it has it, or gave up waiting

    async def open(self) -> None:
        """Connect and wait for the broker to accept the session; MqttError says why not."""
        self._own("on_connect", self._on_connect)
        if self.connected:
            return
        self._connack = self._loop.create_future()
        timeout = self.timeout
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self.connect()
                except OSError as exc:
                    raise MqttError(f"connect failed: {exc.strerror or exc}") from None
                refused = await self._connack
        except TimeoutError:
            raise MqttError(
                f"broker {self.broker.where} did not accept a connection within {timeout:g} s"
            ) from None
        finally:
            self._connack = None
        if refused is not None:
            raise MqttError(f"connect failed: {refused}")

    async def close(self) -> None:
        """Disconnect, let paho see the socket close, and stop watching it."""
        if self._connecting is not None:
            with contextlib.suppress(Exception):
                await self._connecting
        if self._misc is not None:
            await cancel_and_wait(self._misc)
            self._misc = None
        if self.client.socket() is not None:
            self.client.disconnect()
            # The MQTT broker closes the connection on DISCONNECT; paho notices on its next read.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT):
                    await self._socket_closed.wait()
        sock = self.client.socket()
        if sock is not None:
            self._forget(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._fail_all("connection closed")

    # ------------------------------------------------------------------------------------ publishing

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publish and wait until the broker has it (acknowledged at QoS 1 and 2, written at QoS 0)."""
        self._own("on_publish", self._on_publish)
        if qos not in QOS:
            raise MqttError(f"QoS {qos} is not one of 0, 1, 2")
        if not self.connected:
            raise MqttError(f"not connected to {self.broker.where}")
        try:
            info = self.client.publish(topic, payload, qos)
        except ValueError as exc:
            raise MqttError(f"publish refused: {exc}") from None
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish failed: {mqtt.error_string(info.rc)}")
        # paho reports on the loop, after this returns (the write is registered, not made here).
        future = self._acks[info.mid] = self._loop.create_future()
        try:
            async with asyncio.timeout(self.timeout):
                await future
        except TimeoutError:
            raise MqttError(f"publish not acknowledged within {self.timeout:g} s") from None
        finally:
            self._acks.pop(info.mid, None)

    # ------------------------------------------------------------------------------------ flow control

    @property
    def paused(self) -> bool:
        return self._paused

    def pause_reading(self) -> None:
        """Stop reading the socket: TCP pushes back, and the MQTT broker keeps what follows queued."""
        if self._paused:
            return
        self._paused = True
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                self._loop.remove_reader(sock)

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        sock = self.client.socket()
        if sock is not None:
            self._watch_read(sock)

    # ------------------------------------------------------------------------------------ the socket

    def _readable(self) -> None:
        """Let paho read (one packet a call); on a connection the peer reset, read on to its end.

        uvloop, when the socket reports an error (a reset: Mosquitto stopped while our PUBACKs
        were unread), runs the reader once more and closes its poll handle for good. Packets
        buffered before the reset would then never be read, paho would never reach the error
        and never call the connection lost: the client would sit "connected" on a dead socket,
        and its next write would fail on the closed handle. asyncio's selector keeps calling.
        """
        client = self.client
        sock = client.socket()
        rc = client.loop_read()
        for _ in range(_DRAIN_LIMIT):
            if rc != mqtt.MQTT_ERR_SUCCESS or sock is None or client.socket() is not sock:
                return
            if not _reset(sock):
                return
            rc = client.loop_read()

    def _watch_read(self, sock: Any) -> None:
        try:
            self._loop.add_reader(sock, self._readable)
        except RuntimeError:
            self._rewatch(sock)

    def _watch_write_of(self, sock: Any) -> None:
        try:
            self._loop.add_writer(sock, self.client.loop_write)
        except RuntimeError:
            self._rewatch(sock)

    def _rewatch(self, sock: Any) -> None:
        """Watch ``sock`` afresh after uvloop closed its poll handle (see ``_readable``).

        Removing both callbacks drops the closed handle; the new one reports the socket's error
        at once, and the reader then takes the connection to its end.
        """
        self._forget(sock)
        if not self._paused:
            self._loop.add_reader(sock, self._readable)
        if self.client.want_write():
            self._loop.add_writer(sock, self.client.loop_write)

    # ------------------------------------------------------------------------------------ paho's events

    def _own(self, event: str, handler: object) -> None:
        if getattr(self.client, event) != handler:
            raise RuntimeError(f"paho's {event} was replaced: this LoopClient cannot wait for it")

    def _on_connect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connected = not reason.is_failure
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(str(reason) if reason.is_failure else None)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connected = False
        self._fail_all(f"connection lost: {reason}")
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(f"connection lost: {reason}")

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        future = self._acks.get(mid)
        if future is None or future.done():
            return  # its publisher gave up waiting
        if reason.is_failure:
            future.set_exception(MqttError(f"broker refused the publish: {reason}"))
        else:
            future.set_result(None)

    def _fail_all(self, why: str) -> None:
        acks, self._acks = self._acks, {}
        for future in acks.values():
            if not future.done():
                future.set_exception(MqttError(why))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.client.socket() is not None and self._connecting is None:
                self.client.loop_misc()

    # Socket callbacks come from the executor while it connects: they go over to the loop.
    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            callback(*args)
        else:
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._watch, client, sock)

    def _watch(self, client: mqtt.Client, sock: Any) -> None:
        # After any close of the previous socket: both cross over from the executor in order.
        self._socket_closed.clear()
        if not self._paused and sock.fileno() >= 0:
            self._watch_read(sock)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._closed, sock)

    def _closed(self, sock: Any) -> None:
        self._forget(sock)
        self._socket_closed.set()

    def _on_register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._watch_write, client, sock)

    def _watch_write(self, client: mqtt.Client, sock: Any) -> None:
        if sock.fileno() >= 0:  # not closed while this call crossed over from the executor
            self._watch_write_of(sock)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._unwatch_write, sock)

    def _unwatch_write(self, sock: Any) -> None:
        # paho also calls this while tearing down, with a socket already closed (fd -1).
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            self._loop.remove_writer(sock)

    def _forget(self, sock: Any) -> None:
        # RuntimeError: uvloop's poll handle of the socket was closed after an error.
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            self._loop.remove_reader(sock)
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            self._loop.remove_writer(sock)


def _reset(sock: Any) -> bool:
    """True when the socket reports an error or a hang-up (the peer reset the connection)."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):
        return True


def _connect(call: Callable[[], Any]) -> Any:
    """Run paho's blocking connect (in an executor); close what a failed one leaves open."""
    try:
        return call()
    except BaseException as error:
        _close_abandoned_sockets(error)
        raise


def _close_abandoned_sockets(error: BaseException) -> None:
    """Close the sockets a failed paho connect leaves open.

    paho 2.2 does not close the socket whose TLS handshake fails (``_ssl_wrap_socket``): it would
    stay open until garbage-collected, one file descriptor per attempt at an endpoint that is
    down. The traceback still holds it (here, in the thread: asyncio replaces a TimeoutError
    crossing over from an executor by a copy without its traceback).
    """
    trace = error.__traceback__
    while trace is not None:
        frame = trace.tb_frame
        if frame.f_code.co_filename.endswith(os.path.join("paho", "mqtt", "client.py")):
            for value in frame.f_locals.values():
                if isinstance(value, socket.socket):
                    with contextlib.suppress(OSError):
                        value.close()
        trace = trace.tb_next
