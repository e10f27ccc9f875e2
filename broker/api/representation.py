"""Answering a request: the representation asked for (clauses 6.3.6, 6.3.7) and the JSON responses.

``broker.edge.json_reply`` is the one way a handler answers plain JSON; ``json_response`` adds the @context an
NGSI-LD answer carries (6.3.5) and the tenant it concerns (6.3.14).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from broker.api.request import CONTEXT_REL, LD_JSON, csv_param
from broker.edge import JSON, json_reply
from broker.errors import BadRequestData, InvalidRequest, NotAcceptable
from broker.jsonld.context import CORE_URL, TermMap
from broker.jsonld.resolver import ContextRef
from broker.model.parse import check_name
from broker.model.render import FORMS, Form, View
from broker.query.projection import Projected, parse_projection

GEO_JSON = "application/geo+json"
_OPTIONS = {*FORMS, "sysAttrs", "noOverwrite", "update", "replace"}

T = TypeVar("T")


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
        if media_type == GEO_JSON and isinstance(body, dict):
            # Clause 4.5.16: a GeoJSON Feature or FeatureCollection carries its @context as a
            # top-level member (the Link header stays, for clients reading it there).
            body = {**body, "@context": context_url}
    if all_links:
        out_headers["Link"] = ", ".join(all_links)
    _echo_tenant(request, out_headers)
    return json_reply(body, status=status, media_type=media_type, headers=out_headers)


def no_content(
    request: web.Request, status: int = 204, headers: dict[str, str] | None = None
) -> web.Response:
    """An answer without a body (201 with Location, 204), naming the tenant."""
    out_headers = dict(headers or {})
    _echo_tenant(request, out_headers)
    return web.Response(status=status, headers=out_headers)


def _echo_tenant(request: web.Request, headers: dict[str, str]) -> None:
    """Responses name the tenant they concern, whichever header selected it (clause 6.3.14)."""
    tenant = request.headers.get("NGSILD-Tenant") or request.headers.get("Fiware-Service")
    if tenant:
        headers["NGSILD-Tenant"] = tenant.strip()


def options(request: web.Request, allowed: set[str] | frozenset[str] = frozenset(_OPTIONS)) -> set[str]:
    """The 'options' parameter's keywords, each checked against ``allowed``."""
    found = set(csv_param(request, "options") or [])
    unknown = found - allowed
    if unknown:
        # Clause 5.5.2: a value the operation does not define makes the request invalid.
        raise InvalidRequest(f"unknown options: {', '.join(sorted(unknown))}")
    return found


def chosen(request: web.Request, table: Mapping[str, T], opts: set[str]) -> T | None:
    """The one representation ``format`` or ``options`` name in ``table`` (format wins), if any."""
    picked = {table[o] for o in opts if o in table}
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in table:
            raise InvalidRequest(f"format {fmt!r} is not one of {', '.join(table)}")
        picked = {table[fmt]}
    if len(picked) > 1:
        raise InvalidRequest("options asks for more than one representation")
    return picked.pop() if picked else None


@dataclass(frozen=True, slots=True)
class Selection:
    """What attrs/pick/omit keep of an entity (clause 4.21): expanded names, 'id'/'type'/'scope' as is."""

    pick: frozenset[str] | None = None
    omit: frozenset[str] = frozenset()
    sub_pick: dict[str, frozenset[str]] | None = None
    sub_omit: dict[str, frozenset[str]] | None = None
    # True when the request named attributes (attrs or pick): an entity without any is not found.
    by_attrs: bool = False

    def keeps(self, name: str) -> bool:
        """Whether the member ``name`` (expanded, or id/type/scope) is kept."""
        return name not in self.omit and (self.pick is None or name in self.pick)


_SYSTEM = frozenset({"@context", "createdAt", "modifiedAt", "deletedAt"})


def project(body: dict[str, Any], selection: Selection, tm: TermMap) -> dict[str, Any]:
    """A rendered entity (e.g. a temporal one) with only the members ``selection`` keeps."""
    return {
        key: value
        for key, value in body.items()
        if key in _SYSTEM or selection.keeps(key if key in ("id", "type", "scope") else tm.expand(key))
    }


def nothing_left(entity_attrs: Any, rendered: dict[str, Any], selection: Selection) -> bool:
    """True when attrs names none of the entity's attributes, or pick/omit leave nothing of it:
    a retrieval then answers 404 (clause 5.7.1, issue 13 item 3)."""
    if selection.by_attrs:
        assert selection.pick is not None
        return selection.pick.isdisjoint(entity_attrs)
    if selection.pick is not None or selection.omit:
        return not set(rendered) - _SYSTEM
    return False


def selection_of(request: web.Request, tm: TermMap, body: Any = None) -> Selection:
    """The attrs, pick and omit parameters (or a Query object's members), checked: pick excludes
    the other two."""
    attrs = csv_param(request, "attrs")
    pick = _projection(request, "pick")
    omit = _projection(request, "omit")
    if isinstance(body, dict) and ("pick" in body or "omit" in body):
        # Table 5.2.23-1: in a Query object they are arrays of projection strings.
        attrs = None
        pick, omit = _member_projection(body, "pick"), _member_projection(body, "omit")
        if "attrs" in body and pick is not None:
            raise BadRequestData("pick cannot be combined with attrs (clause 4.21)")
    if pick is not None and (omit is not None or attrs is not None):
        raise BadRequestData("pick cannot be combined with omit or attrs (clause 4.21)")
    selected: frozenset[str] | None = None
    if pick is not None:
        selected = _names([p.name for p in pick], tm)
    elif attrs is not None:
        selected = _names(attrs, tm) | {"id", "type", "scope"}
    return Selection(
        pick=selected,
        omit=_names([p.name for p in omit if p.inner is None], tm) if omit else frozenset(),
        sub_pick=_inner(pick, tm),
        sub_omit=_inner(omit, tm),
        by_attrs=attrs is not None,
    )


def view_of(request: web.Request, tm: TermMap) -> View:
    """The representation asked by format/options/attrs/pick/omit/lang/datasetId (clauses 6.3.7, 4.21)."""
    opts = options(request)
    form = chosen(request, FORMS, opts)
    picked = selection_of(request, tm)
    datasets = csv_param(request, "datasetId")
    return View(
        form=form or Form.NORMALIZED,
        sys_attrs="sysAttrs" in opts,
        pick=picked.pick,
        omit=picked.omit,
        lang=request.query.get("lang"),
        dataset_id=frozenset(datasets) if datasets else None,
        sub_pick=picked.sub_pick,
        sub_omit=picked.sub_omit,
    )


def _projection(request: web.Request, name: str) -> tuple[Projected, ...] | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    return parse_projection(raw, name)


def _member_projection(body: dict[str, Any], name: str) -> tuple[Projected, ...] | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequestData(f"{name} must be a non-empty array of attribute projection strings")
    return parse_projection(",".join(value), name)


def _inner(items: tuple[Projected, ...] | None, tm: TermMap) -> dict[str, frozenset[str]] | None:
    """Per attribute, the sub-attribute names its braces list (one level is applied)."""
    if not items:
        return None
    out = {
        tm.expand(item.name): frozenset(tm.expand(sub.name) for sub in item.inner)
        for item in items
        if item.inner is not None
    }
    return out or None


def _names(names: list[str], tm: TermMap) -> frozenset[str]:
    out = set()
    for name in names:
        check_name(name, "attribute name")
        out.add(name if name in ("id", "type", "scope") else tm.expand(name))
    return frozenset(out)
