"""A database outage answers 503 DatabaseUnavailable with Retry-After, logs one line, stores nothing.

A second broker app reaches the test PostgreSQL through a TCP proxy on loopback that the test
cuts (every connection closed, new ones dropped) and restores, as a PostgreSQL restart or a
network cut would look to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.config import Settings
from tests.conftest import database_url, eventually, new_id, problem

ENTITIES = "/ngsi-ld/v1/entities"


class CuttableProxy:
    """Forwards loopback TCP connections to PostgreSQL until cut; while cut, drops every connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.is_cut = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.is_cut = True
        for writer in list(self._open):
            writer.close()

    def restore(self) -> None:
        self.is_cut = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            client_writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._open |= {client_writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer)
            )
        finally:
            for writer in (client_writer, upstream_writer):
                self._open.discard(writer)
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[CuttableProxy]:
    parts = urlsplit(database_url())
    running = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def behind_proxy(settings: Settings, proxy: CuttableProxy) -> AsyncIterator[TestClient[Any, Any]]:
    """A second broker app whose database connections all go through ``proxy``."""
    parts = urlsplit(database_url())
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    url = urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
    app = create_app(settings.replace(database_url=url, mqtt_ingest=False))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def send(
    client: TestClient[Any, Any], tenant: str, method: str, path: str, body: Any = None
) -> ClientResponse:
    headers = {"NGSILD-Tenant": tenant, "Content-Type": "application/json"}
    response = await client.request(
        method, path, data=None if body is None else orjson.dumps(body), headers=headers
    )
    await response.read()
    return response


async def test_requests_during_an_outage_answer_503_with_retry_after_log_once_and_store_nothing(
    behind_proxy: TestClient[Any, Any], proxy: CuttableProxy, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    kept = new_id()
    created = await send(behind_proxy, tenant, "POST", ENTITIES, {"id": kept, "type": "T", "level": 1})
    assert created.status == 201, await created.text()

    proxy.cut()
    lost = [new_id() for _ in range(6)]
    with caplog.at_level(logging.INFO):
        during = [await send(behind_proxy, tenant, "POST", ENTITIES, {"id": i, "type": "T"}) for i in lost]
        during.append(await send(behind_proxy, tenant, "PATCH", f"{ENTITIES}/{kept}/attrs", {"level": 2}))
        during.append(await send(behind_proxy, tenant, "GET", f"{ENTITIES}/{kept}"))
        batch = [{"id": new_id(), "type": "T"} for _ in range(3)]
        during.append(await send(behind_proxy, tenant, "POST", "/ngsi-ld/v1/entityOperations/upsert", batch))

    for response in during:
        body = await problem(response, 503, "InternalError")
        assert body["title"] == "The database is unavailable; retry later"
        assert response.headers["Retry-After"] == "5"
    said = [r for r in caplog.records if r.name == "broker.errors"]
    assert [r.levelno for r in said] == [logging.ERROR], [r.getMessage() for r in said]
    assert said[0].getMessage().startswith("database unavailable")
    assert not [r for r in caplog.records if r.getMessage().startswith("unhandled error")]

    proxy.restore()

    async def kept_is_readable() -> bool:
        return (await send(behind_proxy, tenant, "GET", f"{ENTITIES}/{kept}")).status == 200

    assert await eventually(kept_is_readable, what="the database reachable again through the proxy")
    read = await send(behind_proxy, tenant, "GET", f"{ENTITIES}/{kept}")
    assert (await read.json())["level"]["value"] == 1
    for entity_id in lost + [item["id"] for item in batch]:
        await problem(
            await send(behind_proxy, tenant, "GET", f"{ENTITIES}/{entity_id}"), 404, "ResourceNotFound"
        )
