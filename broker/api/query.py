"""Query Entities: GET /ngsi-ld/v1/entities (clause 5.7.2, HTTP binding 6.4.3.2).

This first version selects by type, id, idPattern and attrs, with pagination and
count; q, scopeQ, geo-queries and csf answer 501 until the query engine lands.
"""

from __future__ import annotations

import re

from aiohttp import web

from broker.api import common
from broker.api.keys import POOL, SETTINGS, TENANTS
from broker.errors import BadRequestData, NotImplementedYet, TooManyResults
from broker.model.parse import check_name, check_uri
from broker.model.render import render_entity, to_feature
from broker.store import query as entity_query

routes = web.RouteTableDef()
DEFAULT_LIMIT = 20
_LATER = ("q", "scopeQ", "georel", "geometry", "coordinates", "geoQ", "csf", "orderBy", "join", "entityMap")
_SIMPLE_TYPE = re.compile(r"^[^;|()]+$")


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BadRequestData(f"{name} must be a non-negative integer")
    return int(raw)


@routes.get("/ngsi-ld/v1/entities")
@routes.get("/ngsi-ld/v1/entities/")
async def query_entities(request: web.Request) -> web.Response:
    """5.7.2 Query Entities by type, id, idPattern, attrs; limit/offset/count (6.3.10, 6.3.13)."""
    later = [name for name in _LATER if name in request.query]
    if later:
        raise NotImplementedYet(f"query parameter(s) {', '.join(later)} are not implemented yet")
    media_type = common.accepted(request, geo=True)
    context = common.link_context(request)
    tm = await common.term_map(request, context)
    view = common.view_of(request, tm)
    types = common.csv_param(request, "type")
    if types is not None and not all(_SIMPLE_TYPE.match(t) for t in types):
        raise NotImplementedYet("type expressions with ';', '|' or parentheses are not implemented yet")
    ids = common.csv_param(request, "id")
    attrs = common.csv_param(request, "attrs") or common.csv_param(request, "pick")
    id_pattern = request.query.get("idPattern")
    if not (types or ids or id_pattern or attrs):
        raise BadRequestData("give at least one of type, id, idPattern, attrs (clause 5.7.2)")
    where = entity_query.EntityFilter(
        types=[tm.expand(check_name(t, "type")) for t in types] if types else None,
        ids=[check_uri(i, "id") for i in ids] if ids else None,
        id_pattern=id_pattern,
        attrs=[tm.expand(check_name(a, "attribute")) for a in attrs] if attrs else None,
    )
    limit = _int_param(request, "limit", DEFAULT_LIMIT)
    offset = _int_param(request, "offset", 0)
    count = common.flag(request, "count")
    max_page = request.app[SETTINGS].max_page
    if limit > max_page:
        raise TooManyResults(f"limit {limit} exceeds the maximum page size {max_page} (NGSI_MAX_PAGE)")
    if limit == 0 and not count:
        raise BadRequestData("limit=0 is only allowed with count=true")
    tenant = common.tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    found, total = await entity_query.find(pool, tenant, where, limit=limit, offset=offset, count=count)
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
    rendered = [render_entity(e, tm, view) for e in found]
    if media_type == common.GEO_JSON:
        geometry = tm.expand(request.query.get("geometryProperty", "location"))
        collection = {
            "type": "FeatureCollection",
            "features": [to_feature(e, r, geometry) for e, r in zip(found, rendered, strict=True)],
        }
        return common.json_response(
            request, collection, context=context, media_type=media_type, headers=headers
        )
    return common.json_response(request, rendered, context=context, media_type=media_type, headers=headers)
