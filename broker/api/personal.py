"""Personal entity types and the audit log of their reads over HTTP (issue 12 item 4): a tenant's
admins manage them.

    PUT    /admin/personal/{entityType}  mark a type as personal (a term of the Link @context, or
                                         an IRI); 201 when new, 204 when it already was
    DELETE /admin/personal/{entityType}  no longer personal; 204 (404 when it was not)
    GET    /admin/personal               the tenant's personal types
    GET    /admin/audit?since=&until=&subject=&entity=&limit=&offset=
                                         the tenant's audit rows, newest first

Personal types are never visible through a grant or open data, are readable only by credentials
holding the ``personal`` permission (operators, or a key with roles [reader, personal]), and every
read of them is written to the audit log. Not part of NGSI-LD.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from broker.api.keys import PERSONAL
from broker.api.request import link_context, term_map
from broker.edge import json_reply, tenant_of
from broker.errors import BadRequestData, ResourceNotFound
from broker.model.entity import format_time
from broker.model.parse import check_name
from broker.store.personal import AuditFilter, AuditRow

routes = web.RouteTableDef()
TYPES = "/admin/personal"
AUDIT = "/admin/audit"
_MAX_LIMIT = 1000


async def _type_of(request: web.Request) -> str:
    tm = await term_map(request, link_context(request))
    return tm.expand(check_name(request.match_info["entity_type"], "entity type"))


@routes.put(TYPES + "/{entity_type}")
async def mark_personal(request: web.Request) -> web.Response:
    entity_type = await _type_of(request)
    created = await request.app[PERSONAL].mark(tenant_of(request), entity_type)
    return web.Response(status=201 if created else 204)


@routes.delete(TYPES + "/{entity_type}")
async def unmark_personal(request: web.Request) -> web.Response:
    entity_type = await _type_of(request)
    if not await request.app[PERSONAL].unmark(tenant_of(request), entity_type):
        raise ResourceNotFound(f"{request.match_info['entity_type']} is not a personal type here")
    return web.Response(status=204)


@routes.get(TYPES)
async def list_personal(request: web.Request) -> web.Response:
    tm = await term_map(request, link_context(request))
    found = await request.app[PERSONAL].types(tenant_of(request))
    return json_reply(sorted(tm.compact(t) for t in found))


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequestData(f"{name} must be a date-time such as 2026-12-01T00:00:00Z") from None
    if value.tzinfo is None:
        raise BadRequestData(f"{name} must name its time zone (e.g. Z)")
    return value


def _count(request: web.Request, name: str, default: int, most: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= most:
        raise BadRequestData(f"{name} must be a whole number from 0 to {most}")
    return int(raw)


def audit_json(row: AuditRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "at": format_time(row.at),
        "subject": row.subject,
        "kind": row.kind,
        "route": row.route,
        "entityIds": list(row.entity_ids),
        "count": row.count,
    }


@routes.get(AUDIT)
async def list_audit(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - {"since", "until", "subject", "entity", "limit", "offset"})
    if unknown:
        raise BadRequestData(f"unknown parameter(s) {', '.join(unknown)}")
    where = AuditFilter(
        since=_time(request, "since"),
        until=_time(request, "until"),
        subject=request.query.get("subject"),
        entity=request.query.get("entity"),
        limit=_count(request, "limit", 100, _MAX_LIMIT),
        offset=_count(request, "offset", 0, 10**9),
    )
    rows = await request.app[PERSONAL].audit_log(tenant_of(request), where)
    return json_reply([audit_json(row) for row in rows])
