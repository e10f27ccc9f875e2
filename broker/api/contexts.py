"""The @context API: /ngsi-ld/v1/jsonldContexts (clause 5.13, HTTP binding 6.29-6.30)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from broker.api import common
from broker.api.keys import CONTEXTS, RESOLVER
from broker.errors import BadRequestData, OperationNotSupported, ResourceNotFound
from broker.jsonld.context import ContextError, context_objects
from broker.store.contexts import StoredContext

routes = web.RouteTableDef()
BASE = "/ngsi-ld/v1/jsonldContexts"
_KINDS = ("Hosted", "Cached", "ImplicitlyCreated")


def _details(context: StoredContext) -> dict[str, Any]:
    details: dict[str, Any] = {
        "URL": context.url,
        "localId": context.id,
        "kind": context.kind,
        "createdAt": context.created_at.isoformat().replace("+00:00", "Z"),
        "numberOfHits": context.hits,
    }
    if context.last_used_at is not None:
        details["lastUsage"] = context.last_used_at.isoformat().replace("+00:00", "Z")
    return details


@routes.post(BASE)
@routes.post(BASE + "/")
async def add_context(request: web.Request) -> web.Response:
    """5.13.2 Add @context: store a client's context (kind Hosted), 201 with its URL in Location."""
    if request.content_type not in (common.JSON, common.LD_JSON):
        raise common.UnsupportedMediaType("Content-Type must be application/json or application/ld+json")
    raw = await request.read()
    try:
        document = orjson.loads(raw)
        context_objects(document)
    except (ValueError, ContextError) as exc:
        raise BadRequestData(f"the body must be a JSON object with an @context member: {exc}") from None
    await request.app[RESOLVER].term_map(document["@context"])  # refuse what cannot be used
    stored = await request.app[CONTEXTS].host(dict(document))
    return common.no_content(request, 201, {"Location": stored.url})


@routes.get(BASE)
@routes.get(BASE + "/")
async def list_contexts(request: web.Request) -> web.Response:
    """5.13.3 List @contexts: URLs, or details with details=true; filter by kind."""
    kind = request.query.get("kind")
    if kind is not None and kind not in _KINDS:
        raise BadRequestData(f"kind must be one of {', '.join(_KINDS)}")
    stored = await request.app[CONTEXTS].list(kind)
    if common.flag(request, "details"):
        body: list[Any] = [_details(c) for c in stored]
    else:
        body = [c.url for c in stored]
    return web.json_response(body, dumps=_dumps)


@routes.get(BASE + "/{context_id}")
async def serve_context(request: web.Request) -> web.Response:
    """5.13.4 Serve @context: the document of a Hosted context, or any context's details."""
    stored = await _find(request)
    if common.flag(request, "details"):
        return web.json_response(_details(stored), dumps=_dumps)
    if stored.kind == "Cached":
        raise OperationNotSupported(
            f"context {stored.id} is a cached copy of {stored.url}; fetch it there or ask details=true"
        )
    return web.json_response(stored.body, content_type=common.LD_JSON, dumps=_dumps)


@routes.delete(BASE + "/{context_id}")
async def delete_context(request: web.Request) -> web.Response:
    """5.13.5 Delete and Reload @context: reload=true re-fetches a Cached context."""
    stored = await _find(request)
    resolver = request.app[RESOLVER]
    if common.flag(request, "reload"):
        if stored.kind != "Cached":
            raise BadRequestData("only a Cached context can be reloaded")
        document = await resolver.refetch(stored.url)
        await request.app[CONTEXTS].replace_body(stored.id, document)
    else:
        await request.app[CONTEXTS].delete(stored.id)
    resolver.forget(stored.url)
    return common.no_content(request)


async def _find(request: web.Request) -> StoredContext:
    key = request.match_info["context_id"]
    stored = await request.app[CONTEXTS].get(key)
    if stored is None:
        raise ResourceNotFound(f"no @context with id or URL {key}")
    return stored


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
