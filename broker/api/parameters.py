"""The URL parameters each NGSI-LD operation takes (clause 6 of ETSI GS CIM 009 V1.9.1), in one table.

A parameter an operation does not define is a 400 InvalidRequest (clause 5.5.2: the request is
"syntactically invalid or includes wrong content"), not silently ignored: a client misspelling
``pick`` or ``timerel`` gets told instead of receiving more than it asked for. Routes the table
does not list (the device side, health, admin) keep their own rules.
"""

from __future__ import annotations

from aiohttp import web

from broker.errors import Handler, InvalidRequest

# Parameters of distributed operations (clause 6.3.18 ff.) and tenancy every operation may carry.
_ANY = frozenset({"local", "via", "csf"})
_REPRESENTATION = frozenset(
    {"attrs", "pick", "omit", "options", "format", "lang", "geometryProperty", "datasetId", "expandValues"}
)
_LINKED = frozenset({"join", "joinLevel", "containedBy", "entityMap", "jsonKeys"})
_PAGING = frozenset({"limit", "offset", "count"})
_SELECTION = frozenset(
    {"id", "type", "idPattern", "q", "georel", "geometry", "coordinates", "geoproperty", "scopeQ"}
)
_ORDER = frozenset({"orderBy", "orderFrom", "orderGeometry", "collation"})
_TEMPORAL = frozenset(
    {"timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "aggrMethods", "aggrPeriodDuration"}
)

ENTITIES = "/ngsi-ld/v1/entities"
ENTITY = ENTITIES + "/{entity_id}"
ATTRS = ENTITY + "/attrs"
ATTR = ATTRS + "/{attr}"
BATCH = "/ngsi-ld/v1/entityOperations/"
TEMPORAL = "/ngsi-ld/v1/temporal/entities"
CONTEXTS = "/ngsi-ld/v1/jsonldContexts"
REGISTRATIONS = "/ngsi-ld/v1/csourceRegistrations"

_QUERY = _ANY | _REPRESENTATION | _LINKED | _PAGING | _SELECTION | _ORDER
_TEMPORAL_QUERY = _QUERY | _TEMPORAL

# (method, route as registered without a trailing slash) -> the parameters it defines.
ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", ENTITIES): _QUERY,  # 6.4.3.2
    ("POST", ENTITIES): _ANY,  # 6.4.3.1
    ("DELETE", ENTITIES): _ANY | _SELECTION | {"limit"},  # purge
    ("GET", ENTITY): _ANY | _REPRESENTATION | _LINKED | {"type"},  # 6.5.3.1
    ("PUT", ENTITY): _ANY | {"type"},  # 6.5.3.3
    ("PATCH", ENTITY): _ANY | {"type", "observedAt", "lang", "format", "options"},  # 6.5.3.4
    ("DELETE", ENTITY): _ANY | {"type"},  # 6.5.3.2
    ("POST", ATTRS): _ANY | {"options", "type"},  # 6.6.3.1
    ("PATCH", ATTRS): _ANY | {"options", "type"},  # 6.6.3.2
    ("PATCH", ATTR): _ANY | {"type", "observedAt", "lang"},  # 6.7.3.1
    ("PUT", ATTR): _ANY | {"type"},  # 6.7.3.3
    ("DELETE", ATTR): _ANY | {"type", "datasetId", "deleteAll", "lang"},  # 6.7.3.2
    ("POST", BATCH + "create"): _ANY,  # 6.14
    ("POST", BATCH + "upsert"): _ANY | {"options"},  # 6.15
    ("POST", BATCH + "update"): _ANY | {"options"},  # 6.16
    ("POST", BATCH + "delete"): _ANY,  # 6.17
    ("POST", BATCH + "merge"): _ANY,  # 6.31
    ("POST", BATCH + "query"): _ANY | _REPRESENTATION | _LINKED | _PAGING | _ORDER,  # 6.23
    ("GET", TEMPORAL): _TEMPORAL_QUERY,  # 6.18.3.2
    ("GET", TEMPORAL + "/{entity_id}"): _ANY | _REPRESENTATION | _TEMPORAL | {"type"},  # 6.19.3.1
    ("POST", "/ngsi-ld/v1/temporal/entityOperations/query"): (
        _ANY | _REPRESENTATION | _PAGING | _ORDER | _TEMPORAL
    ),  # 6.24
    ("GET", CONTEXTS): frozenset({"details", "kind"}),  # 6.29.3.2
    ("POST", CONTEXTS): frozenset(),  # 6.29.3.1
    ("GET", CONTEXTS + "/{context_id}"): frozenset({"details"}),  # 6.30.3.1
    ("DELETE", CONTEXTS + "/{context_id}"): frozenset({"reload"}),  # 6.30.3.2
    ("GET", "/ngsi-ld/v1/info/sourceIdentity"): _ANY,  # 6.33.3.1
    ("POST", REGISTRATIONS): frozenset(),  # 6.8.3.1
    ("GET", REGISTRATIONS): _PAGING
    | {"id", "type", "idPattern", "attrs", "q", "csf", "georel", "geometry", "coordinates", "geoproperty"}
    | {"options"},  # 6.8.3.2
    ("GET", REGISTRATIONS + "/{registration_id}"): frozenset({"options"}),  # 6.9.3.1
    ("PATCH", REGISTRATIONS + "/{registration_id}"): frozenset(),  # 6.9.3.2
    ("DELETE", REGISTRATIONS + "/{registration_id}"): frozenset(),  # 6.9.3.3
}


def _route_of(request: web.Request) -> str | None:
    info = request.match_info.route.resource
    if info is None:
        return None
    canonical = info.canonical
    return canonical[:-1] if canonical.endswith("/") else canonical


@web.middleware
async def refuse_unknown_parameters(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 InvalidRequest for a URL parameter the operation does not define (clause 5.5.2)."""
    if request.query:
        route = _route_of(request)
        allowed = ALLOWED.get((request.method, route)) if route is not None else None
        if allowed is not None:
            unknown = sorted(set(request.query) - allowed)
            if unknown:
                raise InvalidRequest(
                    f"unknown URL parameter{'s' if len(unknown) > 1 else ''} for this operation: "
                    + ", ".join(unknown)
                )
    return await handler(request)
