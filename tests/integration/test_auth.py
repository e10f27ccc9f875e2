"""Authentication and roles on the real HTTP server and PostgreSQL (issue 12, items 1, 2 and 6).

An app of its own with NGSI_AUTH=on: API keys made through the key ring and the admin API,
presented as ``Authorization: Bearer`` or ``X-Auth-Token``; every route refused to anonymous
callers and to roles without its permission (the whole route x role matrix), tenant keys held to
their tenant, revocation and expiry, and a refused request changing nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.auth.keys import KeyRing
from broker.auth.model import ROLE_PERMISSIONS, NoOperatorKey, Permission, Role
from broker.auth.routes import PERMISSIONS
from broker.config import Settings
from broker.store import apikeys, create_pool
from tests.clock import ManualClock
from tests.conftest import database_url
from tests.integration.auth_helpers import ENTITIES, Secured, refused, secured_settings


def thing(entity_id: str) -> dict[str, Any]:
    return {"id": entity_id, "type": "Thing", "n": {"type": "Property", "value": 1}}


async def test_anonymous_callers_get_401_and_health_stays_open(secured: Secured) -> None:
    response = await secured.call("GET", ENTITIES + "?type=Thing", None)
    await refused(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await secured.call("GET", "/health", None)).status == 200
    assert (await secured.call("GET", "/ready", None)).status == 200
    for bad in ("nonsense", "ngsk_0123456789abcdef_wrong-secret", "Basic dXNlcjpwYXNz"):
        await refused(await secured.call("GET", ENTITIES + "?type=Thing", None, Authorization=bad), 401)


async def test_a_tenant_key_acts_in_its_tenant_and_nowhere_else(secured: Secured) -> None:
    writer = secured.keys[Role.WRITER]
    entity_id = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}"
    # No tenant header: the key's tenant.
    assert (await secured.call("POST", ENTITIES, writer, thing(entity_id))).status == 201
    found = await secured.call("GET", f"{ENTITIES}/{entity_id}", writer, **{"NGSILD-Tenant": secured.tenant})
    assert found.status == 200
    # The same through the FIWARE PEP proxy's header.
    found = await secured.call("GET", f"{ENTITIES}/{entity_id}", None, **{"X-Auth-Token": writer})
    assert found.status == 200
    other = {"NGSILD-Tenant": f"{secured.tenant}-other"}
    await refused(await secured.call("GET", f"{ENTITIES}/{entity_id}", writer, **other), 403)
    await refused(await secured.call("POST", ENTITIES, writer, thing(entity_id + "x"), **other), 403)
    # The operator reaches every tenant.
    operator = secured.keys[Role.OPERATOR]
    as_operator = await secured.call(
        "GET", f"{ENTITIES}/{entity_id}", operator, **{"NGSILD-Tenant": secured.tenant}
    )
    assert as_operator.status == 200


async def test_a_refused_write_changes_nothing(secured: Secured) -> None:
    entity_id = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}"
    writer, reader = secured.keys[Role.WRITER], secured.keys[Role.READER]
    await refused(await secured.call("POST", ENTITIES, reader, thing(entity_id)), 403)
    await refused(await secured.call("POST", ENTITIES, None, thing(entity_id)), 401)
    await refused(await secured.call("POST", ENTITIES, secured.keys[Role.DEVICE], thing(entity_id)), 403)
    assert (await secured.call("GET", f"{ENTITIES}/{entity_id}", writer)).status == 404
    assert (await secured.call("POST", ENTITIES, writer, thing(entity_id))).status == 201
    patch = {"n": {"type": "Property", "value": 2}}
    await refused(await secured.call("PATCH", f"{ENTITIES}/{entity_id}/attrs", reader, patch), 403)
    await refused(await secured.call("DELETE", f"{ENTITIES}/{entity_id}", reader), 403)
    entity = await (await secured.call("GET", f"{ENTITIES}/{entity_id}", reader)).json()
    assert entity["n"]["value"] == 1


async def test_admins_make_keys_of_their_tenant_only_and_operators_any(secured: Secured) -> None:
    admin, operator = secured.keys[Role.ADMIN], secured.keys[Role.OPERATOR]
    made = await secured.call("POST", "/admin/keys", admin, {"roles": ["reader"], "label": "dashboard"})
    assert made.status == 201, await made.text()
    body = await made.json()
    assert body["tenant"] == secured.tenant
    assert body["roles"] == ["reader"]
    assert body["key"].startswith("ngsk_")
    assert made.headers["Location"] == f"/admin/keys/{body['id']}"
    # The new key works at once, for reading only.
    assert (await secured.call("GET", ENTITIES + "?type=Thing", body["key"])).status == 200
    await refused(await secured.call("POST", "/admin/keys", body["key"], {"roles": ["reader"]}), 403)
    # An admin cannot make operator keys, nor keys of another tenant.
    await refused(await secured.call("POST", "/admin/keys", admin, {"roles": ["operator"]}), 403)
    elsewhere = {"roles": ["writer"], "tenant": f"{secured.tenant}-other"}
    await refused(await secured.call("POST", "/admin/keys", admin, elsewhere), 403)
    # Listing: the admin sees its tenant's keys, never a secret or a hash.
    listed = await (await secured.call("GET", "/admin/keys", admin)).json()
    assert {k["tenant"] for k in listed} == {secured.tenant}
    assert body["id"] in {k["id"] for k in listed}
    assert not any("key" in k or "hash" in k for k in listed)
    # The operator makes a key of another tenant, and sees it; the admin does not.
    other = await secured.call("POST", "/admin/keys", operator, elsewhere)
    assert other.status == 201, await other.text()
    other_id = (await other.json())["id"]
    assert (await secured.call("GET", f"/admin/keys/{other_id}", admin)).status == 404
    assert (await secured.call("GET", f"/admin/keys/{other_id}", operator)).status == 200


async def test_bad_key_requests_answer_400_and_make_nothing(secured: Secured) -> None:
    admin = secured.keys[Role.ADMIN]
    before = len(await (await secured.call("GET", "/admin/keys", admin)).json())
    bodies: list[Any] = [
        {"roles": []},
        {"roles": ["superuser"]},
        {"roles": "writer"},
        {"roles": ["writer"], "expires": "soon"},
        {"roles": ["writer"], "expires": "-P1D"},
        {"roles": ["operator", "reader"]},
        [],
    ]
    for body in bodies:
        response = await secured.call("POST", "/admin/keys", admin, body)
        assert response.status == 400, (body, await response.text())
    assert len(await (await secured.call("GET", "/admin/keys", admin)).json()) == before


async def test_a_revoked_or_expired_key_is_refused_and_use_is_recorded(secured: Secured) -> None:
    admin = secured.keys[Role.ADMIN]
    made = await (await secured.call("POST", "/admin/keys", admin, {"roles": ["reader"]})).json()
    assert (await secured.call("GET", ENTITIES + "?type=Thing", made["key"])).status == 200
    shown = await (await secured.call("GET", f"/admin/keys/{made['id']}", admin)).json()
    assert shown["lastUsedAt"] is not None
    assert (await secured.call("DELETE", f"/admin/keys/{made['id']}", admin)).status == 204
    await refused(await secured.call("GET", ENTITIES + "?type=Thing", made["key"]), 401)
    shown = await (await secured.call("GET", f"/admin/keys/{made['id']}", admin)).json()
    assert shown["revokedAt"] is not None

    past = secured.ring.clock.now() - timedelta(seconds=1)
    _, expired = await secured.ring.create(secured.tenant, [Role.READER], "old", past)
    await refused(await secured.call("GET", ENTITIES + "?type=Thing", expired), 401)


async def test_device_webhooks_need_a_device_key_and_iot_agent_bindings_their_apikey(
    secured: Secured,
) -> None:
    uplink = {"end_device_ids": {"device_id": "x"}}
    await refused(await secured.call("POST", "/adapters/tts", None, uplink), 401)
    await refused(await secured.call("POST", "/adapters/tts", secured.keys[Role.READER], uplink), 403)
    passed = await secured.call("POST", "/adapters/tts", secured.keys[Role.DEVICE], uplink)
    assert passed.status not in (401, 403), await passed.text()
    # The IoT Agent binding carries its group's apikey: the device pipeline checks it, not a key.
    unknown = await secured.call("POST", f"/iot/json?k=nokey-{uuid.uuid4().hex[:6]}&i=d1", None, {"n": 1})
    assert unknown.status not in (401, 403), await unknown.text()


IDENTITIES: list[Role | None] = [None, *Role]


def _sample(path: str) -> str:
    """A concrete path for a route pattern (placeholders filled with ids that do not exist)."""
    fills = {
        "{entity_id}": "urn:ngsi-ld:Thing:matrix",
        "{attr}": "n",
        "{instance_id}": "urn:ngsi-ld:instance:matrix",
        "{subscription_id}": "urn:ngsi-ld:Subscription:matrix",
        "{registration_id}": "urn:ngsi-ld:ContextSourceRegistration:matrix",
        "{context_id}": "matrix",
        "{type}": "Thing",
        "{entity_type}": "Thing",
        "{letter_id}": "1",
        "{device_id}": "matrix",
        "{key_id}": "0000000000000000",
        "{grant_id}": "grant-0000000000000000",
        "{tail}": "x",
    }
    for placeholder, value in fills.items():
        path = path.replace(placeholder, value)
    return path


async def test_every_route_refuses_anonymous_callers_and_roles_without_its_permission(
    secured: Secured,
) -> None:
    """The route x role matrix: every route of the table, every role and no key at all."""
    checked = 0
    for path, methods in PERMISSIONS.items():
        for method, needed in methods.items():
            verb = "GET" if method == "*" else method
            for role in IDENTITIES:
                key = None if role is None else secured.keys[role]
                allowed = needed in (Permission.PUBLIC, Permission.APIKEY) or (
                    role is not None and needed in ROLE_PERMISSIONS[role]
                )
                if allowed and verb not in ("GET", "HEAD"):
                    continue  # the rest of the suite exercises what allowed writes do
                response = await secured.call(verb, _sample(path), key, **{"NGSILD-Tenant": secured.tenant})
                if allowed:
                    assert response.status not in (401, 403), (verb, path, role, await response.text())
                else:
                    await refused(response, 401 if role is None else 403)
                checked += 1
    assert checked > 300


async def test_with_auth_on_the_broker_does_not_start_without_an_operator_key(settings: Settings) -> None:
    conn = await asyncpg.connect(database_url())
    try:
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE tenant IS NULL AND revoked_at IS NULL"
        )
    finally:
        await conn.close()
    server = TestServer(create_app(secured_settings(settings)), host="127.0.0.1")
    with pytest.raises(NoOperatorKey, match="no operator key exists"):
        await server.start_server()
    await server.close()


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_then_its_turn(settings: Settings) -> None:
    clock = ManualClock()
    limited = replace(secured_settings(settings), rate_limits=(("anonymous", 1.0), ("reader", 1.0)))
    pool = await create_pool(database_url(), min_size=1, max_size=2, connect_timeout=10)
    try:
        ring = KeyRing(pool)
        await ring.create(None, [Role.OPERATOR], "rate test operator")
        _, reader = await ring.create(f"rate-{uuid.uuid4().hex[:8]}", [Role.READER], "rate test")
        async with TestClient(TestServer(create_app(limited, clock=clock), host="127.0.0.1")) as client:
            headers = {"Authorization": f"Bearer {reader}"}
            statuses = [(await client.get("/ngsi-ld/v1/types", headers=headers)).status for _ in range(2)]
            assert 429 not in statuses  # two seconds' worth at once
            response = await client.get("/ngsi-ld/v1/types", headers=headers)
            await refused(response, 429)
            assert response.headers["Retry-After"] == "1"
            # Anonymous callers (and wrong keys) are held to the anonymous rate per address.
            anonymous = [(await client.get("/ngsi-ld/v1/types")).status for _ in range(3)]
            assert anonymous == [401, 401, 429]
            await clock.advance(1.0)
            assert (await client.get("/ngsi-ld/v1/types", headers=headers)).status != 429
    finally:
        await pool.close()


async def test_requests_finding_a_key_stale_together_share_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = await create_pool(database_url(), min_size=1, max_size=4, connect_timeout=10)
    try:
        clock = ManualClock()
        ring = KeyRing(pool, ttl=5.0, clock=clock)
        _, token = await ring.create(f"shared-{uuid.uuid4().hex[:8]}", [Role.READER], "shared read")
        reads = 0
        by_id = apikeys.by_id

        async def counted(db: Any, key_id: str) -> Any:
            nonlocal reads
            reads += 1
            return await by_id(db, key_id)

        monkeypatch.setattr(apikeys, "by_id", counted)
        identities = await asyncio.gather(*(ring.identify(token) for _ in range(64)))
        assert all(i is not None and i.roles == {Role.READER} for i in identities)
        assert reads == 1
        await clock.advance(5.0)  # stale: the next burst reads once more
        await asyncio.gather(*(ring.identify(token) for _ in range(64)))
        assert reads == 2
    finally:
        await pool.close()
