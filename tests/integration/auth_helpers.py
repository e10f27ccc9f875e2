"""A broker app with authentication on, its API keys per role, and checks of refusals (issue 12)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from broker.api.keys import KEYS
from broker.app import create_app
from broker.auth.keys import KeyRing
from broker.auth.model import Role
from broker.config import Settings
from broker.errors import PROJECT_ERROR_BASE
from broker.store import create_pool, migrate
from tests.conftest import database_url

Client = TestClient[Any, Any]
ENTITIES = "/ngsi-ld/v1/entities"


@dataclass
class Secured:
    client: Client
    ring: KeyRing
    tenant: str
    keys: dict[Role, str]

    async def call(
        self, method: str, path: str, key: str | None, body: Any = None, **headers: str
    ) -> ClientResponse:
        sent = dict(headers)
        if key is not None:
            sent.setdefault("Authorization", f"Bearer {key}")
        response = await self.client.request(method, path, json=body, headers=sent)
        await response.read()
        return response


def secured_settings(settings: Settings) -> Settings:
    # No MQTT ingest: this app must not take the session's MQTT client over.
    # No rate limits: the route x role matrix sends hundreds of requests per key at once.
    return replace(settings, auth="on", db_pool_min=1, db_pool_max=6, mqtt_ingest=False, rate_limits=())


async def serve_secured(settings: Settings) -> AsyncIterator[Secured]:
    """The ``secured`` fixture (tests/integration/conftest.py): an app with NGSI_AUTH=on, a fresh
    tenant with one entity, and a key per role (the operator's of the whole instance)."""
    tenant = f"auth-{uuid.uuid4().hex[:10]}"
    pool = await create_pool(database_url(), min_size=1, max_size=2, connect_timeout=10)
    try:
        await migrate(pool)
        ring = KeyRing(pool)
        _, operator = await ring.create(None, [Role.OPERATOR], "test operator")
        keys = {Role.OPERATOR: operator}
        for role in (Role.ADMIN, Role.WRITER, Role.READER, Role.DEVICE, Role.PERSONAL):
            _, keys[role] = await ring.create(tenant, [role], f"test {role}")
        async with TestClient(TestServer(create_app(secured_settings(settings)), host="127.0.0.1")) as client:
            secured = Secured(client, client.app[KEYS], tenant, keys)
            # The tenant exists from its first write: reads of it answer 200, not NonexistentTenant.
            seed = {"id": f"urn:ngsi-ld:Thing:seed-{uuid.uuid4().hex[:6]}", "type": "Thing"}
            assert (await secured.call("POST", ENTITIES, keys[Role.WRITER], seed)).status == 201
            yield secured
    finally:
        await pool.close()


async def refused(response: ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body: dict[str, Any] = await response.json(content_type=None)
    names = {401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests"}
    assert body["type"] == PROJECT_ERROR_BASE + names[status]
    assert body["status"] == status
    return body
