"""Which database errors mean "PostgreSQL is away right now" (503, retried) and which are the data's."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.errors import error_middleware
from broker.store.faults import is_transient

# What asyncpg raised on a pooled connection the server had just terminated (a PostgreSQL restart).
LOST_TRACK = "cannot switch to state 12; another operation (2) is in progress"


def test_a_connection_asyncpg_lost_track_of_in_a_restart_is_transient() -> None:
    assert is_transient(asyncpg.InternalClientError(LOST_TRACK))
    assert is_transient(asyncpg.AdminShutdownError("terminating connection due to administrator command"))
    assert is_transient(ConnectionRefusedError(111, "Connection refused"))


def test_an_error_of_the_data_or_the_sql_is_not_transient() -> None:
    assert not is_transient(asyncpg.UniqueViolationError("duplicate key"))
    assert not is_transient(asyncpg.UndefinedColumnError("no such column"))
    assert not is_transient(ValueError("a bug"))


async def test_a_request_meeting_that_error_answers_503_with_retry_after_not_500() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise asyncpg.InternalClientError(LOST_TRACK)

    app = web.Application(middlewares=[error_middleware()])
    app.router.add_patch("/x", handler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.patch("/x")
        body = await response.json(content_type=None)
    assert response.status == 503, body
    assert response.headers["Retry-After"]
    assert body["status"] == 503
    assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
