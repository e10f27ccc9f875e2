"""Batch entity operations under /ngsi-ld/v1/entityOperations/ (clauses 6.14-6.17, 6.31).

Every element is parsed on its own, so one bad entity is reported in the
207 BatchOperationResult (clause 5.2.16) and does not fail the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from broker.api.keys import SETTINGS, WRITER
from broker.api.representation import json_response, no_content, options
from broker.api.request import LD_JSON, link_context, parse_payload, read_json, term_map
from broker.edge import tenant_of
from broker.errors import BadRequestData, InvalidRequest, NgsiLdError
from broker.ingest import Operation, Result
from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextRef
from broker.model import ops
from broker.model.entity import Entity
from broker.model.parse import parse_id_list

routes = web.RouteTableDef()
BASE = "/ngsi-ld/v1/entityOperations/"

Builder = Callable[[Entity], Operation]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _check_size(request: web.Request, size: int) -> None:
    limit = request.app[SETTINGS].max_batch
    if size > limit:
        raise BadRequestData(f"a batch holds at most {limit} entities (NGSI_MAX_BATCH); got {size}")


def _batch_route(name: str) -> Callable[[Handler], Handler]:
    """Register a batch handler with and without the trailing slash FIWARE IoT Agents send."""

    def register(handler: Handler) -> Handler:
        routes.post(BASE + name)(handler)
        routes.post(BASE + name + "/")(handler)
        return handler

    return register


async def _batch_array(request: web.Request) -> list[Any]:
    """The body of a batch operation: a JSON array of one to NGSI_MAX_BATCH elements (clause 6.14.3.1)."""
    data = await read_json(request)
    if not isinstance(data, list):
        raise InvalidRequest("a batch operation's body must be a JSON array")
    if not data:
        raise BadRequestData("a batch operation's array must hold at least one element")
    _check_size(request, len(data))
    return data


Parsed = tuple[list[Entity | None], list[Any], dict[str, TermMap]]


async def _entities(request: web.Request, *, allow_null: bool) -> Parsed:
    """Parse each array element into an Entity, or None with its error kept for the report.

    The @context rules of clause 6.3.5 are applied per element, so an element without @context in
    an application/ld+json batch, one carrying an @context in an application/json batch or one whose
    @context cannot be fetched is reported in the 207 and the others are written (issue 13 item 5).
    A Link header @context is common to every element: if it cannot be fetched the request fails.
    """
    data = await _batch_array(request)
    ld_json = request.content_type == LD_JSON
    link = link_context(request)
    if ld_json and link is not None:
        raise BadRequestData("a JSON-LD Link header is not allowed with Content-Type application/ld+json")
    shared = None if ld_json else await term_map(request, link)
    parsed: list[Entity | None] = []
    problems: list[Any] = []
    maps: dict[str, TermMap] = {}
    for item in data:
        try:
            tm = shared if shared is not None else await term_map(request, _element_context(item))
            if not ld_json and isinstance(item, dict) and "@context" in item:
                raise BadRequestData("an @context in the body needs Content-Type application/ld+json")
            entity = parse_payload(request, item, tm, require_type=False, allow_null=allow_null)
            parsed.append(entity)
            problems.append(None)
            maps[entity.id] = tm
        except NgsiLdError as error:
            parsed.append(None)
            problems.append((item.get("id") if isinstance(item, dict) else None, error))
    return parsed, problems, maps


def _element_context(item: Any) -> ContextRef:
    """The @context of one element of an application/ld+json batch (it must carry one)."""
    if not isinstance(item, dict) or "@context" not in item:
        raise BadRequestData("with Content-Type application/ld+json each entity must carry an @context")
    context: ContextRef = item["@context"]
    return context


async def _run(
    request: web.Request, parsed: list[Entity | None], problems: list[Any], build: Builder, *, creates: bool
) -> tuple[list[Result], list[dict[str, Any]]]:
    operations = [build(entity) for entity in parsed if entity is not None]
    results = await request.app[WRITER].apply(tenant_of(request), operations, may_create_tenant=creates)
    errors = [_error_entry(entity_id, error) for entity_id, error in filter(None, problems)]
    errors += [_error_entry(r.entity_id, r.error) for r in results if r.error is not None]
    return results, errors


def _error_entry(entity_id: Any, error: NgsiLdError) -> dict[str, Any]:
    return {"entityId": entity_id, "error": error.problem()}


def _batch_result(request: web.Request, success: list[str], errors: list[dict[str, Any]]) -> web.Response:
    return json_response(request, {"success": success, "errors": errors}, context=None, status=207)


@_batch_route("create")
async def batch_create(request: web.Request) -> web.Response:
    """5.6.7 Batch Entity Creation: 201 with the ids, or 207 BatchOperationResult."""
    parsed, problems, _ = await _entities(request, allow_null=False)
    for index, entity in enumerate(parsed):
        if entity is not None and not entity.types:
            parsed[index], problems[index] = None, (entity.id, BadRequestData("the entity has no type"))
    results, errors = await _run(
        request,
        parsed,
        problems,
        lambda e: Operation(e.id, lambda cur, now: ops.create(cur, e, now)),
        creates=True,
    )
    created = [r.entity_id for r in results if r.ok]
    if errors:
        return _batch_result(request, created, errors)
    return json_response(request, created, context=None, status=201)


@_batch_route("upsert")
async def batch_upsert(request: web.Request) -> web.Response:
    """5.6.8 Batch Entity Upsert: 201 with created ids, 204 if all existed, 207 on any error.

    options=replace (default) replaces existing entities, options=update appends to them.
    """
    opts = options(request)
    if {"update", "replace"} <= opts:
        raise BadRequestData("options update and replace exclude each other")
    replace_existing = "update" not in opts
    parsed, problems, _ = await _entities(request, allow_null=False)
    results, errors = await _run(
        request,
        parsed,
        problems,
        lambda e: Operation(
            e.id, lambda cur, now: ops.upsert(cur, e, now, replace_existing=replace_existing)
        ),
        creates=True,
    )
    created = list(dict.fromkeys(r.entity_id for r in results if r.outcome is not None and r.outcome.created))
    if errors:
        return _batch_result(request, list(dict.fromkeys(r.entity_id for r in results if r.ok)), errors)
    if created:
        return json_response(request, created, context=None, status=201)
    return no_content(request)


@_batch_route("update")
async def batch_update(request: web.Request) -> web.Response:
    """5.6.9 Batch Entity Update: append-attributes behaviour per entity, options=noOverwrite."""
    no_overwrite = "noOverwrite" in options(request)
    parsed, problems, maps = await _entities(request, allow_null=False)
    results, errors = await _run(
        request,
        parsed,
        problems,
        lambda e: Operation(e.id, lambda cur, now: ops.append(cur, e, now, no_overwrite=no_overwrite)),
        creates=False,
    )
    skipped = {r.entity_id: r for r in results if r.ok and r.outcome is not None and r.outcome.not_updated}
    errors += [_not_updated_entry(result, maps[entity_id]) for entity_id, result in skipped.items()]
    return _all_or_207(request, [r for r in results if r.entity_id not in skipped], errors)


def _not_updated_entry(result: Result, tm: TermMap) -> dict[str, Any]:
    """An entity whose attributes noOverwrite kept: in the errors with the NotUpdatedDetails
    (clause 5.2.19) of what was not written, as an UpdateResult names them."""
    assert result.outcome is not None
    not_updated = [
        {"attributeName": tm.compact(name), "reason": reason} for name, reason in result.outcome.not_updated
    ]
    names = ", ".join(item["attributeName"] for item in not_updated)
    error = BadRequestData(
        f"attributes not updated (noOverwrite): {names}",
        updated=[tm.compact(name) for name in result.outcome.updated],
        notUpdated=not_updated,
    )
    return _error_entry(result.entity_id, error)


@_batch_route("merge")
async def batch_merge(request: web.Request) -> web.Response:
    """5.6.20 Batch Entity Merge: merge-patch per entity; missing entities are errors."""
    parsed, problems, _ = await _entities(request, allow_null=True)
    results, errors = await _run(
        request,
        parsed,
        problems,
        lambda e: Operation(e.id, lambda cur, now: ops.merge(cur, e, now)),
        creates=False,
    )
    return _all_or_207(request, results, errors)


@_batch_route("delete")
async def batch_delete(request: web.Request) -> web.Response:
    """5.6.10 Batch Entity Deletion (HTTP 6.17.3.1): an array of ids, as application/json or
    application/ld+json (ids carry no @context); 204 only if all existed, else 207."""
    ids = parse_id_list(await _batch_array(request))
    operations = [_delete_operation(i) for i in ids]
    results = await request.app[WRITER].apply(tenant_of(request), operations, may_create_tenant=False)
    errors = [_error_entry(r.entity_id, r.error) for r in results if r.error is not None]
    return _all_or_207(request, results, errors)


def _delete_operation(entity_id: str) -> Operation:
    return Operation(entity_id, lambda cur, now: ops.delete(cur, entity_id))


def _all_or_207(request: web.Request, results: list[Result], errors: list[dict[str, Any]]) -> web.Response:
    if errors:
        return _batch_result(request, list(dict.fromkeys(r.entity_id for r in results if r.ok)), errors)
    return no_content(request)
