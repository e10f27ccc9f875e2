"""The HTTP server as python -m broker runs it: slow headers and idle sockets are closed, a cap holds.

The runner and sites come from broker/server.py (what broker/__main__.py starts), on loopback,
with a short idle timeout and a small connection cap, and the IoT Agent port beside the API port.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from broker import server
from broker.app import create_app
from broker.config import Settings
from tests.conftest import eventually

# How long a test waits for the server to close a socket: far above the 1 s idle timeout (a loaded
# machine is slow), far below aiohttp's default of an hour.
CLOSE_WITHIN = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    port: int
    iota_port: int
    cap: int


@asynccontextmanager
async def serving(settings: Settings, *, idle: float, cap: int) -> AsyncIterator[Served]:
    port, iota_port = free_port(), free_port()
    limited = settings.replace(
        port=port,
        iota_ports=(iota_port,),
        http_idle_timeout=idle,
        http_max_connections=cap,
        mqtt_ingest=False,
    )
    app_runner = server.runner(create_app(limited), limited)
    await app_runner.setup()
    try:
        await server.start_sites(app_runner, limited, reuse_port=False)
        yield Served(port, iota_port, cap)
    finally:
        await app_runner.cleanup()


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    """A short idle timeout (1 s), no cap to speak of."""
    async with serving(settings, idle=1.0, cap=1000) as running:
        yield running


@pytest.fixture
async def capped(settings: Settings) -> AsyncIterator[Served]:
    """A cap of 3 connections; an idle timeout long enough that none closes while the test runs."""
    async with serving(settings, idle=120.0, cap=3) as running:
        yield running


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded by CLOSE_WITHIN)."""
    return await asyncio.wait_for(reader.read(), CLOSE_WITHIN)


async def health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """One keep-alive GET /health on an open connection; the status line."""
    writer.write(b"GET /health HTTP/1.1\r\nHost: broker\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), CLOSE_WITHIN)
    headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_WITHIN)
    length = next(
        int(line.split(b":")[1])
        for line in headers.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await asyncio.wait_for(reader.readexactly(length), CLOSE_WITHIN)
    return status


@pytest.mark.parametrize("which", ["api", "iota"])
async def test_a_connection_sending_half_a_header_is_closed_by_the_server(served: Served, which: str) -> None:
    reader, writer = await connect(served.port if which == "api" else served.iota_port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: broker\r\nX-Slow: ")
    await writer.drain()
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_its_response(served: Served) -> None:
    reader, writer = await connect(served.port)
    assert await health(reader, writer) == b"HTTP/1.1 200 OK\r\n"
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_connections_beyond_the_cap_get_503_and_the_served_ones_go_on(capped: Served) -> None:
    # Served on both ports: the cap counts the process's connections, whatever port they came to.
    open_ones = [await connect(capped.port), await connect(capped.iota_port), await connect(capped.port)]
    for reader, writer in open_ones:
        assert await health(reader, writer) == b"HTTP/1.1 200 OK\r\n"

    reader, writer = await connect(capped.port)
    refused = await closed_by_server(reader)
    writer.close()
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 1\r\n" in refused
    assert b'"type":"https://uri.etsi.org/ngsi-ld/errors/InternalError"' in refused

    for reader, writer in open_ones:
        assert await health(reader, writer) == b"HTTP/1.1 200 OK\r\n"
    reader, writer = open_ones.pop()
    writer.close()

    async def served_again() -> bool:
        fresh_reader, fresh_writer = await connect(capped.port)
        try:
            return await health(fresh_reader, fresh_writer) == b"HTTP/1.1 200 OK\r\n"
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        finally:
            fresh_writer.close()

    # Once one closes, a new connection is served (the server forgets the closed one asynchronously).
    assert await eventually(served_again, what="a connection served after one of the cap closed")
    for _, open_writer in open_ones:
        open_writer.close()
