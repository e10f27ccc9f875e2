"""Query Entities: GET /ngsi-ld/v1/entities and POST /ngsi-ld/v1/entityOperations/query (clause 5.7.2).

Both build an EntityQuery (selection) and a View (representation), then share
paging (limit/offset, Link rel=next/prev, clause 6.3.10), counting
(NGSILD-Results-Count, 6.3.13) and rendering (normalized, concise, simplified,
GeoJSON FeatureCollection).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from broker.api import visibility
from broker.api.join import Join, flat, inline, join_of, read_linked
from broker.api.keys import POOL, SETTINGS, TENANTS, WRITER
from broker.api.paging import page_links, paging
from broker.api.representation import GEO_JSON, accepted, json_response, no_content, selection_of, view_of
from broker.api.request import csv_param, geometry_property, link_context, read_body, term_map
from broker.edge import flag, tenant_of
from broker.errors import BadRequestData, NotImplementedYet, TooManyResults
from broker.ingest import Operation
from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextRef
from broker.model import ops
from broker.model.entity import LOCATION
from broker.model.parse import check_name, check_uri
from broker.model.render import View, render_entity, to_feature
from broker.query.entity_query import EntityQuery, Selector
from broker.query.geo import parse_geo_query
from broker.query.order import DEFAULT_COLLATION, OrderKey, parse_order_by
from broker.query.qlang import parse_q
from broker.query.qregex import translate_regex
from broker.query.scope import parse_scope_q
from broker.query.types import parse_type_expr
from broker.store import query as entity_query

routes = web.RouteTableDef()
_FEDERATION = ("csf",)
# expandValues (JSON-LD coercion of q values) is not built; jsonKeys needs nothing here, since
# values are never expanded.
_LATER = ("entityMap", "containedBy", "expandValues")


def refuse_unbuilt(names: Any) -> None:
    """501 for the parameters this broker does not honour yet, rather than ignoring them silently."""
    later = [name for name in (*_FEDERATION, *_LATER) if name in names]
    if later:
        raise NotImplementedYet(f"{', '.join(later)} not implemented by this broker yet")


def _attrs(names: list[str] | None, tm: TermMap) -> tuple[str, ...] | None:
    return tuple(tm.expand(check_name(a, "attribute name")) for a in names) if names else None


def id_pattern(raw: str | None) -> str | None:
    """An idPattern checked like q's regular expressions (length, nested repetition), for PostgreSQL."""
    if raw is None:
        return None
    try:
        regex = translate_regex(raw)
    except ValueError as exc:
        raise BadRequestData(f"idPattern is not a supported regular expression: {exc}") from None
    return ("(?i)" if regex.ignore_case else "") + regex.postgres


def _geoproperty(raw: str | None, tm: TermMap) -> str:
    return tm.expand(check_name(raw, "geoproperty")) if raw else LOCATION


def query_from_params(request: web.Request, tm: TermMap) -> EntityQuery:
    """The EntityQuery of GET /entities' parameters."""
    refuse_unbuilt(request.query)
    types = request.query.get("type")
    ids = csv_param(request, "id")
    pattern = id_pattern(request.query.get("idPattern"))
    selector = Selector(
        ids=tuple(check_uri(i, "id") for i in ids) if ids else None,
        id_pattern=pattern,
        types=parse_type_expr(types, tm) if types is not None else None,
    )
    q = request.query.get("q")
    scope = request.query.get("scopeQ")
    return EntityQuery(
        selectors=(selector,) if (ids or pattern or types is not None) else (),
        # attrs selects entities having one of them (and projects); pick only projects.
        attrs=_attrs(csv_param(request, "attrs"), tm),
        q=parse_q(q) if q is not None else None,
        geo=parse_geo_query(
            request.query.get("georel"),
            request.query.get("geometry"),
            request.query.get("coordinates"),
            request.query.get("geoproperty"),
        ),
        geoproperty=_geoproperty(request.query.get("geoproperty"), tm),
        scope=parse_scope_q(scope) if scope is not None else None,
    )


def query_from_body(body: Any, tm: TermMap) -> EntityQuery:
    """The EntityQuery of a Query object (clause 5.2.23) posted to entityOperations/query."""
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequestData('the body must be a Query object with "type": "Query"')
    refuse_unbuilt(body)
    selectors = tuple(_selector(item, tm) for item in _list(body.get("entities", []), "entities"))
    geo_q = body.get("geoQ")
    if geo_q is not None and not isinstance(geo_q, dict):
        raise BadRequestData("geoQ must be an object with georel, geometry and coordinates")
    geo_q = geo_q or {}
    coordinates = geo_q.get("coordinates")
    if coordinates is not None and not isinstance(coordinates, str):
        coordinates = orjson.dumps(coordinates).decode()
    q, scope = body.get("q"), body.get("scopeQ")
    return EntityQuery(
        selectors=selectors,
        attrs=_attrs(_list(body.get("attrs"), "attrs") if "attrs" in body else None, tm),
        q=parse_q(_text(q, "q")) if q is not None else None,
        geo=parse_geo_query(
            _optional_text(geo_q, "georel"),
            _optional_text(geo_q, "geometry"),
            coordinates,
            _optional_text(geo_q, "geoproperty"),
        ),
        geoproperty=_geoproperty(_optional_text(geo_q, "geoproperty"), tm),
        scope=parse_scope_q(_text(scope, "scopeQ")) if scope is not None else None,
    )


def _selector(item: Any, tm: TermMap) -> Selector:
    if not isinstance(item, dict):
        raise BadRequestData("each entry of entities must be an EntitySelector object")
    entity_id, pattern, types = item.get("id"), item.get("idPattern"), item.get("type")
    return Selector(
        ids=(check_uri(entity_id, "id"),) if entity_id is not None else None,
        id_pattern=id_pattern(_text(pattern, "idPattern")) if pattern is not None else None,
        types=parse_type_expr(_text(types, "type"), tm) if types is not None else None,
    )


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequestData(f"{what} must be an array")
    return value


def _optional_text(container: dict[str, Any], key: str) -> str | None:
    value = container.get(key)
    return None if value is None else _text(value, key)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequestData(f"{what} must be a string")
    return value


def order_of(request: web.Request, tm: TermMap, body: Any = None) -> tuple[OrderKey, ...]:
    """The ordering (clause 4.23) of the URL, or of a Query object's ``ordering`` (5.2.43)."""
    source: Any = request.query
    if isinstance(body, dict) and isinstance(body.get("ordering"), dict):
        source = body["ordering"]
    elif isinstance(body, dict) and "orderBy" in body:
        source = body
    raw = source.get("orderBy")
    if raw is None:
        return ()
    collation = source.get("collation")
    if collation is not None and collation != DEFAULT_COLLATION:
        raise NotImplementedYet(f"collation {collation!r}: only {DEFAULT_COLLATION} is offered")
    origin = source.get("orderFrom")
    if origin is not None and not isinstance(origin, str):
        origin = orjson.dumps(origin).decode()
    geometry = source.get("orderGeometry")
    return parse_order_by(
        _text(raw, "orderBy"), tm, origin, None if geometry is None else _text(geometry, "orderGeometry")
    )


async def _answer(
    request: web.Request,
    query: EntityQuery,
    tm: TermMap,
    view: View,
    context: ContextRef,
    media_type: str,
    order: tuple[OrderKey, ...] = (),
    join: Join | None = None,
) -> web.Response:
    if query.is_empty and not flag(request, "local"):
        raise BadRequestData(
            "give at least one of type, id, idPattern, attrs, q, geoQ or scopeQ (clause 5.7.2)"
        )
    query = visibility.restrict(request, query, tm, order)
    visibility.refuse_join(request, join)
    personal = await visibility.personal_view(request)
    query = personal.exclude(query)
    page = paging(request, request.app[SETTINGS].max_page)
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    found, more, total = await entity_query.find(
        pool, tenant, query, tm, limit=page.limit, offset=page.offset, count=page.count, order=order
    )
    found = [seen for seen in (visibility.trim(request, e) for e in found) if seen is not None]
    await visibility.audit(request, personal, ((e.id, e.types) for e in found))
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
    links = page_links(request, page, more)
    rendered = [render_entity(e, tm, view) for e in found]
    if join is not None and media_type != GEO_JSON:
        linked = await read_linked(request, found, join.level)
        if join.mode == "flat":
            rendered = flat(rendered, linked, tm, view)
        else:
            rendered = [
                inline(e, r, tm, view, linked, join.level) for e, r in zip(found, rendered, strict=True)
            ]
    if media_type == GEO_JSON:
        geometry = geometry_property(request, tm)
        collection = {
            "type": "FeatureCollection",
            "features": [to_feature(e, r, geometry) for e, r in zip(found, rendered, strict=True)],
        }
        return json_response(
            request, collection, context=context, media_type=media_type, headers=headers, links=links
        )
    return json_response(
        request, rendered, context=context, media_type=media_type, headers=headers, links=links
    )


@routes.get("/ngsi-ld/v1/entities")
@routes.get("/ngsi-ld/v1/entities/")
async def query_entities(request: web.Request) -> web.Response:
    """5.7.2 Query Entities (HTTP binding 6.4.3.2): type, id, idPattern, attrs, q, geo, scopeQ, paging;
    join/joinLevel (4.5.23); orderBy (4.23)."""
    media_type = accepted(request, geo=True)
    context = link_context(request)
    tm = await term_map(request, context)
    view = view_of(request, tm)
    order = order_of(request, tm)
    query = query_from_params(request, tm)
    return await _answer(request, query, tm, view, context, media_type, order, join_of(request))


@routes.post("/ngsi-ld/v1/entityOperations/query")
@routes.post("/ngsi-ld/v1/entityOperations/query/")
async def query_entities_by_post(request: web.Request) -> web.Response:
    """5.7.2 Query Entities via POST (HTTP binding 6.23.3.1): a Query object; paging in the URL."""
    media_type = accepted(request, geo=True)
    body = await read_body(request)
    tm = await term_map(request, body.context)
    view = view_of(request, tm)
    query = query_from_body(body.data, tm)
    lang = body.data.get("lang")
    pick = view.pick
    if query.attrs and pick is None:
        pick = frozenset(query.attrs) | {"id", "type", "scope"}
    view = replace(view, pick=pick, lang=lang if isinstance(lang, str) else view.lang)
    if "pick" in body.data or "omit" in body.data:
        picked = selection_of(request, tm, body.data)
        view = replace(
            view, pick=picked.pick, omit=picked.omit, sub_pick=picked.sub_pick, sub_omit=picked.sub_omit
        )
    order = order_of(request, tm, body.data)
    join = join_of(request, body.data)
    return await _answer(request, query, tm, view, body.context, media_type, order, join)


@routes.delete("/ngsi-ld/v1/entities")
@routes.delete("/ngsi-ld/v1/entities/")
async def purge_entities(request: web.Request) -> web.Response:
    """5.6.21 Purge Entities (HTTP binding 6.4.3.3): delete every entity a query selects, through the
    write path (history and entityDeleted notifications as for Delete Entity); 204.

    At least one restriction is required (no accidental purge of a tenant), and at most
    NGSI_MAX_PURGE entities: a purge selecting more answers 403 TooManyResults and deletes nothing.
    """
    tm = await term_map(request, link_context(request))
    query = query_from_params(request, tm)
    if query.is_empty:
        raise BadRequestData("a purge needs at least one of type, id, idPattern, attrs, q, geoQ or scopeQ")
    settings = request.app[SETTINGS]
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    ids = await entity_query.find_ids(pool, tenant, query, tm, limit=settings.max_purge + 1)
    if len(ids) > settings.max_purge:
        raise TooManyResults(
            f"the purge selects more than {settings.max_purge} entities (NGSI_MAX_PURGE); narrow it down"
        )
    writer = request.app[WRITER]
    for start in range(0, len(ids), settings.max_batch):
        chunk = ids[start : start + settings.max_batch]
        # An entity deleted meanwhile by another request is gone either way: its error is not reported.
        await writer.apply(tenant, [_purge_one(i) for i in chunk], may_create_tenant=False)
    return no_content(request)


def _purge_one(entity_id: str) -> Operation:
    return Operation(entity_id, lambda cur, now: ops.delete(cur, entity_id))
