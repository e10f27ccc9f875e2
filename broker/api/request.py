"""Reading a request: its JSON body, the @context that applies (clauses 6.3.4, 6.3.5), parameters.

Every JSON body of the HTTP API is read by ``read_json``: media type checked, then
``broker.edge.decode_json`` (NUL refused, parsed, nesting depth limited by NGSI_MAX_JSON_DEPTH).
``read_body`` adds the @context rules of an NGSI-LD payload on top of it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from broker.api.keys import RESOLVER, SETTINGS
from broker.edge import JSON, decode_json, nul_is_kept, tenant_of
from broker.errors import BadRequestData, Handler, UnsupportedMediaType
from broker.jsonld.context import TermMap
from broker.jsonld.resolver import ContextRef, deferring_inline, keep_pending
from broker.model.entity import Entity
from broker.model.parse import check_name, check_uri, parse_entity

LD_JSON = "application/ld+json"
MERGE_PATCH = "application/merge-patch+json"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
_JSON_TYPES = frozenset({JSON, LD_JSON})
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


@web.middleware
async def refuse_nul(request: web.Request, handler: Handler) -> web.StreamResponse:
    """PostgreSQL cannot store or compare U+0000: a NUL in the path or a parameter is a 400
    (but for the device southbound, which dead-letters such a message: broker.edge.keeps_nul)."""
    if nul_is_kept(request):
        return await handler(request)
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise BadRequestData("the request path or a parameter contains a NUL character")
    return await handler(request)


@web.middleware
async def keep_inline_contexts_if_served(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An inline @context is kept (ImplicitlyCreated, clause 5.13.1) only for a request that
    succeeded: a refused one (an error, or a 4xx/5xx answer) changes nothing (issue 11)."""
    async with deferring_inline() as pending:
        response = await handler(request)
    if pending and response.status < 400:
        await keep_pending(pending)
    return response


async def read_json(request: web.Request, media_types: Collection[str] = _JSON_TYPES) -> Any:
    """The request's JSON body, parsed: 415 for another media type, 400 when empty, not JSON,
    holding a NUL or nested deeper than NGSI_MAX_JSON_DEPTH."""
    if request.content_type not in media_types:
        raise UnsupportedMediaType(
            f"Content-Type {request.content_type or '(none)'} is not supported; "
            f"use {' or '.join(sorted(media_types))}"
        )
    return decode_json(await request.read(), request.app[SETTINGS].max_json_depth)


@dataclass(frozen=True, slots=True)
class Body:
    """A parsed request body with the @context that applies to it."""

    data: Any
    context: ContextRef
    media_type: str


async def read_body(request: web.Request, *, allow_merge_patch: bool = False) -> Body:
    """Read an NGSI-LD payload, enforcing the Content-Type and @context rules of 6.3.5."""
    data = await read_json(request, _JSON_TYPES | {MERGE_PATCH} if allow_merge_patch else _JSON_TYPES)
    media_type = request.content_type
    link = link_context(request)
    items = data if isinstance(data, list) else [data]
    if media_type == LD_JSON:
        if link is not None:
            raise BadRequestData("a JSON-LD Link header is not allowed with Content-Type application/ld+json")
        for item in items:
            if not isinstance(item, dict) or "@context" not in item:
                raise BadRequestData("with Content-Type application/ld+json the body must carry an @context")
        context = data.get("@context") if isinstance(data, dict) else None
        return Body(data, context, media_type)
    if any(isinstance(item, dict) and "@context" in item for item in items):
        raise BadRequestData("an @context in the body needs Content-Type application/ld+json")
    return Body(data, link, media_type)


def parse_payload(
    request: web.Request,
    data: Any,
    tm: TermMap,
    *,
    require_id: bool = True,
    require_type: bool = True,
    allow_null: bool = False,
) -> Entity:
    """An entity or fragment of the body, parsed under this broker's limits (NGSI_MAX_INSTANCES)."""
    return parse_entity(
        data,
        tm,
        require_id=require_id,
        require_type=require_type,
        allow_null=allow_null,
        max_instances=request.app[SETTINGS].max_instances,
    )


def link_context(request: web.Request) -> str | None:
    """The URL of the JSON-LD context Link header, if any (clause 6.3.5)."""
    found: list[str] = []
    for header in request.headers.getall("Link", []):
        for match in _LINK.finditer(header):
            params = match.group(2).replace(" ", "")
            if f'rel="{CONTEXT_REL}"' in params or f"rel={CONTEXT_REL}" in params:
                found.append(match.group(1).strip())
    if len(found) > 1:
        raise BadRequestData("more than one JSON-LD context Link header")
    if not found:
        return None
    return check_uri(found[0], "the JSON-LD context Link header URL")


async def term_map(request: web.Request, context: ContextRef) -> TermMap:
    """The compiled @context of the request, resolved within its tenant (hosted contexts are the tenant's)."""
    return await request.app[RESOLVER].term_map(context, tenant=tenant_of(request))


def path_entity_id(request: web.Request) -> str:
    return check_uri(request.match_info["entity_id"], "entity id in the path")


def csv_param(request: web.Request, name: str) -> list[str] | None:
    """A comma-separated list parameter (attrs, id, ...); None when absent, 400 when empty."""
    raw = request.query.get(name)
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise BadRequestData(f"parameter {name} must not be empty")
    return items


def geometry_property(request: web.Request, tm: TermMap) -> str:
    """The GeoProperty a GeoJSON representation takes its geometry from (default location)."""
    return tm.expand(check_name(request.query.get("geometryProperty", "location"), "geometryProperty"))
