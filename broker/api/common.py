"""Request parsing and response rendering shared by the handlers (clauses 6.3.4-6.3.7, 6.3.14).

Handlers call these to read the tenant, the body and its @context, the wanted
representation, and to answer with the @context as clause 6.3.5 asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from broker.api.keys import RESOLVER
from broker.edge import DEFAULT_LIMIT, Paging, flag, paging, tenant_of
from broker.errors import BadRequestData, Handler, InvalidRequest, NgsiLdError
from broker.jsonld.context import CORE_URL, TermMap
from broker.jsonld.resolver import ContextRef
from broker.model.parse import check_name, check_uri
from broker.model.render import Form, View

JSON = "application/json"
LD_JSON = "application/ld+json"
GEO_JSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
# Re-exported: the handlers read them from here.
__all__ = ["DEFAULT_LIMIT", "Paging", "flag", "paging", "tenant_of"]


class NotAcceptable(InvalidRequest):
    status = 406


class UnsupportedMediaType(InvalidRequest):
    status = 415


@web.middleware
async def refuse_nul(request: web.Request, handler: Handler) -> web.StreamResponse:
    """PostgreSQL cannot store or compare U+0000: a NUL in the path or a parameter is a 400."""
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise BadRequestData("the request path or a parameter contains a NUL character")
    return await handler(request)


def geometry_property(request: web.Request, tm: TermMap) -> str:
    """The GeoProperty a GeoJSON representation takes its geometry from (default location)."""
    return tm.expand(check_name(request.query.get("geometryProperty", "location"), "geometryProperty"))


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


@dataclass(frozen=True, slots=True)
class Body:
    """A parsed request body with the @context that applies to it."""

    data: Any
    context: ContextRef
    media_type: str


async def read_body(request: web.Request, *, allow_merge_patch: bool = False) -> Body:
    """Read and parse a JSON body, enforcing the Content-Type and @context rules of 6.3.5."""
    media_type = request.content_type
    allowed = {JSON, LD_JSON} | ({MERGE_PATCH} if allow_merge_patch else set())
    if media_type not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'} is not supported; use {' or '.join(sorted(allowed))}"
        )
    raw = await request.read()
    if not raw:
        raise InvalidRequest("the request has no body")
    # The substring test is ~40x cheaper than the regex, which only tells an escaped backslash apart.
    if b"\\u0000" in raw and _ESCAPED_NUL.search(raw):
        # PostgreSQL text and jsonb cannot hold U+0000: refuse it here, not with a 500 later.
        raise BadRequestData("the body contains a NUL character (\\u0000), which cannot be stored")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    link = link_context(request)
    if media_type == LD_JSON:
        if link is not None:
            raise BadRequestData("a JSON-LD Link header is not allowed with Content-Type application/ld+json")
        items = data if isinstance(data, list) else [data]
        for item in items:
            if not isinstance(item, dict) or "@context" not in item:
                raise BadRequestData("with Content-Type application/ld+json the body must carry an @context")
        context = data.get("@context") if isinstance(data, dict) else None
        return Body(data, context, media_type)
    items = data if isinstance(data, list) else [data]
    if any(isinstance(item, dict) and "@context" in item for item in items):
        raise BadRequestData("an @context in the body needs Content-Type application/ld+json")
    return Body(data, link, media_type)


async def term_map(request: web.Request, context: ContextRef) -> TermMap:
    return await request.app[RESOLVER].term_map(context)


def accepted(request: web.Request, *, geo: bool = False) -> str:
    """The response media type from the Accept header (clause 6.3.6); 406 if none fits."""
    header = request.headers.get("Accept", "")
    if not header.strip():
        return JSON
    offers = [JSON, LD_JSON] + ([GEO_JSON] if geo else [])
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if media in ("*/*", "application/*"):
            choices.append((quality, -position, JSON))
        elif media in offers:
            choices.append((quality, -position, media))
    if not choices:
        raise NotAcceptable(f"none of the media types in Accept ({header}) can be produced here")
    return max(choices)[2]


def json_response(
    request: web.Request,
    body: Any,
    *,
    context: ContextRef,
    media_type: str = JSON,
    status: int = 200,
    headers: dict[str, str] | None = None,
    links: list[str] | None = None,
) -> web.Response:
    """Answer with ``body`` and its @context: a Link header for JSON, a member for JSON-LD.

    ``links`` are further Link header values (pagination), sent beside the context's.
    """
    out_headers: dict[str, str] = dict(headers or {})
    context_url = context if isinstance(context, str) else CORE_URL
    all_links = list(links or [])
    if media_type == LD_JSON:
        if isinstance(body, dict):
            body = {"@context": context_url, **body}
        elif isinstance(body, list):
            body = [{"@context": context_url, **item} if isinstance(item, dict) else item for item in body]
    else:
        all_links.insert(0, f'<{context_url}>; rel="{CONTEXT_REL}"; type="{LD_JSON}"')
    if all_links:
        out_headers["Link"] = ", ".join(all_links)
    _echo_tenant(request, out_headers)
    return web.Response(body=orjson.dumps(body), status=status, content_type=media_type, headers=out_headers)


def no_content(
    request: web.Request, status: int = 204, headers: dict[str, str] | None = None
) -> web.Response:
    out_headers = dict(headers or {})
    _echo_tenant(request, out_headers)
    return web.Response(status=status, headers=out_headers)


def _echo_tenant(request: web.Request, headers: dict[str, str]) -> None:
    """Responses name the tenant they concern, whichever header selected it (clause 6.3.14)."""
    tenant = request.headers.get("NGSILD-Tenant") or request.headers.get("Fiware-Service")
    if tenant:
        headers["NGSILD-Tenant"] = tenant.strip()


def path_entity_id(request: web.Request) -> str:
    return check_uri(request.match_info["entity_id"], "entity id in the path")


def csv_param(request: web.Request, name: str) -> list[str] | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise BadRequestData(f"parameter {name} must not be empty")
    return items


_FORMS = {
    "normalized": Form.NORMALIZED,
    "concise": Form.CONCISE,
    "keyValues": Form.SIMPLIFIED,
    "simplified": Form.SIMPLIFIED,
}
_OPTIONS = {*_FORMS, "sysAttrs", "noOverwrite", "update", "replace"}


def options(request: web.Request) -> set[str]:
    """The 'options' parameter's keywords, each checked."""
    found = set(csv_param(request, "options") or [])
    unknown = found - _OPTIONS
    if unknown:
        raise BadRequestData(f"unknown options: {', '.join(sorted(unknown))}")
    return found


def view_of(request: web.Request, tm: TermMap) -> View:
    """The representation asked by format/options/attrs/pick/omit/lang/datasetId (clause 6.3.7)."""
    opts = options(request)
    forms = {_FORMS[o] for o in opts if o in _FORMS}
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in _FORMS:
            raise BadRequestData(f"format {fmt!r} is not one of {', '.join(_FORMS)}")
        forms = {_FORMS[fmt]}
    if len(forms) > 1:
        raise BadRequestData("options asks for more than one representation")
    attrs = csv_param(request, "attrs")
    pick = csv_param(request, "pick")
    omit = csv_param(request, "omit")
    if pick is not None and (omit is not None or attrs is not None):
        raise BadRequestData("pick cannot be combined with omit or attrs")
    selected: frozenset[str] | None = None
    if pick is not None:
        selected = _names(pick, tm)
    elif attrs is not None:
        selected = _names(attrs, tm) | {"id", "type", "scope"}
    datasets = csv_param(request, "datasetId")
    return View(
        form=forms.pop() if forms else Form.NORMALIZED,
        sys_attrs="sysAttrs" in opts,
        pick=selected,
        omit=_names(omit, tm) if omit else frozenset(),
        lang=request.query.get("lang"),
        dataset_id=frozenset(datasets) if datasets else None,
    )


def _names(names: list[str], tm: TermMap) -> frozenset[str]:
    out = set()
    for name in names:
        check_name(name, "attribute name")
        out.add(name if name in ("id", "type", "scope") else tm.expand(name))
    return frozenset(out)


def raise_first(errors: list[NgsiLdError]) -> None:
    if errors:
        raise errors[0]


def orjson_text(value: Any) -> str:
    """JSON text of a value (geoQ coordinates given as an array in a body)."""
    return orjson.dumps(value).decode()


def page_links(request: web.Request, page: Paging, more: bool) -> list[str]:
    """Link rel=next/prev to the neighbouring pages (clause 6.3.10)."""
    links = []
    if more and page.limit > 0:
        url = request.rel_url.update_query(offset=page.offset + page.limit, limit=page.limit)
        links.append(f'<{url}>; rel="next"; type="application/json"')
    if page.offset > 0 and page.limit > 0:
        url = request.rel_url.update_query(offset=max(page.offset - page.limit, 0), limit=page.limit)
        links.append(f'<{url}>; rel="prev"; type="application/json"')
    return links
