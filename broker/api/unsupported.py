"""NGSI-LD resources this broker does not offer yet: 501 OperationNotSupported, honestly.

Each path is removed from here when the part that serves it lands.
"""

from __future__ import annotations

from aiohttp import web

from broker.errors import NotImplementedYet

PREFIXES = (
    "/ngsi-ld/v1/entityOperations/purge",
    "/ngsi-ld/v1/snapshots",
    "/ngsi-ld/v1/entityMaps",
    "/ngsi-ld/v1/info",
)


async def not_implemented(request: web.Request) -> web.Response:
    raise NotImplementedYet(f"{request.method} {request.path} is not implemented by this broker yet")


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        app.router.add_route("*", prefix, not_implemented)
        app.router.add_route("*", prefix + "/{tail:.*}", not_implemented)
