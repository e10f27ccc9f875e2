"""Building blocks every model uses: attribute shapes, times, numbers, points, the @context tuples.

Models make each attribute instance in the shape the broker stores (core members, observedAt
in UTC) under the short terms of the Smart Data Model context the entity names (bundled with
the broker, broker/jsonld/bundled/index.json); ``build`` expands the names with that context's
term map, as the broker's resolver compiles it, and gives the keyValues form for the schema in
the same pass. Nothing is parsed again on the way to the write path, except what came from
outside the model: attributes named by provisioning or by the measures themselves (``foreign``),
which get the API parser's checks, and every entity id, which must be a URI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from adapters.device import DeviceConfig, EntityUpdate
from adapters.message import Measures, Rejected, to_utc
from adapters.validate import attribute_value
from broker.jsonld.context import (
    TermMap,
    bundled_document,
    compile_contexts,
    context_objects,
    core_document,
    is_core_url,
)
from broker.model.entity import Entity
from broker.model.parse import check_name, check_uri, expand_types, parse_attribute

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
ENVIRONMENT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld",
    CORE_CONTEXT,
)
TRANSPORTATION = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld",
    CORE_CONTEXT,
)
DEVICE = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Device/master/context.jsonld",
    CORE_CONTEXT,
)
CORE = (CORE_CONTEXT,)

# Measure names a device cannot use for an attribute: they are entity members in NGSI-LD.
RESERVED = frozenset({"id", "type", "@id", "@type", "@context", "scope"})
# Members the broker sets itself: the API parser skips them in a body, so a measure so named is
# no attribute (it stays in the keyValues the schema sees, as before).
_SYSTEM = frozenset({"createdAt", "modifiedAt", "deletedAt"})

# The compiled @context of a context tuple (adapters.wiring gives the broker's resolver for one
# that is not bundled: a generic device's own context).
Terms = Callable[[tuple[str, ...]], TermMap]


@cache
def is_bundled(context: tuple[str, ...]) -> bool:
    """True when every URL of ``context`` is the core context or one bundled with the broker
    (remembered: bundled_document reads the file)."""
    return all(is_core_url(url) or bundled_document(url) is not None for url in context)


@cache
def bundled_terms(context: tuple[str, ...]) -> TermMap:
    """The term map of a context of bundled documents, compiled as the broker's resolver does
    (bundled documents are read before any stored one, so the result is the same)."""
    documents: list[Mapping[str, Any]] = []
    for url in context:
        if is_core_url(url):
            continue
        document = bundled_document(url)
        if document is None:
            raise Rejected(f"@context {url} is not bundled with the broker and was not resolved")
        documents.extend(context_objects(document))
    return compile_contexts(documents, core_document())


def build(
    body: dict[str, Any],
    context: tuple[str, ...],
    terms: Terms = bundled_terms,
    *,
    foreign: Collection[str] = (),
) -> EntityUpdate:
    """The expanded entity of ``body`` (id, type and instances under short terms of ``context``).

    Instances the model made are taken as they are (one each, the default instance); those of
    ``foreign`` attributes, and their names, are checked as the API parser checks a request's.
    Raises BadRequestData (an NgsiLdError) for what the broker would refuse.
    """
    tm = terms(context)
    entity_id = check_uri(body["id"], "entity id")
    kind = body["type"]
    entity = Entity(id=entity_id, types=expand_types(kind, tm))
    values: dict[str, Any] = {"id": entity_id, "type": kind}
    attrs = entity.attrs
    for name, instance in body.items():
        if name == "id" or name == "type":
            continue
        values[name] = attribute_value(instance)
        if name in _SYSTEM:
            continue
        if name in foreign:
            iri = tm.expand(check_name(name, "attribute name"))
            attrs[iri] = parse_attribute(iri, instance, tm)
        else:
            iri = tm.expand(name)
            if instance["type"] == "Relationship":
                check_uri(instance["object"], f"attribute {iri}: object")
            attrs[iri] = [instance]
    return EntityUpdate(entity, values, context, tm)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a Z; whole seconds stay whole (as in the reference entities)."""
    moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment.microsecond == 0:
        return moment.isoformat(timespec="seconds") + "Z"
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec) + "Z"


def prop(value: Any, *, unit: str | None = None, observed: str | None = None) -> dict[str, Any]:
    """A Property, with its unitCode and observedAt when given."""
    attr: dict[str, Any] = {"type": "Property", "value": value}
    if unit is not None:
        attr["unitCode"] = unit
    if observed is not None:
        attr["observedAt"] = observed
    return attr


def date_time(moment: str) -> dict[str, Any]:
    """A Property whose value is an NGSI-LD DateTime (typed, so temporal queries treat it as a time)."""
    return {"type": "Property", "value": {"@type": "DateTime", "@value": moment}}


def geo(point: dict[str, Any], *, observed: str | None = None) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "GeoProperty", "value": point}
    if observed is not None:
        attr["observedAt"] = observed
    return attr


def relationship(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


def observed_time(device: DeviceConfig, measures: Measures, observed_at: datetime, key: str | None) -> str:
    """When the measures were taken: the device's own time measure if it sends one, else ``observed_at``.

    ``key`` names a per-measure time (e.g. a BLE sighting's "ts"); the IoT Agent 'TimeInstant'
    measure counts when the device has ``timestamp`` on.
    """
    for name in (key, "TimeInstant" if device.timestamp else None):
        if name is not None and name in measures:
            return iso(to_utc(measures[name], where=f"measure {name}"))
    return iso(observed_at)


def number(value: Any, where: str) -> float | int:
    """A finite number from a measure (gateways send numbers, UltraLight sends text)."""
    if isinstance(value, bool):
        raise Rejected(f"{where} is {short(value)}, not a number")
    if isinstance(value, int | float):
        result: float | int = value
    elif isinstance(value, str):
        try:
            result = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            raise Rejected(f"{where} is {short(value)}, not a number") from None
    else:
        raise Rejected(f"{where} is {short(value)}, not a number")
    if not math.isfinite(result):
        raise Rejected(f"{where} is {short(value)}, not a finite number")
    return result


def measure_name(device: DeviceConfig, param: str, default: str) -> str:
    """Which measure a model reads for a quantity: the model parameter ``param`` names it; else the
    measure the provisioning maps to the attribute ``default`` (IoT Agent style: object_id
    "analog_in_2" -> name "speed"); else the measure called ``default``."""
    explicit = device.model_params.get(param)
    if explicit is not None:
        return str(explicit)
    for mapping in device.attributes:
        if mapping.name == default:
            return mapping.object_id
    return default


def param_number(device: DeviceConfig, name: str, *, required: bool = False) -> float | None:
    """A numeric model parameter (thresholds, heights), None when absent and not required."""
    value = device.model_params.get(name)
    if value is None:
        if required:
            raise Rejected(f"device {device.device_id} has no model parameter {name!r}")
        return None
    return float(number(value, f"model parameter {name}"))


def point(value: Any, where: str) -> dict[str, Any]:
    """A GeoJSON Point from the shapes gateways send; raises Rejected for missing or impossible positions.

    Accepted: CayenneLPP {latitude, longitude[, altitude]}, {lat, lon}, a GeoJSON Point, an IoT Agent
    geo:point text "lat, lon", or [lon, lat] (GeoJSON order). [0, 0] is a tracker without a fix.
    """
    lat: Any
    lon: Any
    if isinstance(value, Mapping):
        if value.get("type") == "Point":
            return point(value.get("coordinates"), where)
        lat = value.get("latitude", value.get("lat"))
        lon = value.get("longitude", value.get("lon", value.get("lng")))
    elif isinstance(value, str):
        parts = value.split(",")
        if len(parts) != 2:
            raise Rejected(f"{where} {short(value)} is not 'latitude, longitude'")
        lat, lon = parts
    elif isinstance(value, list | tuple) and len(value) in (2, 3):
        lon, lat = value[0], value[1]
    else:
        raise Rejected(f"{where} is {short(value)}, not a position")
    if lat is None or lon is None:
        raise Rejected(f"{where} has no coordinates (null latitude or longitude)")
    latitude = float(number(lat, f"{where} latitude"))
    longitude = float(number(lon, f"{where} longitude"))
    if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
        raise Rejected(f"{where} ({latitude}, {longitude}) is outside the latitude/longitude ranges")
    if latitude == 0 and longitude == 0:
        raise Rejected(f"{where} is (0, 0): the tracker has no position fix")
    return {"type": "Point", "coordinates": [longitude, latitude]}


def text_list(value: Any) -> list[str]:
    """A model parameter that is a list of words, given as a list or as one word."""
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def sibling_id(device: DeviceConfig, kind: str) -> str:
    """The id of another entity of this device: the entity name with its type swapped for ``kind``."""
    prefix = f"urn:ngsi-ld:{device.entity_type}:"
    if device.entity_name.startswith(prefix):
        return f"urn:ngsi-ld:{kind}:{device.entity_name[len(prefix) :]}"
    return f"urn:ngsi-ld:{kind}:{device.device_id}"


def short(value: Any) -> str:
    """A value as quoted in a rejection reason: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
