"""Sharing grants and open data over HTTP (issue 12, items 3 and 5): a tenant's admins manage them.

    POST   /admin/grants           {"to": "ayagawa", "types": ["WaterObserved"], "attrs": ["waterLevel"]}
                                   (types and attrs: terms of the Link @context, or IRIs; "to": "*" is
                                   open data, readable by anyone without a key); 201
    GET    /admin/grants           the grants the request's tenant made (revoked ones too)
    GET    /admin/grants/{grantId}
    DELETE /admin/grants/{grantId} revoke: the grantee stops seeing the data at once in this process,
                                   within NGSI_AUTH_CACHE_SECONDS in the others; 204

A grant gives read access only (queries, retrieval, POST query) to the entities of its types, only
the named attributes of them when it names some. Not part of NGSI-LD (clause 4.6 leaves access
control to the implementation).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.api.keys import GRANTS
from broker.api.request import link_context, read_json, term_map
from broker.edge import json_reply, tenant_of
from broker.errors import BadRequestData, NotImplementedYet, ResourceNotFound
from broker.jsonld.context import TermMap
from broker.model.entity import format_time
from broker.model.parse import check_name
from broker.store.grants import EVERYONE, Grant
from broker.store.tenants import check_tenant_name

routes = web.RouteTableDef()
ADMIN = "/admin/grants"


def grant_json(grant: Grant, tm: TermMap) -> dict[str, Any]:
    return {
        "id": grant.id,
        "tenant": grant.tenant,
        "to": grant.grantee,
        "types": [tm.compact(t) for t in grant.types],
        "attrs": None if grant.attrs is None else [tm.compact(a) for a in grant.attrs],
        "subscribe": grant.subscribe,
        "createdAt": format_time(grant.created_at),
        "revokedAt": format_time(grant.revoked_at) if grant.revoked_at else None,
    }


def _names(raw: Any, what: str, tm: TermMap) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
        raise BadRequestData(f"{what} must be a non-empty list of names")
    return sorted({tm.expand(check_name(name, what)) for name in raw})


@routes.post(ADMIN)
async def create_grant(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequestData("the body must be a JSON object")
    tm = await term_map(request, link_context(request))
    to = data.get("to")
    if not isinstance(to, str):
        raise BadRequestData('to must name the tenant the grant is for, or "*" for everyone (open data)')
    grantee = to if to == EVERYONE else check_tenant_name(to)
    if grantee == tenant:
        raise BadRequestData("a tenant reads its own data without a grant")
    types = _names(data.get("types"), "types", tm)
    attrs = _names(data["attrs"], "attrs", tm) if data.get("attrs") is not None else None
    subscribe = data.get("subscribe", False)
    if not isinstance(subscribe, bool):
        raise BadRequestData("subscribe must be true or false")
    if subscribe:
        raise NotImplementedYet("subscriptions through a sharing grant are not implemented yet")
    grant = await request.app[GRANTS].create(tenant, grantee, types, attrs, subscribe)
    return json_reply(grant_json(grant, tm), status=201, headers={"Location": f"{ADMIN}/{grant.id}"})


@routes.get(ADMIN)
async def list_grants(request: web.Request) -> web.Response:
    tm = await term_map(request, link_context(request))
    found = await request.app[GRANTS].listing(tenant_of(request))
    return json_reply([grant_json(g, tm) for g in found])


@routes.get(ADMIN + "/{grant_id}")
async def get_grant(request: web.Request) -> web.Response:
    tm = await term_map(request, link_context(request))
    return json_reply(grant_json(await _existing(request), tm))


@routes.delete(ADMIN + "/{grant_id}")
async def revoke_grant(request: web.Request) -> web.Response:
    grant = await _existing(request)
    await request.app[GRANTS].revoke(grant.id, grant.tenant)
    return web.Response(status=204)


async def _existing(request: web.Request) -> Grant:
    """The grant in the path, if the request's tenant made it (another's is not found)."""
    grant_id = request.match_info["grant_id"]
    grant = await request.app[GRANTS].get(grant_id)
    if grant is None or grant.tenant != tenant_of(request):
        raise ResourceNotFound(f"no grant {grant_id}")
    return grant
