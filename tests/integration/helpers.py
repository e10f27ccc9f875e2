"""Small helpers shared by the integration tests of batch, @context, tenant and error handling."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from broker.api.keys import SETTINGS
from tests.conftest import Api, link_header

BATCH = "/ngsi-ld/v1/entityOperations/"
CONTEXTS = "/ngsi-ld/v1/jsonldContexts"
CORE_V19 = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
CORE_UNVERSIONED = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def thing(entity_id: str, kind: str = "Thing", **attrs: Any) -> dict[str, Any]:
    """A normalized entity whose keyword arguments become Properties (dicts are taken as given)."""
    entity: dict[str, Any] = {"id": entity_id, "type": kind}
    for name, value in attrs.items():
        entity[name] = value if isinstance(value, dict) else {"type": "Property", "value": value}
    return entity


async def batch(
    api: Api, operation: str, body: Any, *, params: dict[str, str] | None = None, **kwargs: Any
) -> ClientResponse:
    """POST to /ngsi-ld/v1/entityOperations/{operation}."""
    return await api.request("POST", BATCH + operation, body, params=params, **kwargs)


async def body_of(response: ClientResponse) -> Any:
    return await response.json(content_type=None)


async def status_of(api: Api, entity_id: str, **kwargs: Any) -> int:
    """The HTTP status of GET /entities/{entity_id} in the api's tenant."""
    return (await api.get(entity_id, **kwargs)).status


async def assert_absent(api: Api, entity_id: str) -> None:
    """The entity is not stored (the tenant exists, so this is ResourceNotFound)."""
    response = await api.get(entity_id)
    body = await body_of(response)
    assert response.status == 404, body
    assert body["type"] == ERRORS + "ResourceNotFound", body


async def ensure_tenant(api: Api) -> str:
    """Create a throw-away entity so the api's tenant exists; returns its id."""
    entity_id = f"urn:ngsi-ld:Sentinel:{api.tenant}"
    response = await api.create(thing(entity_id, "Sentinel", marker=1))
    assert response.status == 201, await response.text()
    return entity_id


def value_of(entity: dict[str, Any], name: str) -> Any:
    """The value of a normalized single-instance Property."""
    return entity[name]["value"]


def batch_errors(body: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    """BatchOperationResult errors by entityId, each checked to be a ProblemDetails."""
    out = {}
    for entry in body["errors"]:
        problem = entry["error"]
        assert problem["type"].startswith(ERRORS), entry
        assert problem["title"], entry
        assert "detail" in problem, entry
        assert isinstance(problem["status"], int), entry
        out[entry["entityId"]] = problem
    return out


async def host_context(api: Api, terms: dict[str, Any]) -> str:
    """POST a Hosted @context; returns its URL (the relative Location under the broker's base URL)."""
    response = await api.request("POST", CONTEXTS, {"@context": terms})
    assert response.status == 201, await response.text()
    location = response.headers["Location"]
    assert location.startswith(CONTEXTS + "/"), location
    return str(api.client.app[SETTINGS].base_url + location)


def local_path(url: str) -> str:
    """The path (and query) of an absolute URL, to ask the test server for it."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_link(url: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    out = {"Link": link_header(url)}
    out.update(headers or {})
    return out


async def default_tenant_get(client: TestClient[Any, Any], entity_id: str) -> ClientResponse:
    """GET an entity with no tenant header at all (the default tenant)."""
    response = await client.get(f"/ngsi-ld/v1/entities/{entity_id}")
    await response.read()
    return response


class ContextServer:
    """A local HTTP server serving @context documents, counting the requests per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None
        # A segment of its own in every URL: remote @contexts are cached by URL across tenants (and
        # kept in the database), and an ephemeral port comes round again, so without it a later
        # server's URL could be one an earlier test cached, and never be fetched.
        self._prefix = f"/{uuid.uuid4().hex[:12]}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{self._prefix}{path}"

    async def start(self, routes: dict[str, Callable[[], web.Response]]) -> None:
        async def handle(request: web.Request) -> web.Response:
            path = request.path.removeprefix(self._prefix)
            self.hits[path] = self.hits.get(path, 0) + 1
            make = routes.get(path)
            return web.Response(status=404) if make is None else make()

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def context_server(routes: dict[str, Callable[[], web.Response]]) -> AsyncIterator[ContextServer]:
    server = ContextServer()
    await server.start(routes)
    try:
        yield server
    finally:
        await server.stop()
