"""Operator API for history retention: policies per tenant and entity type, and the purge runs.

    GET    /admin/retention                 the tenant's policies and the default
    GET    /admin/retention/{entityType}    one policy
    PUT    /admin/retention/{entityType}    {"keep": "P7D"} (or null: forever); 201 new, 204 replaced
    DELETE /admin/retention/{entityType}    back to the default
    GET    /admin/retention/runs            the latest purge runs (all tenants)
    POST   /admin/retention/runs            run the purge now

The tenant is the NGSILD-Tenant header; entity types are compacted and expanded with the
Link @context like everywhere else. Not part of NGSI-LD (clause 5.5 leaves retention to
the implementation).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.api.keys import POOL, SETTINGS, TENANTS
from broker.api.representation import json_response, no_content
from broker.api.request import link_context, read_body, term_map
from broker.edge import tenant_of
from broker.errors import BadRequestData, ResourceNotFound
from broker.jsonld.context import TermMap
from broker.model.entity import format_time
from broker.model.parse import check_name
from broker.query.duration import format_duration, parse_keep
from broker.store import retention
from broker.temporal import retention as retention_service

routes = web.RouteTableDef()
ADMIN = "/admin/retention"
_RUNS_SHOWN = 50


def _keep_text(keep: Any) -> str | None:
    return None if keep is None else format_duration(keep)


def _run_body(run: retention.Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "startedAt": format_time(run.started_at),
        "finishedAt": format_time(run.finished_at) if run.finished_at else None,
        "partitionsDropped": run.partitions_dropped,
        "rowsDeleted": run.rows_deleted,
        "error": run.error,
    }


@routes.get(ADMIN + "/runs")
async def list_runs(request: web.Request) -> web.Response:
    """The latest purge runs, newest first."""
    found = await retention.runs(request.app[POOL], _RUNS_SHOWN)
    return json_response(request, [_run_body(r) for r in found], context=None)


@routes.post(ADMIN + "/runs")
async def run_now(request: web.Request) -> web.Response:
    """Run the purge now; 409 AlreadyExists when another process is running it."""
    keep = parse_keep(request.app[SETTINGS].history_keep)
    run = await retention_service.purge_now(request.app[POOL], keep)
    return json_response(request, _run_body(run), context=None)


async def _type_of(request: web.Request) -> tuple[str, TermMap]:
    """The entity type in the path, expanded with the request's @context."""
    context = link_context(request)
    tm = await term_map(request, context)
    return tm.expand(check_name(request.match_info["entity_type"], "entity type")), tm


@routes.get(ADMIN)
async def list_policies(request: web.Request) -> web.Response:
    """The tenant's retention policies and the default that applies to other types."""
    context = link_context(request)
    tm = await term_map(request, context)
    found = await retention.policies(request.app[POOL], tenant_of(request))
    body = {
        "default": _keep_text(parse_keep(request.app[SETTINGS].history_keep)),
        "policies": [{"entityType": tm.compact(p.entity_type), "keep": _keep_text(p.keep)} for p in found],
    }
    return json_response(request, body, context=context)


@routes.get(ADMIN + "/{entity_type}")
async def get_policy(request: web.Request) -> web.Response:
    """How long the tenant keeps one entity type's history; 404 when no policy names it."""
    entity_type, tm = await _type_of(request)
    found = await retention.policies(request.app[POOL], tenant_of(request))
    for policy in found:
        if policy.entity_type == entity_type:
            body = {"entityType": tm.compact(entity_type), "keep": _keep_text(policy.keep)}
            return json_response(request, body, context=link_context(request))
    raise ResourceNotFound(f"no retention policy for {request.match_info['entity_type']}")


@routes.put(ADMIN + "/{entity_type}")
async def put_policy(request: web.Request) -> web.Response:
    """Set how long the tenant keeps the history of one entity type."""
    entity_type, _ = await _type_of(request)
    body = await read_body(request)
    if not isinstance(body.data, dict) or "keep" not in body.data:
        raise BadRequestData('the body must be {"keep": "P7D"} (an ISO 8601 duration, or null for forever)')
    raw = body.data["keep"]
    if raw is not None and not isinstance(raw, str):
        raise BadRequestData("keep must be an ISO 8601 duration string or null")
    try:
        keep = parse_keep(raw or "")
    except ValueError as exc:
        raise BadRequestData(f"keep {exc}") from None
    policy = retention.Policy(tenant_of(request), entity_type, keep)
    created = await retention_service.set_policy(request.app[POOL], request.app[TENANTS], policy)
    return no_content(request, 201 if created else 204)


@routes.delete(ADMIN + "/{entity_type}")
async def delete_policy(request: web.Request) -> web.Response:
    """Remove a policy: the type's history then follows the default (NGSI_HISTORY_KEEP)."""
    entity_type, _ = await _type_of(request)
    if not await retention.delete_policy(request.app[POOL], tenant_of(request), entity_type):
        raise ResourceNotFound(f"no retention policy for {request.match_info['entity_type']}")
    return no_content(request)
