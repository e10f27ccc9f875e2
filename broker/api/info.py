"""Who this broker is: GET /ngsi-ld/v1/info/sourceIdentity (clause 5.15.1, HTTP binding 6.33).

The ContextSourceIdentity of clause 5.2.40: a stable id, the alias other brokers use to detect
forwarding loops (one per tenant, as the multi-tenancy case of table 5.2.40-1 asks), the uptime
and the current time; ``contextSourceExtras`` says what this broker is and which parts of
V1.9.1 it offers.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from broker import __version__
from broker.api.keys import SETTINGS
from broker.api.representation import accepted, json_response
from broker.edge import tenant_of
from broker.jsonld.context import CORE_URL
from broker.model.entity import format_time
from broker.store.tenants import DEFAULT_TENANT

routes = web.RouteTableDef()
_STARTED = time.monotonic()

# What an NGSI-LD client may rely on here (README, "API surface", lists the rest as 501).
CAPABILITIES: dict[str, Any] = {
    "ngsiLdVersion": "1.9.1",
    "entities": True,
    "batchOperations": True,
    "purge": True,
    "subscriptions": ["http", "https", "mqtt"],
    "temporal": True,
    "jsonldContexts": True,
    "join": ["inline", "flat"],
    "orderBy": True,
    "federation": False,
    "snapshots": False,
    "entityMaps": False,
}


def _duration(seconds: float) -> str:
    """An ISO 8601 duration (P1DT2H3M4S) of whole seconds."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{secs}S"


def _alias(base_url: str, tenant: str) -> str:
    """A pseudonym as RFC 7230 defines one (host:port), per tenant beyond the default one."""
    host = urlsplit(base_url).netloc
    return host if tenant == DEFAULT_TENANT else f"{host}/{tenant}"


@routes.get("/ngsi-ld/v1/info/sourceIdentity")
async def source_identity(request: web.Request) -> web.Response:
    """5.15.1 Retrieve Context Source Identity Information (HTTP binding 6.33.3.1)."""
    media_type = accepted(request)
    base_url = request.app[SETTINGS].base_url
    tenant = tenant_of(request)
    body = {
        "id": f"urn:ngsi-ld:ContextSourceIdentity:{uuid.uuid5(uuid.NAMESPACE_URL, base_url)}",
        "type": "ContextSourceIdentity",
        "contextSourceAlias": _alias(base_url, tenant),
        "contextSourceUptime": _duration(time.monotonic() - _STARTED),
        "contextSourceTimeAt": format_time(datetime.now(UTC)),
        "contextSourceExtras": {"name": "city-data-hub", "version": __version__, **CAPABILITIES},
    }
    return json_response(request, body, context=CORE_URL, media_type=media_type)
