"""Shared fixtures: the broker app on a real PostgreSQL+PostGIS, one fresh tenant per test.

The database comes from TEST_DATABASE_URL, else DATABASE_URL, else the local
default that deploy/test.sh provisions. Tests isolate themselves by tenant
(a key column), so they need no cleanup and can run against a shared database.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from paho.mqtt.enums import CallbackAPIVersion

from broker.app import create_app
from broker.config import Settings, load
from tests.tasks import TaskWatch

FIXTURES = Path(__file__).parent / "fixtures"
DEFAULT_TEST_DB = "postgresql://ngsi:ngsi@127.0.0.1:5432/ngsi_test"
MQTT_CLIENT_ID = f"ngsi-test-{uuid.uuid4().hex[:12]}"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
# How long eventually() waits by default: generous, since the machine is 2 cores and often loaded;
# a passing check returns at once, so only a failing test pays for it.
EVENTUALLY_SECONDS = 30.0

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float = ..., interval: float = ..., what: str = ...
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T], *, within: float = ..., interval: float = ..., what: str = ...
) -> T: ...


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    within: float = EVENTUALLY_SECONDS,
    interval: float = 0.02,
    what: str = "",
) -> T:
    """Call ``check`` until it returns a truthy value (returned) without raising AssertionError.

    The one way tests wait for something asynchronous to happen: never "sleep, then assert".
    ``check`` may be a plain or an async function. After ``within`` seconds the test fails with
    ``what``, the last value and the last assertion error.
    """
    deadline = time.monotonic() + within
    last: object = None
    error: AssertionError | None = None
    while True:
        try:
            outcome = check()
            value: T = await outcome if inspect.isawaitable(outcome) else outcome
        except AssertionError as exc:
            error, last = exc, None
        else:
            if value:
                return value
            error, last = None, value
        if time.monotonic() >= deadline:
            detail = f"{what or 'condition'} not met within {within:g} s (last value: {last!r})"
            raise AssertionError(detail) from error
        await asyncio.sleep(interval)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loop the tests run on: asyncio's, or uvloop's with NGSI_TEST_LOOP=uvloop.

    deploy/test.sh runs the integration tests once more on uvloop (the loop the broker serves on),
    as asyncpg's own test target does, and once with PYTHONASYNCIODEBUG=1.
    """
    if os.environ.get("NGSI_TEST_LOOP", "asyncio") == "uvloop":
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(autouse=True)
async def no_tasks_left_behind() -> AsyncIterator[None]:
    """Fail a test that leaves tasks it started still running after it (and its fixtures) ended.

    A left-over task keeps working into the next test: that is how "passes alone, fails in the
    suite" starts. The broker's own background tasks do not count (tests/tasks.py says which do).
    """
    watch = TaskWatch(asyncio.get_running_loop())
    watch.install()
    try:
        yield
    finally:
        watch.uninstall()
    left = await watch.left_running()
    for task in left:
        task.cancel()
    if left:
        names = "; ".join(f"{task.get_name()} {task.get_coro()!r}" for task in left)
        pytest.fail(f"the test left tasks running: {names}", pytrace=False)


def database_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_TEST_DB


def fixture_json(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def link_header(url: str) -> str:
    return f'<{url}>; rel="{CONTEXT_REL}"; type="application/ld+json"'


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load(
        {
            "DATABASE_URL": database_url(),
            # The app's MQTT broker is the one the tests publish to (each helper has its own).
            "MQTT_URL": os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"),
            "NGSI_MAX_BATCH": "200",
            "NGSI_MAX_BODY_BYTES": "262144",
            # Tests serve @contexts from a local server on 127.0.0.1.
            "NGSI_CONTEXT_ALLOW_PRIVATE": "true",
            # Tests' notification receivers listen on 127.0.0.1 (the SSRF tests build their own
            # app with the default, off, and a stub resolver).
            "NGSI_NOTIFY_ALLOW_PRIVATE": "true",
            # A session of its own (not shared with a broker running on this machine), forgotten at the end.
            "NGSI_MQTT_CLIENT_ID": MQTT_CLIENT_ID,
            "NGSI_MQTT_SHARE_GROUP": "",
        }
    )


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The broker app served on a loopback port, shared by the session."""
    server = TestServer(create_app(settings), host="127.0.0.1")
    async with TestClient(server) as test_client:
        yield test_client
    await asyncio.to_thread(forget_mqtt_session, settings.mqtt_url, MQTT_CLIENT_ID)


def forget_mqtt_session(url: str, client_id: str) -> None:
    """End a persistent MQTT session, so Mosquitto stops queueing messages for a finished test run."""
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop(timeout=1.0)
    client.disconnect()


class Api:
    """A client bound to one tenant, with short helpers for the NGSI-LD calls tests make."""

    def __init__(self, client: TestClient[Any, Any], tenant: str) -> None:
        self.client = client
        self.tenant = tenant

    def _headers(self, headers: dict[str, str] | None, content_type: str | None) -> dict[str, str]:
        out = {"NGSILD-Tenant": self.tenant}
        if content_type:
            out["Content-Type"] = content_type
        out.update(headers or {})
        return out

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> ClientResponse:
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        response = await self.client.request(
            method,
            path,
            data=data,
            headers=self._headers(headers, content_type if data is not None else None),
            params=params,
        )
        await response.read()
        return response

    async def create(self, entity: dict[str, Any], **kwargs: Any) -> ClientResponse:
        content_type = "application/ld+json" if "@context" in entity else "application/json"
        kwargs.setdefault("content_type", content_type)
        return await self.request("POST", "/ngsi-ld/v1/entities", entity, **kwargs)

    async def get(self, entity_id: str, **kwargs: Any) -> ClientResponse:
        return await self.request("GET", f"/ngsi-ld/v1/entities/{entity_id}", **kwargs)

    async def get_json(self, entity_id: str, **kwargs: Any) -> Any:
        response = await self.get(entity_id, **kwargs)
        assert response.status == 200, await response.text()
        return await response.json(content_type=None)


async def problem(response: ClientResponse, status: int, error_type: str) -> dict[str, Any]:
    """Assert ``response`` is ProblemDetails of ``error_type`` with ``status``; return the body."""
    body = await response.json(content_type=None)
    assert response.status == status, body
    assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{error_type}", body
    assert body["title"]
    assert body["detail"]
    return body  # type: ignore[no-any-return]


@pytest.fixture
def tenant() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def api(client: TestClient[Any, Any], tenant: str) -> Api:
    return Api(client, tenant)


def new_id(kind: str = "Thing") -> str:
    return f"urn:ngsi-ld:{kind}:{uuid.uuid4().hex[:10]}"
