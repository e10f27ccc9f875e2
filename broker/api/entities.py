"""Entities and their attributes: /ngsi-ld/v1/entities[/{entityId}[/attrs[/{attrId}]]] (clauses 6.4-6.7)."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from broker.api import visibility
from broker.api.join import flat, inline, join_of, read_linked
from broker.api.keys import POOL, TENANTS, WRITER
from broker.api.query import refuse_unbuilt
from broker.api.representation import (
    GEO_JSON,
    accepted,
    json_response,
    no_content,
    nothing_left,
    options,
    selection_of,
    view_of,
)
from broker.api.request import (
    geometry_property,
    link_context,
    parse_payload,
    path_entity_id,
    read_body,
    term_map,
)
from broker.edge import flag, tenant_of
from broker.errors import BadRequestData, ResourceNotFound
from broker.ingest import Apply, Operation, Result
from broker.jsonld.context import TermMap
from broker.model import ops
from broker.model.entity import NGSI_LD, Instance
from broker.model.parse import check_name, check_time, check_uri, parse_fragment, parse_instance
from broker.model.render import render_entity, to_feature
from broker.store import entities as entity_rows

routes = web.RouteTableDef()
ENTITIES = "/ngsi-ld/v1/entities"
ENTITY = ENTITIES + "/{entity_id}"
ATTRS = ENTITY + "/attrs"
ATTR = ATTRS + "/{attr}"
SCOPE = NGSI_LD + "scope"


async def _apply_one(request: web.Request, entity_id: str, apply: Apply, *, creates: bool = False) -> Result:
    """Run one operation through the write path; raise its error if it failed."""
    writer = request.app[WRITER]
    [result] = await writer.apply(
        tenant_of(request), [Operation(entity_id, apply)], may_create_tenant=creates
    )
    if result.error is not None:
        raise result.error
    return result


def _update_result(request: web.Request, result: Result, tm: TermMap) -> web.Response:
    """204 when every attribute was written, else 207 with an UpdateResult (clause 5.2.18)."""
    assert result.outcome is not None
    if not result.outcome.not_updated:
        return no_content(request)
    body = {
        "updated": [tm.compact(name) for name in result.outcome.updated],
        "notUpdated": [
            {"attributeName": tm.compact(name), "reason": reason}
            for name, reason in result.outcome.not_updated
        ],
    }
    return json_response(request, body, context=None, status=207)


@routes.post(ENTITIES)
@routes.post(ENTITIES + "/")
async def create_entity(request: web.Request) -> web.Response:
    """5.6.1 Create Entity (HTTP binding 6.4.3.1): 201 with Location, 409 if the id exists."""
    body = await read_body(request)
    tm = await term_map(request, body.context)
    entity = parse_payload(request, body.data, tm)
    await _apply_one(request, entity.id, lambda cur, now: ops.create(cur, entity, now), creates=True)
    return no_content(request, 201, {"Location": f"{ENTITIES}/{quote(entity.id, safe=':')}"})


@routes.get(ENTITY)
async def retrieve_entity(request: web.Request) -> web.Response:
    """5.7.1 Retrieve Entity (HTTP binding 6.5.3.1): attrs/pick/omit, options, format, lang, GeoJSON;
    join=inline|flat with joinLevel (4.5.23)."""
    entity_id = path_entity_id(request)
    refuse_unbuilt(request.query)
    media_type = accepted(request, geo=True)
    context = link_context(request)
    tm = await term_map(request, context)
    view = view_of(request, tm)
    tenant = tenant_of(request)
    pool = request.app[POOL]
    await request.app[TENANTS].require(pool, tenant)
    found = await entity_rows.fetch_one(pool, tenant, entity_id)
    # Through a sharing grant an entity of a type not granted does not exist.
    entity = None if found is None else visibility.trim(request, found)
    personal = await visibility.personal_view(request)
    if entity is None or personal.hides(entity.types):
        raise ResourceNotFound(f"entity {entity_id} does not exist")
    wanted_type = request.query.get("type")
    if wanted_type is not None and tm.expand(check_name(wanted_type, "type")) not in entity.types:
        raise ResourceNotFound(f"entity {entity_id} is not of type {wanted_type}")
    join = join_of(request)
    visibility.refuse_join(request, join)
    rendered = render_entity(entity, tm, view)
    if nothing_left(entity.attrs, rendered, selection_of(request, tm)):
        raise ResourceNotFound(f"entity {entity_id} has none of the attributes asked for")
    await visibility.audit(request, personal, [(entity.id, entity.types)])
    if media_type == GEO_JSON:
        feature = to_feature(entity, rendered, geometry_property(request, tm))
        return json_response(request, feature, context=context, media_type=GEO_JSON)
    if join is not None:
        linked = await read_linked(request, [entity], join.level)
        if join.mode == "flat":
            answer = flat([rendered], linked, tm, view)
            return json_response(request, answer, context=context, media_type=media_type)
        rendered = inline(entity, rendered, tm, view, linked, join.level)
    return json_response(request, rendered, context=context, media_type=media_type)


@routes.put(ENTITY)
async def replace_entity(request: web.Request) -> web.Response:
    """5.6.18 Replace Entity (HTTP binding 6.5.3.3)."""
    entity_id = path_entity_id(request)
    body = await read_body(request)
    tm = await term_map(request, body.context)
    entity = parse_payload(request, body.data, tm, require_id=False)
    entity.id = entity.id or entity_id
    if entity.id != entity_id:
        raise BadRequestData(f"the payload's id {entity.id} differs from the path's {entity_id}")
    await _apply_one(request, entity_id, lambda cur, now: ops.replace(cur, entity, now))
    return no_content(request)


@routes.patch(ENTITY)
async def merge_entity(request: web.Request) -> web.Response:
    """5.6.17 Merge Entity (HTTP binding 6.5.3.4): merge-patch, urn:ngsi-ld:null deletes."""
    entity_id = path_entity_id(request)
    body = await read_body(request, allow_merge_patch=True)
    tm = await term_map(request, body.context)
    fragment = parse_payload(request, body.data, tm, require_id=False, require_type=False, allow_null=True)
    observed_at = _observed_at_param(request)
    await _apply_one(
        request, entity_id, lambda cur, now: ops.merge(cur, fragment, now, observed_at=observed_at)
    )
    return no_content(request)


def _observed_at_param(request: web.Request) -> str | None:
    raw = request.query.get("observedAt")
    return None if raw is None else check_time(raw, "parameter observedAt")


@routes.delete(ENTITY)
async def delete_entity(request: web.Request) -> web.Response:
    """5.6.6 Delete Entity (HTTP binding 6.5.3.2)."""
    entity_id = path_entity_id(request)
    await _apply_one(request, entity_id, lambda cur, now: ops.delete(cur, entity_id))
    return no_content(request)


@routes.post(ATTRS)
@routes.post(ATTRS + "/")
async def append_attributes(request: web.Request) -> web.Response:
    """5.6.3 Append Entity Attributes (HTTP binding 6.6.3.1); 207 lists what noOverwrite skipped."""
    entity_id = path_entity_id(request)
    no_overwrite = "noOverwrite" in options(request)
    body = await read_body(request)
    tm = await term_map(request, body.context)
    fragment = parse_payload(request, body.data, tm, require_id=False, require_type=False)
    result = await _apply_one(
        request, entity_id, lambda cur, now: ops.append(cur, fragment, now, no_overwrite=no_overwrite)
    )
    return _update_result(request, result, tm)


@routes.patch(ATTRS)
@routes.patch(ATTRS + "/")
async def update_attributes(request: web.Request) -> web.Response:
    """5.6.2 Update Attributes (HTTP binding 6.6.3.2): existing attributes only, 207 lists the rest
    (a scope where the entity has none); types given are added."""
    entity_id = path_entity_id(request)
    body = await read_body(request, allow_merge_patch=True)
    tm = await term_map(request, body.context)
    fragment = parse_payload(request, body.data, tm, require_id=False, require_type=False, allow_null=True)
    result = await _apply_one(request, entity_id, lambda cur, now: ops.update_attributes(cur, fragment, now))
    return _update_result(request, result, tm)


async def _attribute_input(request: web.Request, *, partial: bool) -> tuple[str, str, Instance]:
    entity_id = path_entity_id(request)
    body = await read_body(request, allow_merge_patch=partial)
    tm = await term_map(request, body.context)
    name = _path_attribute(request, tm)
    if name == SCOPE:
        raise BadRequestData("scope is an entity member, not an attribute: update it with PATCH /attrs")
    data = body.data
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "@context"}
    if partial:
        return entity_id, name, parse_fragment(name, data, tm)
    return entity_id, name, parse_instance(name, data, tm)


def _path_attribute(request: web.Request, tm: TermMap) -> str:
    """The attribute named in the path, expanded; 400 for a name no attribute can have."""
    return tm.expand(check_name(request.match_info["attr"], "attribute name in the path"))


@routes.patch(ATTR)
async def partial_attribute_update(request: web.Request) -> web.Response:
    """5.6.4 Partial Attribute Update (HTTP binding 6.7.3.1): a fragment of the attribute; NGSI-LD Null
    as its value removes the instance; another attribute type is 400."""
    entity_id, name, patch = await _attribute_input(request, partial=True)
    await _apply_one(
        request, entity_id, lambda cur, now: ops.partial_update(cur, entity_id, name, patch, now)
    )
    return no_content(request)


@routes.put(ATTR)
async def replace_attribute(request: web.Request) -> web.Response:
    """5.6.19 Replace Attribute (HTTP binding 6.7.3.3); scope is no attribute (400)."""
    entity_id, name, new = await _attribute_input(request, partial=False)
    await _apply_one(
        request, entity_id, lambda cur, now: ops.replace_attribute(cur, entity_id, name, new, now)
    )
    return no_content(request)


@routes.delete(ATTR)
async def delete_attribute(request: web.Request) -> web.Response:
    """5.6.5 Delete Attribute (HTTP binding 6.7.3.2): default instance, ?datasetId=, or ?deleteAll=true;
    /attrs/scope removes the entity's scope (clause 4.18)."""
    entity_id = path_entity_id(request)
    tm = await term_map(request, link_context(request))
    name = _path_attribute(request, tm)
    if name == SCOPE:
        await _apply_one(request, entity_id, lambda cur, now: ops.delete_scope(cur, entity_id, now))
        return no_content(request)
    delete_all = flag(request, "deleteAll")
    raw_dataset = request.query.get("datasetId")
    dataset = None if raw_dataset is None else check_uri(raw_dataset, "datasetId")
    if delete_all and dataset is not None:
        raise BadRequestData("datasetId and deleteAll=true cannot be combined")
    await _apply_one(
        request,
        entity_id,
        lambda cur, now: ops.delete_attribute(
            cur, entity_id, name, now, dataset=dataset, delete_all=delete_all
        ),
    )
    return no_content(request)
