"""The @context API: /ngsi-ld/v1/jsonldContexts (clause 5.13, HTTP binding 6.29-6.30).

Each tenant has its own @contexts: the ones it hosted, the remote ones it used (cached) and the
inline ones its requests carried (implicitly created). The core @context is every tenant's: listed
(kind Cached, localId "core"), served, never deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from broker.api.keys import CONTEXTS, RESOLVER
from broker.api.representation import no_content
from broker.api.request import LD_JSON, read_json, term_map
from broker.edge import flag, json_reply, tenant_of
from broker.errors import BadRequestData, InvalidRequest, OperationNotSupported, ResourceNotFound
from broker.jsonld.context import CORE_URL, ContextError, context_objects, core_document, is_core_url
from broker.store.contexts import HOSTED_PATH, StoredContext

routes = web.RouteTableDef()
BASE = "/ngsi-ld/v1/jsonldContexts"
_KINDS = ("Hosted", "Cached", "ImplicitlyCreated")
CORE_ID = "core"
_STARTED = datetime.now(UTC)


def _core() -> StoredContext:
    """The core @context as a listed entry: bundled, so created when the process started, never counted."""
    return StoredContext(CORE_ID, CORE_URL, "Cached", {"@context": core_document()}, _STARTED, None, 0)


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
    document = await read_json(request)
    try:
        context_objects(document)
    except ContextError as exc:
        # Clause 5.5.2 (and 6.29.3.1): a body that is no @context is an invalid request.
        raise InvalidRequest(f"the body must be a JSON object with an @context member: {exc}") from None
    try:
        await term_map(request, document["@context"])  # refuse what cannot be used
    except BadRequestData as exc:
        raise InvalidRequest(exc.detail) from None
    stored = await request.app[CONTEXTS].host(tenant_of(request), dict(document))
    # Clause 6.29.3.1: the Location is the path of the new resource; the body's URL (for Link
    # headers) stays absolute, under NGSI_PUBLIC_URL.
    return no_content(request, 201, {"Location": HOSTED_PATH + stored.id})


@routes.get(BASE)
@routes.get(BASE + "/")
async def list_contexts(request: web.Request) -> web.Response:
    """5.13.3 List @contexts: URLs, or details with details=true; filter by kind."""
    kind = request.query.get("kind")
    if kind is not None and kind not in _KINDS:
        raise BadRequestData(f"kind must be one of {', '.join(_KINDS)}")
    await request.app[RESOLVER].flush_uses()
    stored = await request.app[CONTEXTS].list(tenant_of(request), kind)
    if kind in (None, "Cached"):
        stored.insert(0, _core())
    if flag(request, "details"):
        return json_reply([_details(c) for c in stored])
    return json_reply([c.url for c in stored])


@routes.get(BASE + "/{context_id}")
async def serve_context(request: web.Request) -> web.Response:
    """5.13.4 Serve @context: the document of a Hosted, ImplicitlyCreated or the core context, or any
    context's details."""
    stored = await _find(request)
    if flag(request, "details"):
        return json_reply(_details(stored))
    if stored.kind == "Cached" and stored.id != CORE_ID:
        raise OperationNotSupported(
            f"context {stored.id} is a cached copy of {stored.url}; fetch it there or ask details=true"
        )
    return json_reply(stored.body, media_type=LD_JSON)


@routes.delete(BASE + "/{context_id}")
async def delete_context(request: web.Request) -> web.Response:
    """5.13.5 Delete and Reload @context: reload=true re-fetches a Cached context; the core @context
    is neither deleted nor reloaded (400)."""
    stored = await _find(request)
    if stored.id == CORE_ID:
        raise BadRequestData("the core @context cannot be deleted or reloaded")
    tenant = tenant_of(request)
    resolver = request.app[RESOLVER]
    if flag(request, "reload"):
        if stored.kind != "Cached":
            raise BadRequestData("only a Cached context can be reloaded")
        document = await resolver.refetch(tenant, stored.url)
        await request.app[CONTEXTS].replace_body(tenant, stored.id, document)
    else:
        await request.app[CONTEXTS].delete(tenant, stored.id)
    resolver.forget(tenant, stored.url)
    return no_content(request)


async def _find(request: web.Request) -> StoredContext:
    key = request.match_info["context_id"]
    if key == CORE_ID or is_core_url(key):
        return _core()
    await request.app[RESOLVER].flush_uses()
    stored = await request.app[CONTEXTS].get(tenant_of(request), key)
    if stored is None:
        raise ResourceNotFound(f"no @context with id or URL {key}")
    return stored
