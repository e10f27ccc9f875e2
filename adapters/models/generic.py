"""The FIWARE IoT Agent mapping: measures to attributes by the device's provisioned attribute list.

As the IoT Agents do in NGSI-LD mode: a mapped measure (object_id) becomes the attribute ``name``
with its type, unitCode and metadata; an unmapped one passes as a Property under its own name
unless the device has explicitAttrs; static attributes are added; every measured attribute gets
observedAt (the TimeInstant measure when the device has ``timestamp``, else the reception time).
NGSI-v2 types from old provisioning ('Number', 'Text', 'geo:point', ...) are read as NGSI-LD ones.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from adapters.device import AttributeMapping, DeviceConfig, EntityUpdate, StaticAttribute
from adapters.message import Measures, Rejected, to_utc
from adapters.models import common

_GEO_TYPES = frozenset({"GeoProperty", "geo:point", "geo:json", "geo:line", "geo:polygon", "geo:box"})
_NUMBER_TYPES = frozenset({"Number", "Float", "Integer", "Int", "Double"})
_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})


def entity(
    device: DeviceConfig,
    measures: Measures,
    observed_at: datetime,
    terms: common.Terms = common.bundled_terms,
) -> EntityUpdate:
    """The device's own entity (entity_name, entity_type) from its measures."""
    observed = common.observed_time(device, measures, observed_at, None)
    body: dict[str, Any] = {"id": device.entity_name, "type": device.entity_type}
    body.update(attributes(device, measures, observed, explicit=device.explicit_attrs))
    body.update(static_attributes(device.static_attributes))
    # Every name and value here comes from the provisioning or the measures: all foreign.
    return common.build(body, context(device), terms, foreign=body)


def attributes(
    device: DeviceConfig,
    measures: Measures,
    observed: str,
    *,
    explicit: bool,
    consumed: Collection[str] = (),
) -> dict[str, Any]:
    """Attributes of the measures the mapping covers (all unless ``explicit``), minus ``consumed``."""
    out: dict[str, Any] = {}
    for object_id, value in measures.items():
        if object_id in consumed or (object_id == "TimeInstant" and device.timestamp):
            continue
        mapping = device.attribute(object_id)
        if mapping is None:
            if explicit:
                continue
            mapping = AttributeMapping(object_id=object_id, name=object_id)
        if value is None:
            raise Rejected(f"measure {object_id!r} is null")
        if mapping.name in common.RESERVED:
            raise Rejected(f"measure {object_id!r} would overwrite the entity member {mapping.name!r}")
        out[mapping.name] = attribute(mapping, value, observed)
    return out


def attribute(mapping: AttributeMapping, value: Any, observed: str | None) -> dict[str, Any]:
    """One measure as an NGSI-LD attribute of the mapping's type."""
    where = f"measure {mapping.object_id}"
    # The IoT Agent type as provisioned says how to read the value ("Number" from UltraLight text).
    kind = mapping.source_type or mapping.type
    attr: dict[str, Any]
    if kind in _GEO_TYPES:
        if kind != "geo:point" and isinstance(value, dict) and "coordinates" in value:
            attr = common.geo(value)  # GeoJSON as sent; the broker checks the geometry
        else:
            attr = common.geo(common.point(value, where))
    elif kind == "Relationship":
        if not isinstance(value, str) or ":" not in value:
            raise Rejected(
                f"{where} is {common.short(value)}, not an entity id ({mapping.name} is a Relationship)"
            )
        attr = common.relationship(value)
    else:
        attr = common.prop(_typed(kind, value, where))
    if observed is not None:
        attr["observedAt"] = observed
    if mapping.unit_code is not None:
        attr["unitCode"] = mapping.unit_code
    for name, meta in mapping.metadata.items():
        if name == "unitCode":
            attr["unitCode"] = meta.get("value") if isinstance(meta, dict) else meta
        elif isinstance(meta, dict) and meta.get("type") in ("Property", "Relationship", "GeoProperty"):
            attr[name] = meta
        else:
            attr[name] = common.prop(meta.get("value") if isinstance(meta, dict) else meta)
    return attr


def static_attributes(statics: Collection[StaticAttribute]) -> dict[str, Any]:
    """The provisioned static attributes (no observedAt: nobody measured them)."""
    out: dict[str, Any] = {}
    for static in statics:
        mapping = AttributeMapping(
            object_id=static.name, name=static.name, type=static.type, unit_code=static.unit_code
        )
        out[static.name] = attribute(mapping, static.value, None)
    return out


def _typed(kind: str, value: Any, where: str) -> Any:
    """A Property value cast to the provisioned type (UltraLight sends every value as text)."""
    if kind in _NUMBER_TYPES:
        return common.number(value, where)
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise Rejected(f"{where} is {common.short(value)}, not a boolean")
    if kind in ("Text", "String"):
        return value if isinstance(value, str) else str(value)
    if kind in ("DateTime", "ISO8601"):
        return {"@type": "DateTime", "@value": common.iso(to_utc(value, where=where))}
    return value


def context(device: DeviceConfig) -> tuple[str, ...]:
    """The device's own @context (model_params 'context': a URL or list), then the core context."""
    extra = device.model_params.get("context")
    if extra is None:
        return common.CORE
    urls = [extra] if isinstance(extra, str) else list(extra)
    return (*[str(u) for u in urls if str(u) != common.CORE_CONTEXT], common.CORE_CONTEXT)
