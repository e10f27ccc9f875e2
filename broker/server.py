"""Serving the application over HTTP: one runner, a site per port, an idle timeout, a connection cap.

The NGSI-LD port and the IoT Agent ports (NGSI_IOTA_PORTS) are sites of one runner, so they share
both limits. A connection that has not sent a complete request header within
NGSI_HTTP_IDLE_TIMEOUT seconds (of opening, or of its last response) is closed: aiohttp's
keep-alive timer also runs from the moment a connection opens, which is what stops a client
from holding a socket by sending its header a byte at a time. Beyond NGSI_HTTP_MAX_CONNECTIONS
open connections in the process, a new one is answered 503 with Retry-After and closed at once,
and the connections already served go on as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import orjson
from aiohttp import web

from broker.config import Settings
from broker.errors import ServerBusy

log = logging.getLogger(__name__)


def _busy_response() -> bytes:
    error = ServerBusy("this broker process has as many connections open as it serves; retry later")
    body = orjson.dumps(error.problem())
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in error.headers().items())
        + "Connection: close\r\n\r\n"
    )
    return head.encode() + body


_BUSY = _busy_response()


class _Refusal(asyncio.Protocol):
    """A connection beyond the cap: told 503 and closed, its request never read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not an isinstance check: uvloop's TCPTransport (the loop the broker
        # serves on) does not derive from asyncio.WriteTransport.
        cast(asyncio.WriteTransport, transport).write(_BUSY)
        transport.close()


class ConnectionCap:
    """The sites' protocol factory: aiohttp's handler while fewer than ``limit`` are open, else a refusal."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self._limit = limit
        self._full = False
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        if len(self._server.connections) < self._limit:
            if self._full:
                log.warning("HTTP connections below the cap again; %d were refused", self.refused)
                self._full = False
            return self._server()
        if not self._full:
            log.warning(
                "%d HTTP connections open (NGSI_HTTP_MAX_CONNECTIONS): refusing new ones", self._limit
            )
            self._full = True
        self.refused += 1
        return _Refusal()


class CappedSite(web.TCPSite):
    """A TCP site whose connections go through a ConnectionCap."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, cap: ConnectionCap, *, reuse_port: bool
    ) -> None:
        super().__init__(runner, host, port, reuse_port=reuse_port)
        self._cap = cap

    async def start(self) -> None:
        # As TCPSite.start, with the cap as the protocol factory instead of the server itself.
        await web.BaseSite.start(self)
        self._server = await asyncio.get_running_loop().create_server(
            self._cap, self._host, self._port, backlog=self._backlog, reuse_port=self._reuse_port
        )


def runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The runner of ``app`` with the idle timeout (header and keep-alive) of ``settings``."""
    return web.AppRunner(
        app, access_log=None, handle_signals=False, keepalive_timeout=settings.http_idle_timeout
    )


async def start_sites(app_runner: web.AppRunner, settings: Settings, *, reuse_port: bool) -> list[CappedSite]:
    """Listen on the API port and the IoT Agent ports, all behind one connection cap."""
    assert app_runner.server is not None, "call setup() first"
    cap = ConnectionCap(app_runner.server, settings.http_max_connections)
    sites = []
    for port in (settings.port, *settings.iota_ports):
        site = CappedSite(app_runner, settings.host, port, cap, reuse_port=reuse_port)
        await site.start()
        sites.append(site)
    return sites
