"""``orderBy``: the NGSI-LD Entity Ordering Language (clause 4.23 of V1.9.1) and its SQL ORDER BY.

A comma-separated list of terms ``AttrName[;asc|;desc|;dist-asc|;dist-desc]`` (``!name`` is
accepted for descending, as FIWARE Orion writes it). A name is an attribute (its default
instance), optionally with ``.member`` (a metadata member such as observedAt, or a
sub-attribute) and ``[key]`` paths into a JSON value (``address[city]``); ``id``, ``type``,
``createdAt`` and ``modifiedAt`` are the entity's own. Values of mixed types compare as clause
4.23.2 lists them (numbers, strings, objects, arrays, booleans, times, dates, date-times, null,
then entities without the attribute); strings in ICU root collation (``und-x-icu``).
``dist-asc``/``dist-desc`` order a GeoProperty by its geodesic distance from ``orderFrom``
(coordinates of an ``orderGeometry``, Point by default), entities without it last. The id always
breaks ties, so pages never overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from broker.errors import BadRequestData
from broker.jsonld.context import TermMap
from broker.model.entity import LOCATION
from broker.model.geojson import validate_geometry
from broker.model.parse import check_name
from broker.query.params import Params

MAX_ORDER_KEYS = 4
# ICU root collation, the default clause 4.23.1 names; other collations are not offered (501).
DEFAULT_COLLATION = "und-x-icu"
_COLUMNS = {
    "id": "{a}.id",
    "type": "{a}.types[1]",
    "createdAt": "{a}.created_at",
    "modifiedAt": "{a}.modified_at",
}
_DIRECTIONS = ("asc", "desc", "dist-asc", "dist-desc")
_METADATA = frozenset({"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "lang"})
_TERM = re.compile(r"^(?P<name>[^.\[\]]+)(?:\.(?P<member>[^.\[\]]+))?(?P<keys>(?:\[[^\[\]]+\])*)$")
_VALUE = (
    "coalesce({i}->'value', {i}->'object', {i}->'vocab', {i}->'languageMap', {i}->'json', {i}->'valueList')"
)


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One term of orderBy: an entity column, or an expanded attribute with its member and path."""

    name: str
    descending: bool = False
    attribute: bool = True
    member: str | None = None
    keys: tuple[str, ...] = ()
    # For dist-asc/dist-desc: the GeoJSON geometry distances are measured from.
    origin: dict[str, Any] | None = None


def parse_order_by(
    raw: str, tm: TermMap, order_from: str | None = None, order_geometry: str | None = None
) -> tuple[OrderKey, ...]:
    """The terms of an orderBy parameter (with orderFrom/orderGeometry for distances); 400 if malformed."""
    keys: list[OrderKey] = []
    for part in raw.split(","):
        text, _, direction = part.strip().partition(";")
        text, direction = text.strip(), direction.strip()
        legacy = text.startswith("!")
        if legacy:
            text = text[1:]
        if (direction and direction not in _DIRECTIONS) or (legacy and direction):
            raise BadRequestData(
                f"orderBy: {part.strip()!r} must be a name with ;asc, ;desc, ;dist-asc or ;dist-desc"
            )
        keys.append(
            _key(
                text, legacy or direction in ("desc", "dist-desc"), direction, tm, order_from, order_geometry
            )
        )
    if len(keys) > MAX_ORDER_KEYS:
        raise BadRequestData(f"orderBy takes at most {MAX_ORDER_KEYS} terms")
    return tuple(keys)


def _key(
    text: str, descending: bool, direction: str, tm: TermMap, order_from: str | None, geometry: str | None
) -> OrderKey:
    match = _TERM.match(text)
    if match is None:
        raise BadRequestData(f"orderBy: {text!r} is not an attribute path (name, name.member, name[key])")
    name = check_name(match["name"], "orderBy attribute")
    member, raw_keys = match["member"], match["keys"]
    paths = tuple(k for k in re.findall(r"\[([^\[\]]+)\]", raw_keys)) if raw_keys else ()
    if direction.startswith("dist"):
        if member or paths or name in _COLUMNS:
            raise BadRequestData("orderBy: dist-asc/dist-desc apply to a GeoProperty name only")
        return OrderKey(_expand(name, tm), descending, origin=_origin(order_from, geometry))
    if name in _COLUMNS:
        if member or paths:
            raise BadRequestData(f"orderBy: {name} has no members")
        return OrderKey(name, descending, attribute=False)
    if member is not None and member not in _METADATA:
        member = tm.expand(check_name(member, "orderBy sub-attribute"))
    return OrderKey(_expand(name, tm), descending, member=member, keys=paths)


def _expand(name: str, tm: TermMap) -> str:
    return LOCATION if name == "location" else tm.expand(name)


def _origin(order_from: str | None, geometry: str | None) -> dict[str, Any]:
    if order_from is None:
        raise BadRequestData("orderBy with dist-asc/dist-desc needs orderFrom (coordinates, clause 4.23.3)")
    try:
        coordinates = orjson.loads(order_from)
    except orjson.JSONDecodeError:
        raise BadRequestData("orderFrom must be GeoJSON coordinates such as [134.05,34.34]") from None
    origin = {"type": geometry or "Point", "coordinates": coordinates}
    validate_geometry(origin, "orderFrom")
    return origin


def instance_value(instance: str, key: OrderKey, params: Params) -> str:
    """The SQL value a key orders ``instance`` (a jsonb attribute instance) by: value, member, path."""
    if key.member is None:
        value = _VALUE.format(i=instance)
    elif key.member in _METADATA:
        value = f"{instance}->{params.add(key.member, 'text')}"
    else:
        sub = f"({instance}->{params.add(key.member, 'text')})"
        value = _VALUE.format(i=sub)
    if key.keys:
        value = f"({value} #> {params.add(list(key.keys), 'text[]')})"
    return value


def sort_terms(value: str, descending: bool) -> list[str]:
    """ORDER BY terms ranking a jsonb ``value`` as clause 4.23.2 compares mixed types."""
    rank = (
        f"CASE WHEN {value} IS NULL THEN 10"
        f" WHEN jsonb_typeof({value}) = 'number' THEN 0"
        f" WHEN jsonb_typeof({value}) = 'string' THEN 1"
        f" WHEN jsonb_typeof({value}) = 'object' AND {value}->>'@type' = 'Time' THEN 5"
        f" WHEN jsonb_typeof({value}) = 'object' AND {value}->>'@type' = 'Date' THEN 6"
        f" WHEN jsonb_typeof({value}) = 'object' AND {value}->>'@type' = 'DateTime' THEN 7"
        f" WHEN jsonb_typeof({value}) = 'object' THEN 2"
        f" WHEN jsonb_typeof({value}) = 'array' THEN 3"
        f" WHEN jsonb_typeof({value}) = 'boolean' THEN 4"
        " ELSE 8 END"
    )
    number = f"CASE WHEN jsonb_typeof({value}) = 'number' THEN ({value} #>> '{{}}')::float8 END"
    text = (
        f"(CASE WHEN jsonb_typeof({value}) = 'string' THEN {value} #>> '{{}}'"
        f" WHEN jsonb_typeof({value}) = 'object' THEN {value}->>'@value' END) COLLATE \"und-x-icu\""
    )
    direction = "DESC" if descending else "ASC"
    # The type rank stays ascending either way: missing values are last in both directions.
    return [rank, f"{number} {direction}", f"{text} {direction}", f"{value} {direction}"]


def order_sql(keys: tuple[OrderKey, ...], params: Params, alias: str = "e") -> str:
    """The ORDER BY list (without the keyword) of ``keys`` over the entities row ``alias``."""
    parts: list[str] = []
    for key in keys:
        if not key.attribute:
            direction = "DESC" if key.descending else "ASC"
            parts.append(f"{_COLUMNS[key.name].format(a=alias)} {direction} NULLS LAST")
        elif key.origin is not None:
            parts.append(f"{_distance(key, params, alias)} {'DESC' if key.descending else 'ASC'} NULLS LAST")
        else:
            instance = (
                f"(SELECT i FROM jsonb_array_elements({alias}.attrs->{params.add(key.name, 'text')}) i"
                " ORDER BY i ? 'datasetId' LIMIT 1)"
            )
            parts.extend(sort_terms(instance_value(instance, key, params), key.descending))
    parts.append(f"{alias}.id")
    return ", ".join(parts)


def _distance(key: OrderKey, params: Params, alias: str) -> str:
    reference = (
        f"(SELECT ST_SetSRID(ST_GeomFromGeoJSON({params.add(orjson.dumps(key.origin).decode(), 'text')}),"
        " 4326)::geography)"
    )
    if key.name == LOCATION:
        return f"ST_Distance({alias}.location::geography, {reference})"
    return (
        f"(SELECT ST_Distance(g.geom::geography, {reference}) FROM entity_geometries g"
        f" WHERE g.tenant = {alias}.tenant AND g.entity_id = {alias}.id"
        f" AND g.attr = {params.add(key.name, 'text')} AND g.dataset_id = '')"
    )
