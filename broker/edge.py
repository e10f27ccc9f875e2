"""What both entrances share at the edge: the tenant a request names, flags, paging, JSON bodies.

The NGSI-LD handlers (broker/api) and the device side's handlers (adapters, HTTP and MQTT) read
input with these, so a tenant header, a limit parameter or a nesting limit means the same thing
on every route and topic: every JSON request body is parsed by ``decode_json`` and every plain
JSON answer is made by ``json_reply``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web

from broker.errors import BadRequestData, InvalidRequest, TooManyResults
from broker.store.tenants import DEFAULT_TENANT, check_tenant_name


def tenant_of(request: web.Request) -> str:
    """The tenant addressed (NGSILD-Tenant, or FIWARE-Service as IoT Agents send it)."""
    name = request.headers.get("NGSILD-Tenant") or request.headers.get("Fiware-Service")
    # An empty header (HTTP strips blanks from field values) selects the default tenant.
    return DEFAULT_TENANT if name is None else check_tenant_name(name.strip())


def flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw in ("true", "false"):
        return raw == "true"
    raise BadRequestData(f"parameter {name} must be true or false")


DEFAULT_LIMIT = 20
_COUNT = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class Paging:
    """limit/offset/count of a query (clauses 6.3.10, 6.3.13), checked."""

    limit: int
    offset: int
    count: bool


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _COUNT.fullmatch(raw):
        raise BadRequestData(f"{name} must be a non-negative integer below 10^9")
    return int(raw)


def paging(request: web.Request, max_page: int) -> Paging:
    """The page asked for; TooManyResults over ``max_page``, limit=0 only with count=true."""
    limit = _int_param(request, "limit", DEFAULT_LIMIT)
    offset = _int_param(request, "offset", 0)
    count = flag(request, "count")
    if limit > max_page:
        raise TooManyResults(f"limit {limit} exceeds the maximum page size {max_page} (NGSI_MAX_PAGE)")
    if limit == 0 and not count:
        raise BadRequestData("limit=0 is only allowed with count=true")
    return Paging(limit, offset, count)


JSON = "application/json"

# The attribute that marks a handler taking a NUL in its URL parameters itself (see keeps_nul).
_KEEPS_NUL = "ngsi_keeps_nul"
Handler = TypeVar("Handler", bound=Callable[..., Any])


def keeps_nul(handler: Handler) -> Handler:
    """Mark ``handler`` as one that reads a NUL in the URL itself: the device southbound, which
    keeps a message it cannot take as a dead letter (NUL included) rather than only answer 400."""
    setattr(handler, _KEEPS_NUL, True)
    return handler


def nul_is_kept(request: web.Request) -> bool:
    """Whether the route ``request`` matched was marked with ``keeps_nul``."""
    return bool(getattr(request.match_info.handler, _KEEPS_NUL, False))


_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def decode_json(raw: bytes, max_depth: int, **extra: Any) -> Any:
    """A JSON request body, parsed: 400 InvalidRequest when empty or not JSON, 400 BadRequestData
    when it holds a NUL or nests deeper than ``max_depth`` (NGSI_MAX_JSON_DEPTH).

    ``extra`` members go into the ProblemDetails of a refusal (the IoT Agent API's ``name``).
    """
    if not raw:
        raise InvalidRequest("the request has no body", **extra)
    if has_nul(raw):
        # PostgreSQL text and jsonb cannot hold U+0000: refuse it here, not with a 500 later.
        raise BadRequestData("the body contains a NUL character (\\u0000), which cannot be stored", **extra)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}", **extra) from None
    if too_deep(raw, data, max_depth):
        raise BadRequestData(
            f"the body nests arrays and objects deeper than {max_depth} levels (NGSI_MAX_JSON_DEPTH)",
            **extra,
        )
    return data


def json_reply(
    body: Any, *, status: int = 200, media_type: str = JSON, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer (orjson): the one way a handler of either side answers plain JSON."""
    return web.Response(body=orjson.dumps(body), status=status, content_type=media_type, headers=headers)


def has_nul(raw: bytes) -> bool:
    """True when JSON text ``raw`` holds an escaped U+0000, which PostgreSQL text and jsonb cannot store."""
    # The substring test is ~40x cheaper than the regex, which only tells an escaped backslash apart.
    return b"\\u0000" in raw and _ESCAPED_NUL.search(raw) is not None


def too_deep(raw: bytes, value: Any, limit: int) -> bool:
    """True when ``value`` (parsed from ``raw``) nests arrays and objects more than ``limit`` deep.

    orjson parses up to 1,024 levels but serialises only 255, so a deeper value accepted at the
    edge would fail later (jsonb encoding, logging, dead letters): refuse it where it comes in.
    A value cannot be deeper than its number of brackets, so the usual small message is cleared
    by two C-speed counts without walking it.
    """
    return _may_nest_deeper(raw, limit) and nests_deeper(value, limit)


def nests_deeper(value: Any, limit: int) -> bool:
    """True when ``value`` nests arrays and objects more than ``limit`` deep (walks it: for a value
    whose text was never seen whole, e.g. a device payload decoded from base64)."""
    level: list[tuple[Any, int]] = [(value, 1)]
    while level:
        node, depth = level.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            level.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            level.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def json_too_deep(raw: bytes, limit: int) -> bool:
    """True when ``raw`` is JSON text nesting arrays and objects more than ``limit`` deep.

    For bodies parsed further on (device messages, whose family parser reads them): the usual
    small message is cleared without parsing it; text that is not JSON is for its parser to refuse.
    """
    if not _may_nest_deeper(raw, limit):
        return False
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return too_deep(raw, value, limit)


def _may_nest_deeper(raw: bytes, limit: int) -> bool:
    # A value cannot be deeper than its number of brackets (two C-speed counts).
    return raw.count(b"[") + raw.count(b"{") > limit
