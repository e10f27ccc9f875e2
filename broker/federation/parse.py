"""CSourceRegistration bodies (clauses 5.2.8-5.2.10, 5.2.34): validated, expanded, compiled, compacted.

A client's body is checked and its names (entity types, propertyNames, relationshipNames,
registration properties) expanded with the request's @context into the *stored* form; the
stored form compiles to a ``Registration`` (the same checks, names already absolute) and is
compacted again for each reader's @context by ``render``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from yarl import URL

from broker.errors import BadRequestData
from broker.federation.model import (
    DEFAULT_OPERATIONS,
    GROUPS,
    OPERATIONS,
    EntityInfo,
    Mode,
    Registration,
    RegistrationInfo,
)
from broker.jsonld.context import TermMap
from broker.model.entity import NULL_URI, parse_time
from broker.model.geojson import validate_geometry
from broker.model.parse import check_name, check_time, check_uri, parse_scopes
from broker.query.qregex import translate_regex
from broker.shape import Shape

TYPE = "ContextSourceRegistration"
GEO_MEMBERS = ("location", "observationSpace", "operationSpace")
_CORE = frozenset(
    {
        "id", "type", "registrationName", "description", "information", "tenant", "observationInterval",
        "managementInterval", *GEO_MEMBERS, "expiresAt", "endpoint", "contextSourceInfo", "scope", "mode",
        "operations", "refreshRate", "management",
    }
)  # fmt: skip
# Read-only members the broker renders (5.2.2, 5.2.9): a client echoing them back is not wrong.
READ_ONLY = frozenset(
    {
        "status",
        "timesSent",
        "timesFailed",
        "lastSuccess",
        "lastFailure",
        "createdAt",
        "modifiedAt",
        "deletedAt",
    }
)
_INFO_MEMBERS = frozenset({"entities", "propertyNames", "relationshipNames"})
_ENTITY_MEMBERS = frozenset({"id", "idPattern", "type"})
_MANAGEMENT = frozenset({"localOnly", "cacheDuration", "timeout", "cooldown"})
_INTERVAL = frozenset({"startAt", "endAt"})

_SHAPE = Shape(BadRequestData, is_null=lambda value: value == NULL_URI)
_optional = _SHAPE.optional
_required = _SHAPE.required
_text = _SHAPE.text()
_object = _SHAPE.obj()
_flag = _SHAPE.flag()
_milliseconds = _SHAPE.number(unit="milliseconds", above=0.999, at_most=86_400_000)

Expand = Callable[[str], str]


def expand_body(body: dict[str, Any], tm: TermMap) -> dict[str, Any]:
    """A client's registration in the stored form: names expanded, read-only members dropped."""
    return _rename(body, tm.expand)


def render(stored: dict[str, Any], tm: TermMap) -> dict[str, Any]:
    """The stored form compacted for a reader's @context."""
    return _rename(stored, tm.compact)


def _rename(body: dict[str, Any], name: Expand) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for member, value in body.items():
        if member in READ_ONLY:
            continue
        if member == "information" and isinstance(value, list):
            out[member] = [_rename_info(info, name) for info in value]
        elif member in _CORE:
            out[member] = value
        else:
            out[name(member)] = value
    return out


def _rename_info(info: Any, name: Expand) -> Any:
    if not isinstance(info, dict):
        return info
    out = dict(info)
    for member in ("propertyNames", "relationshipNames"):
        if isinstance(info.get(member), list):
            out[member] = [name(n) if isinstance(n, str) else n for n in info[member]]
    if isinstance(info.get("entities"), list):
        out["entities"] = [_rename_entity(e, name) for e in info["entities"]]
    return out


def _rename_entity(entity: Any, name: Expand) -> Any:
    if not isinstance(entity, dict):
        return entity
    kind = entity.get("type")
    if isinstance(kind, str):
        return {**entity, "type": name(kind)}
    if isinstance(kind, list):
        return {**entity, "type": [name(k) if isinstance(k, str) else k for k in kind]}
    return entity


def compile_registration(
    tenant: str, registration_id: str, stored: dict[str, Any], *, now: datetime | None = None
) -> Registration:
    """Validate a registration in the stored form and compile it; BadRequestData (400) names what is wrong.

    ``now`` given: expiresAt must lie after it (creating, or setting expiresAt in an update).
    """
    if stored.get("type") != TYPE:
        raise BadRequestData(f'type must be "{TYPE}", got {stored.get("type")!r}')
    if "id" in stored and check_uri(stored["id"], "id") != registration_id:
        raise BadRequestData(f"id {stored['id']} differs from the registration's id {registration_id}")
    for member in ("registrationName", "description", "refreshRate", "tenant"):
        _optional(stored, member, _text)
    endpoint = _required(stored, "endpoint", _endpoint)
    mode = _optional(stored, "mode", _SHAPE.enum_of(Mode)) or Mode.INCLUSIVE
    information = tuple(_required(stored, "information", _SHAPE.list_of(_info)))
    if mode is Mode.EXCLUSIVE:
        _check_exclusive(information)
    operations = _optional(stored, "operations", _SHAPE.list_of(_operation)) or list(DEFAULT_OPERATIONS)
    expires_at = _optional(stored, "expiresAt", lambda v, w: parse_time(check_time(v, w)))
    if expires_at is not None and now is not None and expires_at <= now:
        raise BadRequestData(f"expiresAt {stored['expiresAt']} is not in the future")
    geometries = {member: _optional(stored, member, _geometry) for member in GEO_MEMBERS}
    for member in ("observationInterval", "managementInterval"):
        _optional(stored, member, _interval)
    _optional(stored, "management", _management)
    scopes = _optional(stored, "scope", lambda v, w: parse_scopes(v))
    properties = tuple(
        (check_name(member, "registration property name"), _property(stored[member], member))
        for member in stored
        if member not in _CORE and member not in READ_ONLY
    )
    return Registration(
        tenant=tenant,
        id=registration_id,
        endpoint=endpoint,
        mode=mode,
        operations=frozenset().union(*(GROUPS.get(op, {op}) for op in operations)),
        information=information,
        body=stored,
        expires_at=expires_at,
        location=geometries["location"],
        scopes=tuple(scopes) if scopes is not None else None,
        context_source_info=tuple(_optional(stored, "contextSourceInfo", _key_values) or ()),
        properties=properties,
    )


def _endpoint(value: Any, what: str) -> str:
    uri = check_uri(value, what)
    url = URL(uri)
    if url.scheme not in ("http", "https") or not url.host:
        raise BadRequestData(f"{what} must be an http or https URL, got {uri}")
    return uri


def _operation(value: Any, what: str) -> str:
    if not isinstance(value, str) or (value not in OPERATIONS and value not in GROUPS):
        raise BadRequestData(f"{what} {value!r} is not an operation or operation group of clause 4.3.6")
    return value


def _info(value: Any, what: str) -> RegistrationInfo:
    """RegistrationInfo (5.2.10): at least one of its members, each a non-empty array."""
    info = _object(value, what)
    _SHAPE.unknown(info, _INFO_MEMBERS, what)
    if not info:
        raise BadRequestData(f"{what} needs entities, propertyNames or relationshipNames")
    prefix = what + "."
    names = _SHAPE.list_of(lambda n, w: check_name(n, w))
    return RegistrationInfo(
        entities=tuple(_optional(info, "entities", _SHAPE.list_of(_entity_info), prefix) or ()),
        properties=frozenset(_optional(info, "propertyNames", names, prefix) or ()),
        relationships=frozenset(_optional(info, "relationshipNames", names, prefix) or ()),
    )


def _entity_info(value: Any, what: str) -> EntityInfo:
    """EntityInfo (5.2.8): type required (one or several), id or idPattern."""
    entity = _object(value, what)
    _SHAPE.unknown(entity, _ENTITY_MEMBERS, what)
    prefix = what + "."
    raw_type = _required(entity, "type", _SHAPE.anything(), prefix)
    types = raw_type if isinstance(raw_type, list) and raw_type else [raw_type]
    entity_id = _optional(entity, "id", check_uri, prefix)
    pattern = _optional(entity, "idPattern", _id_pattern, prefix)
    if entity_id is not None and pattern is not None:
        raise BadRequestData(f"{what} gives both id and idPattern: give one")
    return EntityInfo(
        types=frozenset(check_name(t, f"{prefix}type") for t in types), id=entity_id, id_pattern=pattern
    )


def _id_pattern(value: Any, what: str) -> re.Pattern[str]:
    try:
        regex = translate_regex(_text(value, what))
    except ValueError as exc:
        raise BadRequestData(f"{what} is not a supported regular expression: {exc}") from None
    return re.compile(regex.python, re.DOTALL | (re.IGNORECASE if regex.ignore_case else 0))


def _check_exclusive(information: tuple[RegistrationInfo, ...]) -> None:
    """4.3.6.3: an exclusive registration names entity ids and the attributes it holds for them."""
    for index, info in enumerate(information):
        where = f"information[{index}]"
        if not info.entities or any(e.id is None for e in info.entities):
            raise BadRequestData(f"{where}: an exclusive registration gives an entity id for every entity")
        if not info.attributes:
            raise BadRequestData(
                f"{where}: an exclusive registration names its propertyNames or relationshipNames"
            )


def _geometry(value: Any, what: str) -> dict[str, Any]:
    validate_geometry(value, what)
    geometry: dict[str, Any] = value
    return geometry


def _interval(value: Any, what: str) -> None:
    interval = _object(value, what)
    _SHAPE.unknown(interval, _INTERVAL, what)
    _required(interval, "startAt", check_time, what + ".")
    _optional(interval, "endAt", check_time, what + ".")


def _management(value: Any, what: str) -> None:
    """RegistrationManagementInfo (5.2.34); timeout and cooldown in milliseconds, at least 1."""
    management = _object(value, what)
    _SHAPE.unknown(management, _MANAGEMENT, what)
    prefix = what + "."
    _optional(management, "localOnly", _flag, prefix)
    _optional(management, "cacheDuration", _text, prefix)
    _optional(management, "timeout", _milliseconds, prefix)
    _optional(management, "cooldown", _milliseconds, prefix)


def _key_values(value: Any, what: str) -> list[tuple[str, str]]:
    """contextSourceInfo (5.2.22 KeyValuePair): string keys and values."""
    pairs = []
    for index, item in enumerate(_SHAPE.list_of(_SHAPE.anything())(value, what)):
        entry = f"{what}[{index}]"
        _SHAPE.unknown(_object(item, entry), frozenset({"key", "value"}), entry)
        pairs.append(
            (_required(item, "key", _text, entry + "."), _required(item, "value", _text, entry + "."))
        )
    return pairs


def _property(value: Any, name: str) -> Any:
    """A registration property's value: a Property's value, or the value itself (key-values)."""
    if value is None or value == NULL_URI:
        raise BadRequestData(f"registration property {name} must not be null")
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value
