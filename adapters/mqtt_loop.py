"""paho-mqtt driven by the asyncio loop: one way to open, run and close a client on the loop.

paho's socket is watched with add_reader / add_writer and a once-a-second task runs its
keepalive, so every callback runs on the loop, next to the code it feeds; no network thread.
Used by the ingest client (adapters/mqtt.py) and the simulators' publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

KEEPALIVE = 30


@dataclass(frozen=True, slots=True)
class Broker:
    """Where an mqtt:// or mqtts:// URL points."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL {url!r} must start with mqtt:// or mqtts://")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password or "") if parts.username else None,
            tls=parts.scheme == "mqtts",
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


class LoopClient:
    """A paho client whose socket the running asyncio loop drives."""

    def __init__(self, broker: Broker, client_id: str, **options: Any) -> None:
        self.broker = broker
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, **options
        )
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set()
        self._loop = asyncio.get_running_loop()
        self._misc: asyncio.Task[None] | None = None
        self._configured = False
        self._paused = False
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_register_write
        self.client.on_socket_unregister_write = self._on_unregister_write

    async def connect(self, probe_seconds: float = 5.0) -> None:
        """Open the connection (the CONNACK arrives later, in on_connect); raises OSError/TimeoutError.

        paho connects with a blocking socket call: the port is probed first without blocking, so
        an absent MQTT broker costs the loop nothing.
        """
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(self.broker.host, self.broker.port), probe_seconds
        )
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        if self._configured:
            self.client.reconnect()
        else:
            self._configured = True
            self.client.connect(self.broker.host, self.broker.port, keepalive=KEEPALIVE)
        if self._misc is None:
            self._misc = self._loop.create_task(self._keepalive())

    async def close(self) -> None:
        """Disconnect, let paho see the socket close, and stop watching it."""
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
            self._misc = None
        if self.client.socket() is not None:
            self.client.disconnect()
            # The MQTT broker closes the connection on DISCONNECT; paho notices on its next read.
            for _ in range(50):
                if self.client.socket() is None:
                    break
                await asyncio.sleep(0.02)
        sock = self.client.socket()
        if sock is not None:
            self._forget(sock)
            with contextlib.suppress(OSError):
                sock.close()

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
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock)

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        sock = self.client.socket()
        if sock is not None:
            self._loop.add_reader(sock, self.client.loop_read)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.client.socket() is not None:
                self.client.loop_misc()

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        if not self._paused:
            self._loop.add_reader(sock, client.loop_read)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._forget(sock)

    def _on_register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        # paho also calls this while tearing down, with a socket already closed (fd -1).
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)

    def _forget(self, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)
