"""Temporal provision: create, extend and amend the temporal evolution of entities (clauses 5.6.11-5.6.16).

HTTP bindings 6.18.3.1, 6.19.3.2, 6.20.3.1, 6.21.3.1, 6.22.3.1 and 6.22.3.2. These write
the history only: the spec treats the temporal representation as its own resource, so the
current entity (GET /entities) is neither created nor changed here. Instances given here
are stored as sent (observedAt decides which day holds them), with createdAt/modifiedAt set
to the time of the request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from broker.api.keys import POOL, SETTINGS, TENANTS
from broker.api.representation import no_content
from broker.api.request import link_context, path_entity_id, read_body, term_map
from broker.edge import flag, tenant_of
from broker.errors import BadRequestData
from broker.jsonld.context import TermMap
from broker.model import entity as model
from broker.model.entity import Entity, Instance, check_instance_count
from broker.model.ops import stamp
from broker.model.parse import check_name, check_uri, expand_types, parse_instance
from broker.temporal import provision

routes = web.RouteTableDef()
TEMPORAL = "/ngsi-ld/v1/temporal/entities"
ENTITY = TEMPORAL + "/{entity_id}"
ATTRS = ENTITY + "/attrs"
ATTR = ATTRS + "/{attr}"
INSTANCE = ATTR + "/{instance_id}"
_ENTITY_KEYS = frozenset({"id", "@id", "type", "@type", "@context", "scope", "createdAt", "modifiedAt"})


def _instances(attr: str, raw: Any, tm: TermMap, now: str, limit: int) -> list[Instance]:
    """Every instance of one attribute of a temporal entity (an object, or an array of them)."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise BadRequestData(f"attribute {attr} has no instances")
    check_instance_count(attr, len(items), limit)
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise BadRequestData(f"attribute {attr}: each temporal instance must be a JSON object")
        out.append(stamp(parse_instance(attr, item, tm), now))
    return out


def _temporal_fragment(body: Any, tm: TermMap, now: str, *, whole: bool, limit: int) -> Entity:
    """A temporal entity (whole: with id and type) or a fragment of its attributes, parsed."""
    if not isinstance(body, dict):
        raise BadRequestData("a temporal entity must be a JSON object")
    entity = Entity(id="")
    if whole:
        entity.id = check_uri(body.get("id", body.get("@id")), "entity id")
        raw_type = body.get("type", body.get("@type"))
        if raw_type is None:
            raise BadRequestData("the temporal entity has no type")
        entity.types = expand_types(raw_type, tm)
    for name, raw in body.items():
        if name in _ENTITY_KEYS:
            continue
        iri = tm.expand(check_name(name, "attribute name"))
        entity.attrs[iri] = _instances(iri, raw, tm, now, limit)
    return entity


@routes.post(TEMPORAL)
@routes.post(TEMPORAL + "/")
async def create_temporal(request: web.Request) -> web.Response:
    """5.6.11 Create or Update Temporal Evolution of an Entity (HTTP binding 6.18.3.1): 201 new, 204 added."""
    body = await read_body(request)
    tm = await term_map(request, body.context)
    now = model.now()
    entity = _temporal_fragment(body.data, tm, now, whole=True, limit=request.app[SETTINGS].max_instances)
    created = await provision.append(
        request.app[POOL], request.app[TENANTS], tenant_of(request), entity, now, creates=True
    )
    if created:
        return no_content(request, 201, {"Location": f"{TEMPORAL}/{quote(entity.id, safe=':')}"})
    return no_content(request)


@routes.post(ATTRS)
@routes.post(ATTRS + "/")
async def add_temporal_attributes(request: web.Request) -> web.Response:
    """5.6.12 Add Attributes to Temporal Evolution of an Entity (HTTP binding 6.20.3.1): 204."""
    entity_id = path_entity_id(request)
    body = await read_body(request)
    tm = await term_map(request, body.context)
    now = model.now()
    fragment = _temporal_fragment(body.data, tm, now, whole=False, limit=request.app[SETTINGS].max_instances)
    fragment.id = entity_id
    if not fragment.attrs:
        raise BadRequestData("the body has no attributes to add")
    await provision.append(
        request.app[POOL], request.app[TENANTS], tenant_of(request), fragment, now, creates=False
    )
    return no_content(request)


@routes.delete(ENTITY)
async def delete_temporal(request: web.Request) -> web.Response:
    """5.6.16 Delete Temporal Evolution of an Entity (HTTP binding 6.19.3.2): 204, 404 if unknown."""
    entity_id = path_entity_id(request)
    await provision.delete_entity(request.app[POOL], request.app[TENANTS], tenant_of(request), entity_id)
    return no_content(request)


async def _attr_name(request: web.Request) -> str:
    tm = await term_map(request, link_context(request))
    return tm.expand(check_name(request.match_info["attr"], "attribute name"))


@routes.delete(ATTR)
async def delete_temporal_attribute(request: web.Request) -> web.Response:
    """5.6.13 Delete Attribute from Temporal Evolution (HTTP binding 6.21.3.1): deleteAll, datasetId."""
    entity_id = path_entity_id(request)
    attr = await _attr_name(request)
    delete_all = flag(request, "deleteAll")
    raw_dataset = request.query.get("datasetId")
    if delete_all and raw_dataset is not None:
        raise BadRequestData("deleteAll and datasetId cannot be combined")
    datasets = None if delete_all else [check_uri(raw_dataset, "datasetId") if raw_dataset else ""]
    await provision.delete_attribute(
        request.app[POOL], request.app[TENANTS], tenant_of(request), entity_id, attr, datasets
    )
    return no_content(request)


def _instance_uri(request: web.Request) -> str:
    return check_uri(request.match_info["instance_id"], "instanceId")


@routes.patch(INSTANCE)
async def modify_instance(request: web.Request) -> web.Response:
    """5.6.14 Modify Attribute Instance in Temporal Evolution (HTTP binding 6.22.3.1): 204, 404."""
    entity_id = path_entity_id(request)
    instance_uri = _instance_uri(request)
    body = await read_body(request)
    tm = await term_map(request, body.context)
    attr = tm.expand(check_name(request.match_info["attr"], "attribute name"))
    if not isinstance(body.data, dict):
        raise BadRequestData("the body must be a fragment holding the attribute instance")
    raw = next((v for k, v in body.data.items() if k not in _ENTITY_KEYS and tm.expand(k) == attr), None)
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if not isinstance(raw, dict):
        raise BadRequestData(f"the body must hold one instance of {request.match_info['attr']}")
    now = model.now()
    patch = parse_instance(attr, raw, tm)
    await provision.modify_instance(
        request.app[POOL], request.app[TENANTS], tenant_of(request), entity_id, attr, instance_uri, patch, now
    )
    return no_content(request)


@routes.delete(INSTANCE)
async def delete_instance(request: web.Request) -> web.Response:
    """5.6.15 Delete Attribute Instance from Temporal Evolution (HTTP binding 6.22.3.2): 204, 404."""
    entity_id = path_entity_id(request)
    instance_uri = _instance_uri(request)
    attr = await _attr_name(request)
    await provision.delete_instance(
        request.app[POOL], request.app[TENANTS], tenant_of(request), entity_id, attr, instance_uri
    )
    return no_content(request)
