"""OpenID Connect bearer tokens on the real HTTP server and PostgreSQL (issue 12, item 1b).

An identity provider of the test's own: RSA and EC P-256 key pairs made here with
``cryptography``, their public halves served as a JWKS by a local aiohttp server on 127.0.0.1,
tokens signed with PyJWT. The broker runs with NGSI_AUTH=on and a hand-driven clock, so token
times and the JWKS refresh are exact. Valid RS256 and ES256 tokens read and write as their roles
allow, in their tenants; expired, not yet valid, wrong audience or issuer, unknown key, alg
none, HS256 signed with the public key, tampered and role-less tokens are refused, and a
refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from broker.api.keys import KEYS, TOKENS
from broker.app import create_app
from broker.auth.model import Identity, Role
from broker.auth.oidc import REFETCH_SECONDS, FileJwks, OidcConfig, TokenVerifier, UrlJwks, parse_jwks
from broker.config import Settings
from broker.errors import PROJECT_ERROR_BASE
from tests.clock import ManualClock
from tests.conftest import database_url

Client = TestClient[Any, Any]
ENTITIES = "/ngsi-ld/v1/entities"
ISSUER = "https://idp.example.org/realms/kagawa"
AUDIENCE = "city-data-hub"
REFRESH = 300.0

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_ROTATED = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
PRIVATE: dict[str, Any] = {"rsa-1": RSA_KEY, "rsa-2": RSA_ROTATED, "ec-1": EC_KEY}


def public_jwk(kid: str) -> dict[str, Any]:
    key = PRIVATE[kid]
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        alg = "RS256"
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        alg = "ES256"
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Provider:
    """The test's identity provider: what its JWKS endpoint serves, and how often it was asked."""

    clock: ManualClock
    served: list[str] = field(default_factory=lambda: ["rsa-1", "ec-1"])
    hits: int = 0
    url: str = ""

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(kid) for kid in self.served]}

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(self.clock.now().timestamp())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"user-{uuid.uuid4().hex[:6]}",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, kid: str = "rsa-1", **changes: Any) -> str:
        alg = "ES256" if kid.startswith("ec") else "RS256"
        return jwt.encode(self.claims(**changes), PRIVATE[kid], algorithm=alg, headers={"kid": kid})


async def jwks_server(provider: Provider) -> TestServer:
    async def certs(request: web.Request) -> web.Response:
        provider.hits += 1
        return web.json_response(provider.jwks())

    app = web.Application()
    app.router.add_get("/realms/kagawa/protocol/openid-connect/certs", certs)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    provider.url = str(server.make_url("/realms/kagawa/protocol/openid-connect/certs"))
    return server


@dataclass
class Hub:
    client: Client
    provider: Provider
    clock: ManualClock
    tenant: str

    def token(self, *roles: str, tenant: Any = "", kid: str = "rsa-1", **changes: Any) -> str:
        """A token of ``roles`` in ``tenant`` ("" for the hub's tenant, None for no tenant claim)."""
        named = self.tenant if tenant == "" else tenant
        return self.provider.token(kid, roles=list(roles), tenant=named, **changes)

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None, **headers: str
    ) -> ClientResponse:
        sent = dict(headers)
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        response = await self.client.request(method, path, json=body, headers=sent)
        await response.read()
        return response


def oidc_settings(settings: Settings, jwks_url: str) -> Settings:
    # No MQTT ingest: this app must not take the session's MQTT client over. No rate limits: the
    # tests send dozens of bad tokens at once, which the anonymous rate would answer 429.
    return replace(
        settings,
        auth="on",
        db_pool_min=1,
        db_pool_max=6,
        mqtt_ingest=False,
        rate_limits=(),
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=jwks_url,
        oidc_jwks_refresh=REFRESH,
    )


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    provider = Provider(ManualClock())
    server = await jwks_server(provider)
    try:
        yield provider
    finally:
        await server.close()


@pytest.fixture
async def hub(settings: Settings, provider: Provider) -> AsyncIterator[Hub]:
    app = create_app(oidc_settings(settings, provider.url), clock=provider.clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        hub = Hub(client, provider, provider.clock, f"oidc-{uuid.uuid4().hex[:10]}")
        # The tenant exists from its first write: reads of it answer 200, not NonexistentTenant.
        seed = thing(f"urn:ngsi-ld:Thing:seed-{uuid.uuid4().hex[:6]}")
        assert (await hub.call("POST", ENTITIES, hub.token("writer"), seed)).status == 201
        yield hub


def thing(entity_id: str, n: int = 1) -> dict[str, Any]:
    return {"id": entity_id, "type": "Thing", "n": {"type": "Property", "value": n}}


async def refused(response: ClientResponse, status: int) -> None:
    assert response.status == status, await response.text()
    body = await response.json(content_type=None)
    assert body["type"] == PROJECT_ERROR_BASE + ("Unauthorized" if status == 401 else "Forbidden")


async def value_of(hub: Hub, entity_id: str) -> int | None:
    """The entity's n as a valid reader sees it (None: no such entity)."""
    found = await hub.call("GET", f"{ENTITIES}/{entity_id}", hub.token("reader"))
    if found.status == 404:
        return None
    assert found.status == 200, await found.text()
    value: int = (await found.json())["n"]["value"]
    return value


# --- valid tokens ----------------------------------------------------------------------------------


async def test_rs256_and_es256_tokens_read_and_write_as_their_roles_allow(hub: Hub) -> None:
    entity_id = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}"
    writer, reader = hub.token("writer"), hub.token("reader", kid="ec-1")
    # No tenant header: the token's tenant.
    assert (await hub.call("POST", ENTITIES, writer, thing(entity_id))).status == 201
    found = await hub.call("GET", f"{ENTITIES}/{entity_id}", reader, **{"NGSILD-Tenant": hub.tenant})
    assert found.status == 200
    # The FIWARE PEP proxy's header carries a token as well.
    assert (await hub.call("GET", f"{ENTITIES}/{entity_id}", None, **{"X-Auth-Token": reader})).status == 200
    patch = {"n": {"type": "Property", "value": 2}}
    await refused(await hub.call("PATCH", f"{ENTITIES}/{entity_id}/attrs", reader, patch), 403)
    await refused(await hub.call("POST", "/admin/keys", hub.token("writer"), {"roles": ["reader"]}), 403)
    assert (await hub.call("PATCH", f"{ENTITIES}/{entity_id}/attrs", writer, patch)).status == 204
    assert await value_of(hub, entity_id) == 2
    # Keycloak's own roles next to ours are ignored, not refused.
    mixed = hub.token("offline_access", "uma_authorization", "reader")
    assert (await hub.call("GET", f"{ENTITIES}/{entity_id}", mixed)).status == 200


async def test_a_token_acts_in_its_tenant_and_nowhere_else(hub: Hub) -> None:
    entity_id = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}"
    writer = hub.token("writer")
    assert (await hub.call("POST", ENTITIES, writer, thing(entity_id))).status == 201
    other = {"NGSILD-Tenant": f"{hub.tenant}-other"}
    await refused(await hub.call("GET", f"{ENTITIES}/{entity_id}", writer, **other), 403)
    await refused(await hub.call("POST", ENTITIES, writer, thing(entity_id + "x"), **other), 403)
    await refused(
        await hub.call("POST", ENTITIES, writer, thing(entity_id + "y"), **{"Fiware-Service": "elsewhere"}),
        403,
    )
    assert await value_of(hub, entity_id + "x") is None


async def test_a_token_of_several_tenants_must_name_the_one_it_acts_in(hub: Hub) -> None:
    second = f"{hub.tenant}-b"
    both = hub.token("writer", tenant=[hub.tenant, second])
    entity_id = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}"
    response = await hub.call("POST", ENTITIES, both, thing(entity_id))
    await refused(response, 403)
    assert "NGSILD-Tenant" in (await response.json(content_type=None))["detail"]
    for tenant in (hub.tenant, second):
        named = {"NGSILD-Tenant": tenant}
        assert (await hub.call("POST", ENTITIES, both, thing(entity_id), **named)).status == 201
        assert (await hub.call("GET", f"{ENTITIES}/{entity_id}", both, **named)).status == 200
    await refused(await hub.call("GET", ENTITIES + "?type=Thing", both, **{"NGSILD-Tenant": "third"}), 403)


async def test_an_admin_token_of_two_tenants_manages_the_keys_of_the_one_named(hub: Hub) -> None:
    second = f"{hub.tenant}-b"
    admin = hub.token("admin", tenant=[hub.tenant, second])
    made = {}
    for tenant in (hub.tenant, second):
        response = await hub.call(
            "POST", "/admin/keys", admin, {"roles": ["reader"]}, **{"NGSILD-Tenant": tenant}
        )
        assert response.status == 201, await response.text()
        made[tenant] = (await response.json())["id"]
    listed = await hub.call("GET", "/admin/keys", admin, **{"NGSILD-Tenant": second})
    assert {k["tenant"] for k in await listed.json()} == {second}
    # Acting in the second tenant, the first one's key is not found (the identity is narrowed).
    path = f"/admin/keys/{made[hub.tenant]}"
    assert (await hub.call("GET", path, admin, **{"NGSILD-Tenant": second})).status == 404
    assert (await hub.call("GET", path, admin, **{"NGSILD-Tenant": hub.tenant})).status == 200


async def test_an_operator_token_names_no_tenant_and_reaches_every_one(hub: Hub) -> None:
    operator = hub.token("operator", tenant=None)
    assert (
        await hub.call("GET", ENTITIES + "?type=Thing", operator, **{"NGSILD-Tenant": hub.tenant})
    ).status == 200
    elsewhere = {"roles": ["writer"], "tenant": f"{hub.tenant}-other"}
    made = await hub.call("POST", "/admin/keys", operator, elsewhere)
    assert made.status == 201, await made.text()
    # The key it made works, in that tenant.
    key = (await made.json())["key"]
    entity = thing(f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}")
    assert (await hub.call("POST", ENTITIES, key, entity)).status == 201


async def test_a_token_granting_no_role_here_is_forbidden_and_changes_nothing(hub: Hub) -> None:
    entity_id = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}"
    nothing = [
        hub.token(),  # no roles at all
        hub.token("offline_access", "default-roles-kagawa"),  # none of ours
        hub.token("writer", tenant=None),  # no tenant and not an operator: bound to nothing
        hub.token("operator"),  # the operator role never holds inside one tenant
        hub.provider.token(tenant=hub.tenant),  # no roles claim
    ]
    for token in nothing:
        await refused(await hub.call("POST", ENTITIES, token, thing(entity_id)), 403)
        await refused(await hub.call("GET", ENTITIES + "?type=Thing", token), 403)
    assert await value_of(hub, entity_id) is None


# --- tokens that prove nothing ---------------------------------------------------------------------


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}."


def _hs256_with_the_public_key(claims: dict[str, Any]) -> str:
    """Algorithm confusion: an HMAC whose secret is the RSA public key, which anyone can get."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = (
        f"{b64(orjson.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'}))}.{b64(orjson.dumps(claims))}"
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _tampered(provider: Provider, claims: dict[str, Any]) -> str:
    """A reader's genuine token whose payload was replaced by a writer's, the signature kept."""
    header, _, signature = provider.token(**{**claims, "roles": ["reader"]}).split(".")
    return f"{header}.{b64(orjson.dumps(claims))}.{signature}"


def bad_tokens(hub: Hub) -> dict[str, str]:
    """Tokens that must all answer 401, each as a writer of the hub's tenant would hold it."""
    provider, leeway = hub.provider, 30
    writer: dict[str, Any] = {"roles": ["writer"], "tenant": hub.tenant}
    now = int(hub.clock.now().timestamp())
    return {
        "expired": provider.token(**writer, exp=now - leeway - 1),
        "not yet valid": provider.token(**writer, nbf=now + leeway + 60),
        "issued in the future": provider.token(**writer, iat=now + leeway + 60, nbf=None),
        "wrong audience": provider.token(**writer, aud="another-app"),
        "wrong issuer": provider.token(**writer, iss="https://idp.example.org/realms/elsewhere"),
        "no expiry": provider.token(**writer, exp=None),
        "no subject": provider.token(**writer, sub=None),
        "unknown kid": jwt.encode(
            provider.claims(**writer), RSA_KEY, algorithm="RS256", headers={"kid": "nobody-knows"}
        ),
        "signed by a key not in the set": jwt.encode(
            provider.claims(**writer), RSA_ROTATED, algorithm="RS256", headers={"kid": "rsa-1"}
        ),
        "alg none": _unsigned({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, provider.claims(**writer)),
        "alg none without kid": _unsigned({"alg": "none"}, provider.claims(**writer)),
        "HS256 signed with the public key": _hs256_with_the_public_key(provider.claims(**writer)),
        "ES256 header on the RSA key": jwt.encode(
            provider.claims(**writer), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"}
        ),
        "tampered payload": _tampered(provider, provider.claims(**writer)),
        "an ID token": provider.token(**writer, typ="ID"),
        "tenant claim not a string": provider.token(**{**writer, "tenant": {"name": hub.tenant}}),
        "tenant claim an empty list": provider.token(**{**writer, "tenant": []}),
        "tenant claim not a tenant name": provider.token(**{**writer, "tenant": "../etc"}),
        "not a JWT": "eyJhbGciOiJSUzI1NiJ9.garbage.more-garbage",
    }


async def test_every_token_that_proves_nothing_is_refused_with_401_and_changes_nothing(hub: Hub) -> None:
    existing = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}"
    assert (await hub.call("POST", ENTITIES, hub.token("writer"), thing(existing))).status == 201
    fetches = hub.provider.hits
    for name, token in bad_tokens(hub).items():
        created = f"urn:ngsi-ld:Thing:{uuid.uuid4().hex[:8]}"
        patch = {"n": {"type": "Property", "value": 99}}
        for method, path, body in (
            ("POST", ENTITIES, thing(created)),
            ("PATCH", f"{ENTITIES}/{existing}/attrs", patch),
            ("DELETE", f"{ENTITIES}/{existing}", None),
            ("POST", "/admin/keys", {"roles": ["reader"]}),
        ):
            response = await hub.call(method, path, token, body)
            assert response.status == 401, (name, method, path, await response.text())
            await refused(response, 401)
        assert await value_of(hub, created) is None, name
    assert await value_of(hub, existing) == 1
    # The forged key ids did not make the broker ask the provider again (it just did).
    assert hub.provider.hits == fetches


async def test_a_token_is_valid_only_between_its_times_with_the_leeway(hub: Hub) -> None:
    token = hub.token("reader")
    path = ENTITIES + "?type=Thing"
    assert (await hub.call("GET", path, token)).status == 200
    await hub.clock.advance(300 + 29)  # exp + 29 s: inside the 30 s leeway
    assert (await hub.call("GET", path, token)).status == 200
    await hub.clock.advance(2)
    await refused(await hub.call("GET", path, token), 401)
    early = hub.token("reader", nbf=int(hub.clock.now().timestamp()) + 60)
    await refused(await hub.call("GET", path, early), 401)
    await hub.clock.advance(31)
    assert (await hub.call("GET", path, early)).status == 200


# --- the key set: rotation and refresh ------------------------------------------------------------


async def test_a_rotated_key_is_fetched_at_once_but_not_more_often_than_the_rate_limit(hub: Hub) -> None:
    path = ENTITIES + "?type=Thing"
    await hub.clock.advance(REFETCH_SECONDS)
    hub.provider.served = ["rsa-2", "rsa-1", "ec-1"]  # the provider rotates: a new key first
    before = hub.provider.hits
    rotated = hub.token("reader", kid="rsa-2")
    assert (await hub.call("GET", path, rotated)).status == 200
    assert hub.provider.hits == before + 1
    # Unknown key ids right after: refused without asking the provider again.
    for _ in range(5):
        forged = hub.provider.claims(roles=["reader"], tenant=hub.tenant)
        token = jwt.encode(
            forged, RSA_KEY, algorithm="RS256", headers={"kid": f"forged-{uuid.uuid4().hex[:4]}"}
        )
        await refused(await hub.call("GET", path, token), 401)
    assert hub.provider.hits == before + 1


async def test_a_key_the_provider_rotates_in_right_after_a_fetch_works_once_the_rate_limit_passed(
    hub: Hub,
) -> None:
    path = ENTITIES + "?type=Thing"
    await hub.clock.advance(REFETCH_SECONDS)
    assert (await hub.call("GET", path, hub.token("reader", kid="rsa-2"))).status == 401  # fetched: not there
    hub.provider.served = ["rsa-2", "rsa-1"]
    rotated = hub.token("reader", kid="rsa-2")
    await refused(await hub.call("GET", path, rotated), 401)  # fetched a moment ago: no new fetch
    await hub.clock.advance(REFETCH_SECONDS)
    assert (await hub.call("GET", path, rotated)).status == 200


async def test_the_key_set_is_read_again_after_the_refresh_interval(hub: Hub) -> None:
    path = ENTITIES + "?type=Thing"
    ec_reader = hub.token("reader", kid="ec-1", exp=int(hub.clock.now().timestamp()) + 3600)
    assert (await hub.call("GET", path, ec_reader)).status == 200
    hub.provider.served = ["rsa-1"]  # the provider withdraws its EC key
    assert (await hub.call("GET", path, ec_reader)).status == 200  # still held until the refresh
    before = hub.provider.hits
    await hub.clock.advance(REFRESH)
    await refused(await hub.call("GET", path, ec_reader), 401)
    assert hub.provider.hits == before + 1


# --- start-up ---------------------------------------------------------------------------------------


async def test_with_an_issuer_the_broker_starts_without_an_operator_key(
    settings: Settings, provider: Provider
) -> None:
    conn = await asyncpg.connect(database_url())
    try:
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE tenant IS NULL AND revoked_at IS NULL"
        )
    finally:
        await conn.close()
    app = create_app(oidc_settings(settings, provider.url), clock=provider.clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        hub = Hub(client, provider, provider.clock, f"oidc-{uuid.uuid4().hex[:10]}")
        made = await hub.call(
            "POST", "/admin/keys", hub.token("operator", tenant=None), {"roles": ["operator"]}
        )
        assert made.status == 201, await made.text()
        assert isinstance(client.app[TOKENS], TokenVerifier)


async def test_an_unreachable_provider_does_not_stop_the_broker_and_is_asked_again_later(
    settings: Settings, provider: Provider
) -> None:
    served = provider.url
    dead = served.replace("/certs", "/nothing-here")
    app = create_app(oidc_settings(settings, dead), clock=provider.clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        hub = Hub(client, provider, provider.clock, f"oidc-{uuid.uuid4().hex[:10]}")
        await refused(await hub.call("GET", ENTITIES + "?type=Thing", hub.token("reader")), 401)
        # API keys keep working meanwhile.
        _, key = await client.app[KEYS].create(hub.tenant, [Role.WRITER])
        assert (await hub.call("POST", ENTITIES, key, thing("urn:ngsi-ld:Thing:by-key"))).status == 201
        verifier = client.app[TOKENS]
        assert verifier.fetches == 1  # asked once at start; the first token did not ask again at once
        await hub.clock.advance(REFETCH_SECONDS)
        await refused(await hub.call("GET", ENTITIES + "?type=Thing", hub.token("reader")), 401)
        assert verifier.fetches == 2


async def test_a_jwks_file_holding_no_key_stops_the_start(settings: Settings, tmp_path: Path) -> None:
    empty = tmp_path / "jwks.json"
    empty.write_text('{"keys": []}')
    configured = replace(oidc_settings(settings, ""), oidc_jwks_file=str(empty))
    server = TestServer(create_app(configured), host="127.0.0.1")
    with pytest.raises(OSError, match="NGSI_OIDC_JWKS_FILE"):
        await server.start_server()
    await server.close()


# --- the verifier alone ---------------------------------------------------------------------------


async def test_keycloak_realm_roles_and_a_file_key_set(tmp_path: Path) -> None:
    clock = ManualClock()
    provider = Provider(clock)
    keycloak_jwks = provider.jwks()
    # Keycloak publishes its encryption key too, and an HMAC key must never be taken.
    keycloak_jwks["keys"] += [
        {**public_jwk("rsa-2"), "kid": "enc-1", "use": "enc", "alg": "RSA-OAEP"},
        {"kty": "oct", "kid": "hs-1", "k": b64(b"secret"), "alg": "HS256"},
    ]
    path = tmp_path / "certs.json"
    path.write_bytes(orjson.dumps(keycloak_jwks))
    assert set(parse_jwks(path.read_bytes())) == {"rsa-1", "ec-1"}
    config = OidcConfig(ISSUER, AUDIENCE, tenant_claim="town", roles_claim="realm_access.roles")
    verifier = TokenVerifier(config, FileJwks(str(path)), clock=clock)
    assert await verifier.start() == 2
    token = provider.token(realm_access={"roles": ["offline_access", "writer"]}, town="kanonji", sub="alice")
    assert await verifier.identify(token) == Identity("token", "alice", "kanonji", frozenset({Role.WRITER}))
    # A claim whose name holds a dot is found by its whole name first.
    dotted = TokenVerifier(
        replace(config, roles_claim="https://city.example/roles"), FileJwks(str(path)), clock=clock
    )
    namespaced: dict[str, Any] = {"https://city.example/roles": ["reader"], "town": "x"}
    found = await dotted.identify(provider.token(**namespaced))
    assert found is not None
    assert found.roles == {Role.READER}
    await verifier.close()
    await dotted.close()


async def test_concurrent_tokens_with_an_unknown_kid_share_one_fetch(provider: Provider) -> None:
    verifier = TokenVerifier(
        OidcConfig(ISSUER, AUDIENCE), UrlJwks(provider.url, timeout=5), clock=provider.clock
    )
    try:
        assert await verifier.start() == 2
        await provider.clock.advance(REFETCH_SECONDS)
        provider.served = ["rsa-2"]
        tokens = [provider.token("rsa-2", roles=["reader"], tenant="t") for _ in range(10)]
        found = await asyncio.gather(*(verifier.identify(t) for t in tokens))
        assert all(identity is not None and identity.tenant == "t" for identity in found)
        assert provider.hits == 2
    finally:
        await verifier.close()


# --- whatever a client sends -----------------------------------------------------------------------


class StaticJwks:
    """A key set held in memory (the verifier reads whatever a JwksSource gives)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.body = orjson.dumps(document)

    async def read(self) -> bytes:
        return self.body

    async def close(self) -> None:
        return None


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_NOW = int(ManualClock().now().timestamp())
_CLAIM_NAMES = ["iss", "aud", "sub", "exp", "nbf", "iat", "typ", "tenant", "roles"]
_odd_claims = st.fixed_dictionaries(
    {
        "iss": st.sampled_from([ISSUER, ISSUER + "/"]) | _json,
        "aud": st.sampled_from([AUDIENCE, [AUDIENCE, "x"], ["x"]]) | _json,
        "sub": st.sampled_from(["alice", ""]) | _json,
        "exp": st.integers(_NOW - 100, _NOW + 400) | _json,
        "nbf": st.integers(_NOW - 100, _NOW + 400) | _json,
        "iat": st.integers(_NOW - 100, _NOW + 400) | _json,
        "typ": st.sampled_from(["Bearer", "ID"]) | _json,
        "tenant": st.sampled_from(["kanonji", "", "../x"])
        | st.lists(st.sampled_from(["a", "b", "/g"]))
        | _json,
        "roles": st.lists(st.sampled_from([*Role, "offline_access"]), max_size=3) | _json,
    }
)


@st.composite
def _claims(draw: st.DrawFn) -> dict[str, Any]:
    """A valid token's claims with a few of them replaced by odd values or left out."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": _NOW + 300,
        "iat": _NOW,
        "tenant": "kanonji",
        "roles": ["writer"],
    }
    odd = draw(_odd_claims)
    for name in draw(st.lists(st.sampled_from(_CLAIM_NAMES), max_size=3, unique=True)):
        claims[name] = odd[name]
    for name in draw(st.lists(st.sampled_from(_CLAIM_NAMES), max_size=2, unique=True)):
        claims.pop(name, None)
    return claims


def _rs256(header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}"
    signature = RSA_KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


@hypothesis_settings(max_examples=150, deadline=None)
@given(header=st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jku"]), _json), claims=_claims())
async def test_any_header_with_a_forged_signature_is_refused_without_an_error(
    header: dict[str, Any], claims: dict[str, Any]
) -> None:
    verifier = TokenVerifier(
        OidcConfig(ISSUER, AUDIENCE), StaticJwks(Provider(ManualClock()).jwks()), clock=ManualClock()
    )
    await verifier.start()
    token = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}.{b64(b'not a signature')}"
    assert await verifier.identify(token) is None


@hypothesis_settings(max_examples=150, deadline=None)
@given(claims=_claims(), kid=st.sampled_from(["rsa-1", "ec-1", ""]))
async def test_any_genuinely_signed_claims_give_an_identity_or_none_never_an_error(
    claims: dict[str, Any], kid: str
) -> None:
    clock = ManualClock()
    verifier = TokenVerifier(OidcConfig(ISSUER, AUDIENCE), StaticJwks(Provider(clock).jwks()), clock=clock)
    await verifier.start()
    identity = await verifier.identify(_rs256({"alg": "RS256", "kid": kid}, claims))
    if kid != "rsa-1":
        assert identity is None  # the RSA signature under the EC key's id, or no id with two keys
    elif identity is not None:
        assert identity.subject == claims["sub"]
        assert claims["iss"] == ISSUER
        # Tenant-less with any role means an operator, and an operator only.
        if identity.tenant is None:
            assert identity.roles <= {Role.OPERATOR}
        else:
            assert Role.OPERATOR not in identity.roles
