"""Input payloads (normalized or concise NGSI-LD) -> expanded Entity values.

Everything a client sends is checked here, once: ids are URIs, names are valid,
each attribute instance has the members its type requires, GeoJSON is valid.
After this, operations and the store trust what they are given.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from broker.errors import BadRequestData, InvalidRequest
from broker.jsonld.context import TermMap
from broker.model.entity import (
    DEFAULT_MAX_INSTANCES,
    GEO_ATTRIBUTES,
    INSTANCE_MEMBERS,
    NULL_URI,
    VALUE_MEMBER,
    Entity,
    Instance,
    check_instance_count,
    format_time,
    is_null_instance,
    is_null_value,
    parse_time,
)
from broker.model.geojson import looks_like_geometry, validate_geometry

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s\x00-\x1f\x7f<>\"{}|\\^`]+$")
_NAME_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f<>\"'=;()&?\\]")
_SCOPE = re.compile(r"^/(?:[^/\s#+]+(?:/[^/\s#+]+)*)?$")
_ENTITY_KEYS = frozenset(
    {"id", "@id", "type", "@type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt"}
)
_VALUE_KEYS = {member: kind for kind, member in VALUE_MEMBER.items() if kind != "GeoProperty"}
# For each value member, the value members an instance carrying it must not also carry.
_OTHER_MEMBERS = {m: frozenset(VALUE_MEMBER.values()) - {m} for m in VALUE_MEMBER.values()}
# Members a client may send but the broker sets itself (or, for lang, uses only to select).
_IGNORED_MEMBERS = frozenset({"createdAt", "modifiedAt", "deletedAt", "instanceId", "lang"})
MAX_ID_LENGTH = 2048
_RESERVED_TYPE_NAMES = frozenset({"type", "id", "scope", "value", "object"})
# Members a Partial Attribute Update fragment may carry without a value member (clause 5.6.4).
_FRAGMENT_MEMBERS = frozenset({"observedAt", "unitCode", "datasetId", "objectType"})


def check_uri(value: Any, what: str) -> str:
    """Return ``value`` if it is an absolute URI, else raise BadRequestData."""
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not _URI.match(value):
        raise BadRequestData(f"{what} must be an absolute URI, got {value!r}")
    return value


def check_name(name: Any, what: str) -> str:
    """Return ``name`` if it can be a type or attribute name, else raise BadRequestData."""
    if not isinstance(name, str) or not name or len(name) > MAX_ID_LENGTH:
        raise BadRequestData(f"{what} must be a non-empty string")
    if not _allowed_name(name):
        raise BadRequestData(f"{what} {name!r} contains a forbidden character")
    return name


@lru_cache(maxsize=4096)
def _allowed_name(name: str) -> bool:
    # The same few attribute names arrive in every message and batch: remember the verdict.
    return _NAME_FORBIDDEN.search(name) is None


def expand_types(raw: Any, tm: TermMap) -> list[str]:
    """Entity type(s) as given (a string or array of strings), expanded, duplicates dropped."""
    names = raw if isinstance(raw, list) else [raw]
    if not names:
        raise BadRequestData("entity type must not be empty")
    expanded: list[str] = []
    for name in names:
        # A non-string (a {} or [] cannot even be looked up in a set) goes on to check_name's refusal.
        if isinstance(name, str) and (name in _RESERVED_TYPE_NAMES or name.startswith("@")):
            # Clause 4.6.2 / 5.2.4: 'type', 'id' and JSON-LD keywords are members, not type names.
            raise BadRequestData(f"{name!r} is a reserved member name and cannot be an entity type")
        iri = tm.expand(check_name(name, "entity type"))
        if iri not in expanded:
            expanded.append(iri)
    return expanded


def parse_scopes(raw: Any, *, allow_null: bool = False) -> list[str] | None:
    """The scope member: a string or array of scope strings ('/Japan/Kagawa')."""
    if allow_null and raw == NULL_URI:
        return []
    scopes = raw if isinstance(raw, list) else [raw]
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise BadRequestData(f"scope {scope!r} is not a valid scope (e.g. '/Japan/Kagawa')")
    return list(dict.fromkeys(scopes))


def parse_entity(
    body: Any,
    tm: TermMap,
    *,
    require_id: bool = True,
    require_type: bool = True,
    allow_null: bool = False,
    max_instances: int = DEFAULT_MAX_INSTANCES,
) -> Entity:
    """Parse a whole entity or an entity fragment (require_id/require_type False)."""
    if isinstance(body, list):
        # Clause 5.5.2: an array where an entity is expected is a malformed request, not bad data.
        raise InvalidRequest("an entity must be a JSON object, not an array")
    if not isinstance(body, dict):
        raise BadRequestData("an entity must be a JSON object")
    raw_id = body.get("id", body.get("@id"))
    if raw_id is None:
        if require_id:
            raise BadRequestData("the entity has no id")
        entity_id = ""
    else:
        entity_id = check_uri(raw_id, "entity id")
    raw_type = body.get("type", body.get("@type"))
    if raw_type is None:
        if require_type:
            raise BadRequestData("the entity has no type")
        types: list[str] = []
    else:
        types = expand_types(raw_type, tm)
    entity = Entity(id=entity_id, types=types)
    if "scope" in body:
        entity.scopes = parse_scopes(body["scope"], allow_null=allow_null)
    for name, raw in body.items():
        if name in _ENTITY_KEYS:
            continue
        iri = tm.expand(check_name(name, "attribute name"))
        entity.attrs[iri] = parse_attribute(iri, raw, tm, allow_null=allow_null, max_instances=max_instances)
    return entity


def parse_attribute(
    iri: str, raw: Any, tm: TermMap, *, allow_null: bool = False, max_instances: int = DEFAULT_MAX_INSTANCES
) -> list[Instance]:
    """All instances of one attribute (a single object, or an array of instances)."""
    if isinstance(raw, list) and raw and all(_is_instance_object(item) for item in raw):
        check_instance_count(iri, len(raw), max_instances)
        instances = [parse_instance(iri, item, tm, allow_null=allow_null) for item in raw]
    else:
        instances = [parse_instance(iri, raw, tm, allow_null=allow_null)]
    seen: set[str | None] = set()
    for instance in instances:
        if iri in GEO_ATTRIBUTES and instance["type"] != "GeoProperty" and not is_null_instance(instance):
            raise BadRequestData(f"attribute {iri} must be a GeoProperty with a GeoJSON geometry value")
        key = instance.get("datasetId")
        if key in seen:
            what = f"datasetId {key}" if key else "the default instance (no datasetId)"
            raise BadRequestData(f"attribute {iri} has {what} twice")
        seen.add(key)
    return instances


def _is_instance_object(item: Any) -> bool:
    return isinstance(item, dict) and ("type" in item or any(k in item for k in _VALUE_KEYS))


def parse_instance(iri: str, raw: Any, tm: TermMap, *, allow_null: bool = False) -> Instance:
    """One attribute instance, normalized or concise, to the stored shape."""
    instance = _normalize(iri, raw)
    kind = instance["type"]
    member = VALUE_MEMBER[kind]
    if member not in instance:
        raise BadRequestData(f"attribute {iri}: a {kind} must have a '{member}' member")
    if not _OTHER_MEMBERS[member].isdisjoint(instance):
        other = sorted(_OTHER_MEMBERS[member].intersection(instance))[0]
        raise BadRequestData(f"attribute {iri}: a {kind} cannot have a '{other}' member")
    out: Instance = {"type": kind}
    if is_null_value(instance[member]):
        if not allow_null:
            raise BadRequestData(
                f"attribute {iri}: NGSI-LD Null ({NULL_URI}) is only allowed in updates and merges"
            )
        out[member] = instance[member]
    else:
        out[member] = _check_value(iri, kind, instance[member], tm)
    for key, value in instance.items():
        if key == "type" or key == member or key in _IGNORED_MEMBERS:
            continue
        if key == "datasetId":
            out[key] = check_uri(value, f"attribute {iri}: datasetId")
        elif key == "observedAt":
            out[key] = check_time(value, f"attribute {iri}: observedAt")
        elif key == "unitCode":
            if not isinstance(value, str) or not value:
                raise BadRequestData(f"attribute {iri}: unitCode must be a non-empty string")
            out[key] = value
        elif key == "objectType":
            if kind not in ("Relationship", "ListRelationship"):
                raise BadRequestData(f"attribute {iri}: objectType belongs to Relationships only")
            out[key] = [tm.expand(check_name(t, "objectType")) for t in _as_list(value)]
        elif key in INSTANCE_MEMBERS:
            raise BadRequestData(f"attribute {iri}: member '{key}' is not allowed here")
        else:
            sub = tm.expand(check_name(key, "sub-attribute name"))
            out[sub] = parse_instance(sub, value, tm, allow_null=allow_null)
    return out


def parse_fragment(iri: str, raw: Any, tm: TermMap) -> Instance:
    """The fragment of a Partial Attribute Update (clause 5.6.4): the members to change.

    A fragment of metadata and sub-attributes only (``{"accuracy": {"value": 0.9}}``) changes
    those and keeps the value; it comes back without "type" or value member. Anything else is
    an attribute instance, normalized or concise, and may be NGSI-LD Null (removes the instance).
    """
    if _is_fragment(raw):
        out = parse_instance(iri, {"type": "Property", "value": 0, **raw}, tm, allow_null=True)
        del out["type"], out["value"]
        return out
    return parse_instance(iri, raw, tm, allow_null=True)


def _is_fragment(raw: Any) -> bool:
    """True for an object of metadata members and sub-attribute instances only, without type or value."""
    if not isinstance(raw, dict) or not raw or "type" in raw or not _VALUE_KEYS.keys().isdisjoint(raw):
        return False
    return all(key in _FRAGMENT_MEMBERS or _is_instance_object(value) for key, value in raw.items())


def _normalize(iri: str, raw: Any) -> dict[str, Any]:
    """Give a concise instance its explicit type (clause 4.5.3 inference rules)."""
    if raw is None:
        raise BadRequestData(f"attribute {iri}: null is not a value; use '{NULL_URI}' to delete")
    if isinstance(raw, dict):
        kind = raw.get("type")
        if "type" in raw and not isinstance(kind, str):
            raise BadRequestData(f"attribute {iri}: 'type' must be a string, not {kind!r}")
        if kind in VALUE_MEMBER:
            return raw
        if looks_like_geometry(raw):
            return {"type": "GeoProperty", "value": raw}
        if kind is not None and any(member in raw for member in _VALUE_KEYS):
            raise BadRequestData(f"attribute {iri}: unknown attribute type {kind!r}")
        for member, inferred in _VALUE_KEYS.items():
            if member in raw:
                if member == "value" and looks_like_geometry(raw["value"]):
                    inferred = "GeoProperty"
                return {"type": inferred, **raw}
        return {"type": "Property", "value": raw}
    return {"type": "Property", "value": raw}


def _check_value(iri: str, kind: str, value: Any, tm: TermMap) -> Any:
    where = f"attribute {iri}"
    if value is None:
        raise BadRequestData(f"{where}: the value must not be null")
    if kind == "GeoProperty":
        validate_geometry(value, where)
    elif kind == "Relationship":
        if isinstance(value, list):
            return [check_uri(v, f"{where}: object") for v in value]
        return check_uri(value, f"{where}: object")
    elif kind == "ListRelationship":
        return [_list_object(v, where) for v in _require_list(value, where, "objectList")]
    elif kind == "LanguageProperty":
        _check_language_map(value, where)
    elif kind == "VocabProperty":
        vocab = [tm.expand(check_name(v, f"{where}: vocab")) for v in _as_list(value)]
        return vocab if isinstance(value, list) else vocab[0]
    elif kind == "ListProperty":
        _require_list(value, where, "valueList")
    elif kind == "JsonProperty" and not isinstance(value, dict | list):
        raise BadRequestData(f"{where}: a JsonProperty's json must be a JSON object or array")
    return value


def _list_object(value: Any, where: str) -> str:
    if isinstance(value, dict) and "object" in value:
        value = value["object"]
    return check_uri(value, f"{where}: objectList entry")


def _require_list(value: Any, where: str, member: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequestData(f"{where}: {member} must be an array")
    return value


def _check_language_map(value: Any, where: str) -> None:
    if not isinstance(value, dict) or not value:
        raise BadRequestData(f"{where}: languageMap must be a non-empty JSON object")
    for lang, text in value.items():
        texts = text if isinstance(text, list) else [text]
        if not all(isinstance(t, str) for t in texts) or not isinstance(lang, str):
            raise BadRequestData(f"{where}: languageMap entry {lang!r} must be a string or array of strings")


def check_time(value: Any, where: str) -> str:
    if not isinstance(value, str) or "T" not in value:
        raise BadRequestData(f"{where} must be an ISO 8601 date-time string such as 2026-11-22T10:00:00Z")
    try:
        return _normal_time(value)
    except (ValueError, OverflowError):
        raise BadRequestData(f"{where} {value!r} is not an ISO 8601 date-time") from None


@lru_cache(maxsize=4096)
def _normal_time(value: str) -> str:
    # observedAt repeats across the attributes of a message and the entities of a batch; parsing
    # and formatting it is a third of an attribute's parse. Errors raise and are not cached.
    return format_time(parse_time(value))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parse_id_list(body: Any) -> list[str]:
    """The body of a batch delete: an array of entity ids."""
    if not isinstance(body, list):
        raise BadRequestData("the body must be a JSON array of entity ids")
    return [check_uri(item, "entity id") for item in body]
