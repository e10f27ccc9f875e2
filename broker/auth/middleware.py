"""Authenticate every request before its handler runs, and refuse what its identity may not do.

With authentication on (NGSI_AUTH), a request names its key as ``Authorization: Bearer <key>``
or ``X-Auth-Token: <key>`` (the FIWARE PEP proxy's header). The route's permission comes from
``routes.PERMISSIONS``: PUBLIC and APIKEY routes pass (the device pipeline checks an apikey
itself); any other answers 401 without a valid key, 403 when the key's roles lack the permission
or its tenant is not the one the request names. A tenant key that names no tenant acts in its
own. Reads of another tenant pass where that tenant's grants let the key's tenant read (open
data: grants to everyone, readable without a key), carrying the Visibility the handlers apply.
Nothing has run when a request is refused, so a refusal changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from broker.auth.grants import Grants, Visibility
from broker.auth.keys import KeyRing
from broker.auth.model import ANONYMOUS, UNCHECKED, Identity, Permission
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
) -> Middleware:
    """The middleware; ``keys_of(request)`` and ``grants_of(request)`` are the key ring and the
    grants (made once the database is open); ``limiter`` holds each identity to its rate."""

    def limit(key: str, rate: float) -> None:
        wait = limiter.wait(key, rate)
        if wait > 0:
            raise TooManyRequests(f"request rate above {rate:g}/s; retry in {wait:.1f} s", wait)

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
            raise Unauthorized("this resource needs an API key: Authorization: Bearer <key>")
        identity = await keys_of(request).identify(token)
        if identity is None:
            limit(f"address {request.remote}", anonymous_rate)  # guessing keys costs like anonymity
            raise Unauthorized("the API key is unknown, revoked or expired")
        limit(f"key {identity.subject}", limiter.rate_of(identity))
        if needed is None:
            raise Forbidden(f"{request.method} {canonical} declares no permission")
        if not identity.may(needed):
            raise Forbidden(f"the key's roles do not allow {needed} on this resource")
        if identity.tenant is not None:
            if not any(h in request.headers for h in _TENANT_HEADERS):
                # A tenant's key acts in its tenant unless the request names one.
                request = request.clone(headers={**request.headers, "NGSILD-Tenant": identity.tenant})
            elif not identity.acts_in(tenant := tenant_of(request)):
                seen = None
                if needed is Permission.READ and shareable(request.method, canonical):
                    seen = await grants_of(request).seen_by(tenant, identity.tenant)
                if seen is None:
                    raise Forbidden("the key is not valid for the tenant the request names")
                request[VISIBILITY] = seen  # another tenant's data, as far as its grants go
        request[IDENTITY] = identity
        return await handler(request)

    return authenticate
