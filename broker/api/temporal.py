"""Temporal evolution of entities: GET /temporal/entities[/{id}], POST /temporal/entityOperations/query.

Clauses 5.7.3 and 5.7.4 (HTTP bindings 6.18.3.2, 6.19.3.1, 6.24.3.1): the same entity
selection as GET /entities, a temporal query (4.11), and one of the representations of
4.5.7-4.5.9 / 4.5.19. With Accept: application/geo+json, one entity's temporal evolution
is answered as a GeoJSON Feature whose geometry is the LineString of its positions (a
snowplow's track of the day in one request).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiohttp import web

from broker.api import visibility
from broker.api.keys import POOL, SETTINGS, TENANTS
from broker.api.paging import page_links, paging
from broker.api.query import order_of, query_from_body, query_from_params, refuse_unbuilt
from broker.api.representation import (
    GEO_JSON,
    accepted,
    chosen,
    json_response,
    nothing_left,
    options,
    project,
    selection_of,
)
from broker.api.request import csv_param, geometry_property, link_context, path_entity_id, read_body, term_map
from broker.edge import tenant_of
from broker.errors import BadRequestData, ResourceNotFound
from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextRef
from broker.model.entity import format_time
from broker.model.parse import check_name
from broker.model.render import FORMS, Form
from broker.query.entity_query import EntityQuery, Selector
from broker.query.order import OrderKey
from broker.query.temporal import Aggregation, TemporalQuery, parse_aggregation, parse_temporal
from broker.store import history_read as read
from broker.temporal import render

routes = web.RouteTableDef()
TEMPORAL = "/ngsi-ld/v1/temporal/entities"


class Shape(Enum):
    NORMALIZED = "normalized"
    CONCISE = "concise"
    TEMPORAL_VALUES = "temporalValues"
    AGGREGATED = "aggregatedValues"


# The forms of clause 4.5 in their temporal shape (6.3.7: for temporal representations,
# keyValues/simplified mean temporalValues), and the two shapes only temporal answers have.
_SHAPES = {
    **{
        name: Shape.TEMPORAL_VALUES if form is Form.SIMPLIFIED else Shape(form.value)
        for name, form in FORMS.items()
    },
    "temporalValues": Shape.TEMPORAL_VALUES,
    "aggregatedValues": Shape.AGGREGATED,
}
_OPTIONS = frozenset({*_SHAPES, "sysAttrs"})


@dataclass(frozen=True, slots=True)
class Ask:
    """What a temporal request wants back: the representation, the instances, the attributes."""

    shape: Shape
    sys_attrs: bool
    lang: str | None
    temporal: TemporalQuery
    aggregation: Aggregation | None
    attrs: tuple[str, ...] | None


def _shape(request: web.Request) -> tuple[Shape, bool]:
    opts = options(request, _OPTIONS)
    return chosen(request, _SHAPES, opts) or Shape.NORMALIZED, "sysAttrs" in opts


def _ask(request: web.Request, tm: TermMap, temporal: dict[str, Any], attrs: list[str] | None) -> Ask:
    shape, sys_attrs = _shape(request)
    aggregation = None
    if shape is Shape.AGGREGATED:
        aggregation = parse_aggregation(
            temporal.get("aggrMethods", request.query.get("aggrMethods")),
            temporal.get("aggrPeriodDuration", request.query.get("aggrPeriodDuration")),
        )
    names = tuple(tm.expand(check_name(a, "attribute name")) for a in attrs) if attrs else None
    return Ask(shape, sys_attrs, request.query.get("lang"), parse_temporal(temporal), aggregation, names)


async def _render(
    request: web.Request, ask: Ask, tm: TermMap, entities: list[tuple[str, list[str]]]
) -> tuple[list[dict[str, Any]], render.Streams, render.Cut | None]:
    """The page's entities in the asked representation, the instances read, where they were cut."""
    pool = request.app[POOL]
    tenant = tenant_of(request)
    ids = [entity_id for entity_id, _ in entities]
    raw_datasets = csv_param(request, "datasetId")
    datasets = frozenset(raw_datasets) if raw_datasets else None
    if ask.aggregation is not None:
        buckets = await read.aggregates(pool, tenant, ids, ask.attrs, ask.temporal, ask.aggregation)
        if datasets is not None:
            buckets = [b for b in buckets if (b.dataset_id or "@none") in datasets]
        return render.aggregated(entities, buckets, ask.aggregation.methods, tm), {}, None
    cap = request.app[SETTINGS].temporal_max_instances
    wanted = ask.temporal.last_n
    per_stream = wanted if wanted is not None and wanted <= cap else cap + 1
    rows = await read.instances(pool, tenant, ids, ask.attrs, ask.temporal, per_stream)
    streams = render.group(rows)
    if datasets is not None:
        # Clause 4.5.5 (datasetId): only the instances of the datasets asked for ("@none": the default).
        render.keep_datasets(streams, datasets)
    cut = render.trim(streams, cap, newest_first=wanted is not None)
    if ask.shape is Shape.TEMPORAL_VALUES:
        return render.temporal_values(entities, streams, tm), streams, cut
    form = Form.CONCISE if ask.shape is Shape.CONCISE else Form.NORMALIZED
    view = render.view_for(form, ask.sys_attrs, ask.lang)
    return render.normalized(entities, streams, tm, view), streams, cut


def _range_headers(ask: Ask, cut: render.Cut | None) -> tuple[int, dict[str, str]]:
    """206 and Content-Range when instances were cut (clause 6.3.10), else 200."""
    if cut is None:
        return 200, {}
    if ask.temporal.last_n is not None:
        # Paging backwards: from the most recent instance returned to the least recent.
        span = f"{format_time(cut.last)}-{format_time(cut.first)}/{ask.temporal.last_n}"
    else:
        start = ask.temporal.time_at if ask.temporal.time_at is not None else cut.first
        span = f"{format_time(start)}-{format_time(cut.last)}/*"
    return 206, {"Content-Range": f"date-time {span}"}


async def _query(
    request: web.Request,
    query: EntityQuery,
    ask: Ask,
    tm: TermMap,
    context: ContextRef,
    media_type: str,
    order: tuple[OrderKey, ...] = (),
    query_body: Any = None,
) -> web.Response:
    if query.is_empty and not ask.attrs:
        raise BadRequestData(
            "give at least one of type, id, idPattern, attrs, q, geoQ or scopeQ (clause 5.7.4)"
        )
    page = paging(request, request.app[SETTINGS].max_page)
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    personal = await visibility.personal_view(request)
    query = personal.exclude(query)
    entities, more, total = await read.page_entities(
        pool,
        tenant,
        query,
        ask.attrs,
        ask.temporal,
        tm,
        limit=page.limit,
        offset=page.offset,
        count=page.count,
        order=order,
    )
    body, _, cut = await _render(request, ask, tm, entities)
    await visibility.audit(request, personal, entities)
    selection = selection_of(request, tm, query_body)
    body = [project(item, selection, tm) for item in body]
    status, headers = _range_headers(ask, cut)
    if total is not None:
        headers["NGSILD-Results-Count"] = str(total)
    links = page_links(request, page, more)
    return json_response(
        request, body, context=context, media_type=media_type, status=status, headers=headers, links=links
    )


@routes.get(TEMPORAL)
@routes.get(TEMPORAL + "/")
async def query_temporal(request: web.Request) -> web.Response:
    """5.7.4 Query Temporal Evolution of Entities (HTTP binding 6.18.3.2); orderBy (4.23) as on /entities."""
    media_type = accepted(request)
    context = link_context(request)
    tm = await term_map(request, context)
    query = query_from_params(request, tm)
    ask = _ask(request, tm, dict(request.query), csv_param(request, "attrs"))
    order = order_of(request, tm)
    return await _query(request, query, ask, tm, context, media_type, order)


@routes.post("/ngsi-ld/v1/temporal/entityOperations/query")
@routes.post("/ngsi-ld/v1/temporal/entityOperations/query/")
async def query_temporal_by_post(request: web.Request) -> web.Response:
    """5.7.4 Query Temporal Evolution of Entities via POST (HTTP binding 6.24.3.1): a Query with temporalQ."""
    media_type = accepted(request)
    body = await read_body(request)
    tm = await term_map(request, body.context)
    query = query_from_body(body.data, tm)
    temporal = body.data.get("temporalQ", {})
    if not isinstance(temporal, dict):
        raise BadRequestData("temporalQ must be a TemporalQuery object")
    attrs = body.data.get("attrs")
    ask = _ask(request, tm, temporal, attrs if isinstance(attrs, list) else None)
    order = order_of(request, tm, body.data)
    return await _query(request, query, ask, tm, body.context, media_type, order, body.data)


@routes.get(TEMPORAL + "/{entity_id}")
async def retrieve_temporal(request: web.Request) -> web.Response:
    """5.7.3 Retrieve Temporal Evolution of an Entity (HTTP binding 6.19.3.1); geo+json gives its track."""
    media_type = accepted(request, geo=True)
    entity_id = path_entity_id(request)
    refuse_unbuilt(request.query)
    context = link_context(request)
    tm = await term_map(request, context)
    ask = _ask(request, tm, dict(request.query), csv_param(request, "attrs"))
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    personal = await visibility.personal_view(request)
    entities, _, _ = await read.page_entities(
        pool,
        tenant,
        personal.exclude(EntityQuery(selectors=(Selector(ids=(entity_id,)),))),
        None,
        TemporalQuery(),
        tm,
        limit=1,
        offset=0,
        count=False,
    )
    if not entities:
        raise ResourceNotFound(f"entity {entity_id} has no temporal evolution here")
    selection = selection_of(request, tm)
    body, streams, cut = await _render(request, ask, tm, entities)
    await visibility.audit(request, personal, entities)
    status, headers = _range_headers(ask, cut)
    answer: dict[str, Any] = project(body[0], selection, tm)
    if nothing_left(answer, answer, selection) and not selection.by_attrs:
        raise ResourceNotFound(f"entity {entity_id}: pick/omit leave nothing of its temporal evolution")
    if media_type == GEO_JSON:
        answer = render.track(answer, streams, entity_id, geometry_property(request, tm))
    return json_response(
        request, answer, context=context, media_type=media_type, status=status, headers=headers
    )
