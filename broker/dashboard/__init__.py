"""The operator dashboard (issue 15 item 1): a page served at /dashboard, static files shipped in
the package (no build step, no CDN), that reads the broker through its own APIs.

The page itself holds no data and loads with no credentials (a browser cannot send a bearer token
on navigation); everything it shows comes from the NGSI-LD API, /admin/deadletters, /health and
/ready, and the two small endpoints here, all of which need the operator or admin permission
(broker/auth/routes.py). None of these routes is part of ETSI GS CIM 009 V1.9.1.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from broker.api.keys import POOL, SETTINGS, TENANTS
from broker.auth.middleware import IDENTITY
from broker.clock import SYSTEM, Clock
from broker.edge import json_reply
from broker.errors import ResourceNotFound
from broker.model.entity import format_time

routes = web.RouteTableDef()
CLOCK: web.AppKey[Clock] = web.AppKey("dashboard_clock", Clock)
STATIC = "/dashboard/static/{name}"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}


def _file(name: str) -> tuple[bytes, str]:
    """A file of broker/dashboard/static by its plain name (no path: nothing else can be read)."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in _TYPES:
        raise ResourceNotFound(f"the dashboard has no file {name!r}")
    path = resources.files(__package__).joinpath("static", name)
    if not path.is_file():
        raise ResourceNotFound(f"the dashboard has no file {name!r}")
    return path.read_bytes(), _TYPES[suffix]


def _static(name: str) -> web.Response:
    body, content_type = _file(name)
    return web.Response(
        body=body, content_type=content_type, charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


@routes.get("/dashboard")
async def page(request: web.Request) -> web.Response:
    """The dashboard's page (this broker's operator view, not a GS CIM 009 V1.9.1 resource)."""
    return _static("index.html")


@routes.get(STATIC)
async def static(request: web.Request) -> web.Response:
    """The page's scripts and style sheet, shipped in the package (not a GS CIM 009 V1.9.1 resource)."""
    return _static(request.match_info["name"])


@routes.get("/dashboard/api/config")
async def config(request: web.Request) -> web.Response:
    """What the page needs from the settings, and the broker's clock (silence is measured on it,
    so a test's clock decides which device is silent). Not a GS CIM 009 V1.9.1 resource."""
    settings = request.app[SETTINGS]
    clock = request.app.get(CLOCK, SYSTEM)
    return json_reply(
        {
            "now": format_time(clock.now()),
            "tiles": settings.dashboard_tiles,
            "refreshSeconds": settings.dashboard_refresh,
            "silentFactor": settings.dashboard_silent_factor,
            "deviceIntervalSeconds": settings.dashboard_device_interval,
        }
    )


@routes.get("/dashboard/api/tenants")
async def tenants(request: web.Request) -> web.Response:
    """The tenants the caller may look at: every tenant for an operator (or with authentication
    off), else the caller's own. Not a GS CIM 009 V1.9.1 resource."""
    identity = request.get(IDENTITY)
    if identity is not None and identity.tenant is not None:
        names = sorted(identity.tenants or {identity.tenant})
    else:
        names = await request.app[TENANTS].names(request.app[POOL])
    return json_reply(names)
