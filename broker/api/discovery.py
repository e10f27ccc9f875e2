"""Discovery of what a tenant holds: /ngsi-ld/v1/types and /ngsi-ld/v1/attributes (clauses 5.7.5-5.7.10)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from broker.api import visibility
from broker.api.keys import POOL, TENANTS
from broker.api.representation import accepted, json_response
from broker.api.request import link_context, term_map
from broker.edge import flag, tenant_of
from broker.errors import ResourceNotFound
from broker.jsonld.context import TermMap
from broker.model.parse import check_name
from broker.store import discovery

routes = web.RouteTableDef()


async def _prepare(request: web.Request) -> tuple[TermMap, Any, str]:
    context = link_context(request)
    tm = await term_map(request, context)
    tenant = tenant_of(request)
    await request.app[TENANTS].require(request.app[POOL], tenant)
    return tm, context, accepted(request)


async def _hidden(request: web.Request) -> frozenset[str]:
    """The personal types the request may not see: their entities are not counted either."""
    return (await visibility.personal_view(request)).hidden


def _list_id(kind: str) -> str:
    return f"urn:ngsi-ld:{kind}:{uuid.uuid4().hex}"


@routes.get("/ngsi-ld/v1/types")
@routes.get("/ngsi-ld/v1/types/")
async def retrieve_types(request: web.Request) -> web.Response:
    """5.7.5 Retrieve Available Entity Types / 5.7.6 details=true (HTTP binding 6.25.3.1)."""
    tm, context, media_type = await _prepare(request)
    found = await discovery.types(request.app[POOL], tenant_of(request), None, hidden=await _hidden(request))
    body: Any
    if flag(request, "details"):
        body = [
            {
                "id": t.iri,
                "type": "EntityType",
                "typeName": tm.compact(t.iri),
                "attributeNames": sorted(tm.compact(a) for a in t.attributes),
            }
            for t in found
        ]
    else:
        body = {
            "id": _list_id("EntityTypeList"),
            "type": "EntityTypeList",
            "typeList": sorted(tm.compact(t.iri) for t in found),
        }
    return json_response(request, body, context=context, media_type=media_type)


@routes.get("/ngsi-ld/v1/types/{type}")
async def retrieve_type(request: web.Request) -> web.Response:
    """5.7.7 Retrieve Available Entity Type Information (HTTP binding 6.26.3.1)."""
    tm, context, media_type = await _prepare(request)
    iri = tm.expand(check_name(request.match_info["type"], "entity type"))
    found = await discovery.types(request.app[POOL], tenant_of(request), iri, hidden=await _hidden(request))
    if not found:
        raise ResourceNotFound(f"no entity of type {request.match_info['type']}")
    summary = found[0]
    body = {
        "id": summary.iri,
        "type": "EntityTypeInfo",
        "typeName": tm.compact(summary.iri),
        "entityCount": summary.entity_count,
        "attributeDetails": [
            {"id": a, "type": "Attribute", "attributeName": tm.compact(a), "attributeTypes": kinds}
            for a, kinds in summary.attributes.items()
        ],
    }
    return json_response(request, body, context=context, media_type=media_type)


def _attribute(summary: discovery.AttributeSummary, tm: TermMap) -> dict[str, Any]:
    return {
        "id": summary.iri,
        "type": "Attribute",
        "attributeName": tm.compact(summary.iri),
        "attributeCount": summary.count,
        "attributeTypes": summary.attribute_types,
        "typeNames": [tm.compact(t) for t in summary.type_names],
    }


@routes.get("/ngsi-ld/v1/attributes")
@routes.get("/ngsi-ld/v1/attributes/")
async def retrieve_attributes(request: web.Request) -> web.Response:
    """5.7.8 Retrieve Available Attributes / 5.7.9 details=true (HTTP binding 6.27.3.1)."""
    tm, context, media_type = await _prepare(request)
    found = await discovery.attributes(
        request.app[POOL], tenant_of(request), None, hidden=await _hidden(request)
    )
    body: Any
    if flag(request, "details"):
        body = [_attribute(a, tm) for a in found]
    else:
        body = {
            "id": _list_id("AttributeList"),
            "type": "AttributeList",
            "attributeList": sorted(tm.compact(a.iri) for a in found),
        }
    return json_response(request, body, context=context, media_type=media_type)


@routes.get("/ngsi-ld/v1/attributes/{attr}")
async def retrieve_attribute(request: web.Request) -> web.Response:
    """5.7.10 Retrieve Available Attribute Information (HTTP binding 6.28.3.1)."""
    tm, context, media_type = await _prepare(request)
    iri = tm.expand(check_name(request.match_info["attr"], "attribute name"))
    found = await discovery.attributes(
        request.app[POOL], tenant_of(request), iri, hidden=await _hidden(request)
    )
    if not found:
        raise ResourceNotFound(f"no attribute {request.match_info['attr']}")
    return json_response(request, _attribute(found[0], tm), context=context, media_type=media_type)
