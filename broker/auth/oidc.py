"""OpenID Connect bearer tokens (JWT) from the identity provider the operator configures (issue 12).

A token is trusted when PyJWT verifies its signature with a key of the provider's JWKS, its
``alg`` is RS256 or ES256 and matches that key (never ``none``, never HS*: an HMAC "signed" with
the public key must not pass), and its ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat`` hold on
the broker's clock with ``leeway`` seconds of slack. The JWKS comes from a URL (refetched every
``refresh`` seconds, and at once, at most every ``REFETCH_SECONDS``, when a token names a key id
it does not hold: the provider rotated its keys) or a file (re-read the same way). A verified
token is remembered until its ``exp`` or the next read of the key set, whichever comes first:
PyJWT takes 160-240 us to verify one here (~1 ms on a loaded machine), a lookup ~2 us, and
apps send one token many times.

What the token may do comes from two claims, their names configurable, each a plain name or a
dotted path into nested objects (Keycloak's ``realm_access.roles``): the tenant claim, a string
or a list of strings, and the roles claim, whose values that are not roles of ours are ignored.
A token naming no tenant is an operator's when it holds the ``operator`` role and grants nothing
otherwise; a token naming tenants never carries the operator role. A token that proves who its
holder is but grants nothing yields an identity without roles (403); one that proves nothing,
None (401). The reason is logged, never sent: it would help a forger more than a client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import jwt
import orjson

from broker.auth.model import Identity, Role
from broker.clock import SYSTEM, Clock
from broker.errors import BadRequestData
from broker.store.tenants import check_tenant_name

log = logging.getLogger(__name__)

ALGORITHMS = frozenset({"RS256", "ES256"})
# The soonest an unknown key id may cause another JWKS fetch: a stream of forged key ids must
# not turn the broker into a flood against the identity provider.
REFETCH_SECONDS = 10.0
JWKS_MAX_BYTES = 1024 * 1024
# Tokens verified lately, kept so a client sending the same token costs one lookup, not a
# verification (160-240 us here, much of it PyJWT checking the base64 text character by character).
_VERIFIED_MAX = 10_000
_ROLES = frozenset(Role)
# Keycloak's "typ" claim of the tokens it issues that are not access tokens.
_NOT_ACCESS = frozenset({"ID", "Refresh", "Logout"})


class TokenRefused(Exception):
    """Why a token proves nothing (logged; the client is told only 401)."""


class JwksSource(Protocol):
    """Where the provider's key set comes from."""

    async def read(self) -> bytes: ...

    async def close(self) -> None: ...


class UrlJwks:
    """The key set at an https URL (Keycloak: ``<issuer>/protocol/openid-connect/certs``)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def read(self) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        async with self._session.get(
            self.url, headers={"Accept": "application/json"}, max_redirects=3
        ) as response:
            if response.status != 200:
                raise OSError(f"JWKS {self.url} answered HTTP {response.status}")
            if response.content_length is not None and response.content_length > JWKS_MAX_BYTES:
                raise OSError(f"JWKS {self.url} is larger than {JWKS_MAX_BYTES} bytes")
            body = await response.content.read(JWKS_MAX_BYTES + 1)
            if len(body) > JWKS_MAX_BYTES:
                raise OSError(f"JWKS {self.url} is larger than {JWKS_MAX_BYTES} bytes")
            return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class FileJwks:
    """The key set in a file (a provider the broker cannot reach, or keys handed over by hand)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    async def read(self) -> bytes:
        return await asyncio.to_thread(self.path.read_bytes)

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """What the operator configured (NGSI_OIDC_*)."""

    issuer: str
    audience: str
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"
    refresh: float = 300.0
    leeway: float = 30.0


def parse_jwks(body: bytes) -> dict[str, jwt.PyJWK]:
    """The signing keys of a JWKS document usable with ALGORITHMS, by key id ("" for none)."""
    document = orjson.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS is a JSON object with a "keys" list')
    found: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue  # Keycloak also publishes its encryption key (RSA-OAEP, use "enc")
        if "alg" in entry and not _one_of(entry["alg"], ALGORITHMS):
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        kid = entry.get("kid", "")
        if key.algorithm_name in ALGORITHMS and isinstance(kid, str):
            found.setdefault(kid, key)
    return found


def _one_of(value: Any, names: frozenset[str]) -> bool:
    # A JSON value may be a list or an object, which a set cannot even be asked about.
    return isinstance(value, str) and value in names


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """The claim ``name``: a top-level one of that exact name, else the dotted path into objects."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TokenRefused(f"the {what} claim is neither a string nor a list of strings")


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRefused(f"the {name} claim is not a number")
    return float(value)


class TokenVerifier:
    """Checks bearer tokens against the configured provider; holds its key set."""

    def __init__(self, config: OidcConfig, source: JwksSource, *, clock: Clock = SYSTEM) -> None:
        self.config = config
        self._source = source
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None  # monotonic time of the last good read
        self._tried_at: float | None = None  # monotonic time of the last read, good or not
        self._lock = asyncio.Lock()
        self.fetches = 0  # reads tried so far
        # Token -> (identity, exp), for the key set read last (emptied when it is read again).
        self._verified: dict[str, tuple[Identity, float]] = {}

    async def start(self) -> int:
        """Read the key set once; the number of usable keys it holds (0: none, or it could not be
        read, which is logged and tried again when tokens come)."""
        await self._fetch(self.fetches)
        return len(self._keys)

    async def close(self) -> None:
        await self._source.close()

    async def identify(self, token: str) -> Identity | None:
        """The identity ``token`` proves, or None (see the module's docstring for what is checked)."""
        if self._loaded_at is None or self._clock.monotonic() - self._loaded_at >= self.config.refresh:
            await self._fetch(self.fetches, at_least=REFETCH_SECONDS)
        known = self._verified.get(token)
        if known is not None and not self._expired(known[1]):
            return known[0]
        try:
            identity, exp = await self._verify(token)
        except TokenRefused as refusal:
            log.info("bearer token refused: %s", refusal)
            return None
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (identity, exp)
        return identity

    async def _verify(self, token: str) -> tuple[Identity, float]:
        """The identity ``token`` proves and its expiry; TokenRefused saying why it proves nothing."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"not a JWS: {exc}") from None
        alg = header.get("alg")
        if not _one_of(alg, ALGORITHMS):
            raise TokenRefused(f"algorithm {alg!r} is not one of {', '.join(sorted(ALGORITHMS))}")
        kid = header.get("kid", "")
        if not isinstance(kid, str):
            raise TokenRefused("the kid header is not a string")
        key = await self._key(kid)
        if key is None:
            raise TokenRefused(f"no key {kid!r} in the provider's key set")
        if key.algorithm_name != alg:
            raise TokenRefused(f"key {kid!r} is a {key.algorithm_name} key, the token says {alg}")
        claims = self._decode(token, key)
        exp = self._check_times(claims)
        return self._identity(claims), exp

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.config.audience,
                issuer=self.config.issuer,
                # Times are checked on the broker's clock (_check_times), not PyJWT's.
                options={
                    "require": ["iss", "aud", "exp", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"{type(exc).__name__}: {exc}") from None

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        """The token's exp, once exp, nbf and iat hold now (PyJWT made sure exp is there)."""
        exp = _number(claims, "exp")
        if exp is None or self._expired(exp):
            raise TokenRefused("the token has expired")
        now = self._clock.now().timestamp()
        for name in ("nbf", "iat"):
            moment = _number(claims, name)
            if moment is not None and moment > now + self.config.leeway:
                raise TokenRefused(f"the token is not valid yet ({name})")
        return exp

    def _expired(self, exp: float) -> bool:
        return exp <= self._clock.now().timestamp() - self.config.leeway

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenRefused("the sub claim is not a string")
        if _one_of(claims.get("typ"), _NOT_ACCESS):
            # Keycloak's ID token has the client as audience too: it names a user, grants nothing.
            raise TokenRefused(f"a {claims['typ']} token is not an access token")
        raw_roles = claim(claims, self.config.roles_claim)
        names = [] if raw_roles is None else _strings(raw_roles, "roles")
        roles = frozenset(Role(name) for name in names if name in _ROLES)
        raw_tenants = claim(claims, self.config.tenant_claim)
        if raw_tenants is None:
            if Role.OPERATOR in roles:
                return Identity("token", subject, None, frozenset({Role.OPERATOR}))
            # Proven, but bound to no tenant and no operator: it may do nothing.
            return Identity("token", subject, None, frozenset())
        tenants = list(dict.fromkeys(_strings(raw_tenants, "tenant")))
        if not tenants:
            raise TokenRefused("the tenant claim is an empty list")
        try:
            tenants = [check_tenant_name(name) for name in tenants]
        except BadRequestData as exc:
            raise TokenRefused(f"the tenant claim: {exc}") from None
        roles -= {Role.OPERATOR}  # an operator covers the whole instance: never one tenant's
        several = frozenset(tenants) if len(tenants) > 1 else None
        return Identity("token", subject, tenants[0], roles, tenants=several)

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is None and kid == "" and len(self._keys) == 1:
            return next(iter(self._keys.values()))  # a token without kid, a provider with one key
        if key is None:
            # Perhaps rotated: fetch again, unless that was tried a moment ago.
            await self._fetch(self.fetches, at_least=REFETCH_SECONDS)
            key = self._keys.get(kid)
        return key

    async def _fetch(self, seen: int, *, at_least: float = 0.0) -> None:
        """Read the key set, unless another caller did since it had seen ``seen`` reads (callers
        waiting meanwhile share one read) or the last try is less than ``at_least`` seconds old."""
        async with self._lock:
            now = self._clock.monotonic()
            if self.fetches != seen or (self._tried_at is not None and now - self._tried_at < at_least):
                return
            self._tried_at = now
            self.fetches += 1
            try:
                keys = parse_jwks(await self._source.read())
            except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("the identity provider's key set could not be read: %s", exc)
                return
            if not keys:
                log.warning("the identity provider's key set holds no RS256 or ES256 signing key")
            self._keys = keys
            self._loaded_at = now
            self._verified.clear()  # a key withdrawn must not live on in what it verified
