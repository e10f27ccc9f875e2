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
from broker.api.request import LD_JSON, parse_payload, read_body, term_map
from broker.edge import tenant_of
from broker.errors import BadRequestData, InvalidRequest, NgsiLdError
from broker.ingest import Operation, Result
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


async def _entities(request: web.Request, *, allow_null: bool) -> tuple[list[Entity | None], list[Any]]:
    """Parse each array element into an Entity, or None with its error kept for the report."""
    body = await read_body(request)
    if not isinstance(body.data, list):
        raise InvalidRequest("a batch operation's body must be a JSON array")
    _check_size(request, len(body.data))
    parsed: list[Entity | None] = []
    problems: list[Any] = []
    for item in body.data:
        context = item.get("@context") if body.media_type == LD_JSON else body.context
        # A context that cannot be fetched fails the request (503), not one entity.
        tm = await term_map(request, context)
        try:
            parsed.append(parse_payload(request, item, tm, require_type=False, allow_null=allow_null))
            problems.append(None)
        except NgsiLdError as error:
            parsed.append(None)
            problems.append((item.get("id") if isinstance(item, dict) else None, error))
    return parsed, problems


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
    parsed, problems = await _entities(request, allow_null=False)
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
    parsed, problems = await _entities(request, allow_null=False)
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
    parsed, problems = await _entities(request, allow_null=False)
    results, errors = await _run(
        request,
        parsed,
        problems,
        lambda e: Operation(e.id, lambda cur, now: ops.append(cur, e, now, no_overwrite=no_overwrite)),
        creates=False,
    )
    return _all_or_207(request, results, errors)


@_batch_route("merge")
async def batch_merge(request: web.Request) -> web.Response:
    """5.6.20 Batch Entity Merge: merge-patch per entity; missing entities are errors."""
    parsed, problems = await _entities(request, allow_null=True)
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
    """5.6.10 Batch Entity Deletion: body is an array of ids; 204 only if all existed."""
    body = await read_body(request)
    ids = parse_id_list(body.data)
    _check_size(request, len(ids))
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
