"""Authenticate every request before its handler runs, and refuse what its identity may not do.

With authentication on (NGSI_AUTH), a request names its key as ``Authorization: Bearer <key>``
or ``X-Auth-Token: <key>`` (the FIWARE PEP proxy's header); with an OpenID Connect provider
configured, a credential not shaped like one of our keys is taken for the provider's token
(``oidc``). The route's permission comes from ``routes.PERMISSIONS``: PUBLIC and APIKEY routes
pass (the device pipeline checks an apikey itself); any other answers 401 without a valid
credential, 403 when its roles lack the permission or its tenant is not the one the request
names. A tenant key that names no tenant acts in its own; a token naming several tenants must
be told which (NGSILD-Tenant), and its identity is narrowed to that one. Reads of another tenant
pass where that tenant's grants let the credential's tenant read (open data: grants to everyone,
readable without a credential), carrying the Visibility the handlers apply. Each identity is held
to its request rate (``ratelimit``). Nothing has run when a request is refused, so a refusal
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from broker.auth.grants import Grants, Visibility
from broker.auth.keys import KeyRing, key_id_of
from broker.auth.model import ANONYMOUS, UNCHECKED, Identity, Permission
from broker.auth.oidc import TokenVerifier
from broker.auth.ratelimit import RateLimiter
from broker.auth.routes import permission_of, shareable
from broker.edge import tenant_of
from broker.errors import Forbidden, Handler, TooManyRequests, Unauthorized

# The Identity a request was made with (set by the middleware on every request it lets through).
IDENTITY = web.RequestKey("identity", Identity)
# What a request may see when it reads another tenant's data through grants or open data.
VISIBILITY = web.RequestKey("visibility", Visibility)
_TENANT_HEADERS = ("NGSILD-Tenant", "Fiware-Service")
_PASS = frozenset({Permission.PUBLIC, Permission.APIKEY})


def identity_of(request: web.Request) -> Identity:
    """The identity the request was authenticated as (every permission while auth is off)."""
    found = request.get(IDENTITY)
    return UNCHECKED if found is None else found


def visibility_of(request: web.Request) -> Visibility | None:
    """What the request may see of the tenant it reads (None: everything, its own tenant)."""
    return request.get(VISIBILITY)


def credential(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() or None if scheme.lower() == "bearer" else None
    return request.headers.get("X-Auth-Token") or None


def auth_middleware(
    keys_of: Callable[[web.Request], KeyRing],
    grants_of: Callable[[web.Request], Grants],
    limiter: RateLimiter,
    tokens_of: Callable[[web.Request], TokenVerifier | None] = lambda request: None,
) -> Middleware:
    """The middleware; ``keys_of(request)`` and ``grants_of(request)`` are the key ring and the
    grants (made once the database is open), ``tokens_of(request)`` the OpenID Connect token
    verifier (None: no provider configured); ``limiter`` holds each identity to its rate."""

    def limit(key: str, rate: float) -> None:
        wait = limiter.wait(key, rate)
        if wait > 0:
            raise TooManyRequests(f"request rate above {rate:g}/s; retry in {wait:.1f} s", wait)

    async def identify(request: web.Request, token: str) -> Identity | None:
        # A credential shaped like one of our keys is a key; anything else may be a provider's token.
        tokens = tokens_of(request)
        if tokens is None or key_id_of(token) is not None:
            return await keys_of(request).identify(token)
        return await tokens.identify(token)

    anonymous_rate = limiter.rate_of(ANONYMOUS)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        if route.resource is None:  # no such path or method: the router's own 404/405
            return await handler(request)
        canonical = route.resource.canonical
        needed = permission_of(request.method, canonical)
        if needed in _PASS:
            return await handler(request)
        token = credential(request)
        if token is None:
            limit(f"address {request.remote}", anonymous_rate)
            if needed is Permission.READ and shareable(request.method, canonical):
                # Open data: what the tenant publishes to everyone is readable without a key.
                seen = await grants_of(request).seen_by(tenant_of(request), None)
                if seen is not None:
                    request[VISIBILITY] = seen
                    request[IDENTITY] = ANONYMOUS
                    return await handler(request)
            raise Unauthorized("this resource needs an API key or token: Authorization: Bearer <credential>")
        identity = await identify(request, token)
        if identity is None:
            limit(f"address {request.remote}", anonymous_rate)  # guessing keys costs like anonymity
            raise Unauthorized("the API key or token is unknown, revoked, expired or not valid here")
        limit(f"{identity.kind} {identity.subject}", limiter.rate_of(identity))
        if needed is None:
            raise Forbidden(f"{request.method} {canonical} declares no permission")
        if not identity.may(needed):
            raise Forbidden(f"the credential's roles do not allow {needed} on this resource")
        if identity.tenant is not None:
            if not any(h in request.headers for h in _TENANT_HEADERS):
                if identity.tenants is not None:
                    raise Forbidden(
                        f"the token is valid for the tenants {', '.join(sorted(identity.tenants))}: "
                        "name one with NGSILD-Tenant"
                    )
                # A tenant's key acts in its tenant unless the request names one.
                request = request.clone(headers={**request.headers, "NGSILD-Tenant": identity.tenant})
            else:
                tenant = tenant_of(request)
                if identity.acts_in(tenant):
                    identity = identity.within(tenant)
                else:
                    seen = None
                    if needed is Permission.READ and shareable(request.method, canonical):
                        seen = await grants_of(request).seen_by(tenant, identity.tenant)
                    if seen is None:
                        raise Forbidden("the credential is not valid for the tenant the request names")
                    request[VISIBILITY] = seen  # another tenant's data, as far as its grants go
        request[IDENTITY] = identity
        return await handler(request)

    return authenticate
