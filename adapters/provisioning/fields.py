"""The list fields of IoT Agent provisioning (attributes, static attributes, commands, our layouts).

Each parser is a check of the broker's shape kit (broker.shape: ``(value, name) -> typed value``)
and returns the adapters.device dataclasses, converting the IoT Agents' NGSI-v2 attribute types to
NGSI-LD ones here and nowhere else; each ``*_json`` renders them back so that parsing the rendering
gives the same values. ``SHAPE`` is the kit as the IoT Agent API uses it: its errors carry the
WRONG_SYNTAX name, and a member given as null counts as not given (as iotagent-node-lib reads it).
"""

from __future__ import annotations

import re
from typing import Any

from adapters.device import AttributeMapping, Codec, Command, LayoutField, StaticAttribute
from adapters.message import FAMILIES, Family
from broker.errors import BadRequestData
from broker.model.parse import check_name, check_uri
from broker.shape import Check, Shape

# The IoT Agent error name for a body it cannot accept (its "name" field, kept in ProblemDetails).
WRONG_SYNTAX = "WRONG_SYNTAX"

PROPERTY = "Property"
GEO_PROPERTY = "GeoProperty"
RELATIONSHIP = "Relationship"
LANGUAGE_PROPERTY = "LanguageProperty"
_LD_TYPES = (PROPERTY, GEO_PROPERTY, RELATIONSHIP, LANGUAGE_PROPERTY)
_GEOJSON_TYPES = frozenset(
    ("point", "multipoint", "linestring", "multilinestring", "polygon", "multipolygon", "geometrycollection")
)
_LAT_LON = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")
_KINDS = ("int", "float", "bool", "hex")
# IoT Agent protocol names (and LoRaWAN network servers) -> adapters.message families.
_PROTOCOLS = {
    "iota-json": Family.IOTA_JSON, "pdi-iota-json": Family.IOTA_JSON, "json": Family.IOTA_JSON,
    "iota-ul": Family.IOTA_UL, "pdi-iota-ultralight": Family.IOTA_UL, "ul": Family.IOTA_UL,
    "ultralight": Family.IOTA_UL,
    "tts": Family.TTS, "ttn": Family.TTS, "the-things-stack": Family.TTS,
    "chirpstack": Family.CHIRPSTACK, "loraserver.io": Family.CHIRPSTACK,
    "sigfox": Family.SIGFOX, "iota-sigfox": Family.SIGFOX,
}  # fmt: skip
_LORAWAN_NAMES = ("lorawan", "iota-lorawan", "pdi-iota-lorawan")
_DEV_EUI = re.compile(r"^[0-9a-fA-F]{16}$")

# NGSI-v2 attribute fields the IoT Agents evaluate with JEXL: refused rather than silently ignored.
_UNSUPPORTED = ("expression", "skipValue", "entity_name", "entity_type", "reverse")


def _bad(detail: str) -> BadRequestData:
    return BadRequestData(detail, name=WRONG_SYNTAX)


SHAPE = Shape(_bad, null_is_absent=True)
FLAG = SHAPE.flag()
OBJECT = SHAPE.obj()
NUMBER = SHAPE.number()
CODEC = SHAPE.enum_of(Codec)


def key_text(limit: int = 256) -> Check[str]:
    """A string with something in it besides blanks, no NUL, at most ``limit`` characters (keys must
    fit in a btree index entry)."""
    text = SHAPE.text(limit=limit)

    def check(value: Any, where: str) -> str:
        found = text(value, where)
        if not found.strip() or "\x00" in found:
            SHAPE.fail(f"{where} must be a non-empty string")
        return found

    return check


KEY = key_text()


def attribute_name(value: Any, where: str) -> str:
    """An NGSI-LD attribute or type name (broker.model.parse's rule), refused as WRONG_SYNTAX."""
    try:
        return check_name(value, where)
    except BadRequestData as error:
        raise _bad(error.detail) from None


def objects(value: Any, where: str) -> list[dict[str, Any]]:
    """A JSON array of objects (the IoT Agents' attribute, command and layout lists)."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        SHAPE.fail(f"{where} must be an array of objects")
    return value


def ld_type(given: str) -> str:
    """The NGSI-LD attribute type of an IoT Agent (NGSI-v2) one: geo:* GeoProperty, else Property."""
    low = given.lower()
    if low.startswith("geo:") or low == "geoproperty" or low in _GEOJSON_TYPES:
        return GEO_PROPERTY
    if low == "relationship":
        return RELATIONSHIP
    if low == "languageproperty":
        return LANGUAGE_PROPERTY
    return PROPERTY


def _unit_code(item: dict[str, Any], metadata: dict[str, Any], where: str) -> str | None:
    """unitCode as our field, or as IoT Agent metadata {"unitCode": {"type": "Text", "value": ...}}."""
    value = item.get("unitCode", metadata.get("unitCode"))
    if isinstance(value, dict):
        value = value.get("value")
    if value is None:
        return None
    return KEY(value, f"{where}: unitCode")


def _sub_properties(metadata: dict[str, Any], where: str) -> dict[str, Any]:
    """IoT Agent metadata ({"accuracy": {"type": "Number", "value": 1}}) as NGSI-LD sub-properties."""
    out: dict[str, Any] = {}
    for name, meta in metadata.items():
        if name == "unitCode":
            continue
        attribute_name(name, f"{where}: metadata name")
        if not isinstance(meta, dict) or ("value" not in meta and "object" not in meta):
            raise _bad(f"{where}: metadata {name!r} must be an object with a value")
        kind = ld_type(str(meta.get("type", PROPERTY)))
        key = "object" if kind == RELATIONSHIP else "value"
        out[name] = {"type": kind, key: meta.get(key, meta.get("value"))}
    return out


def _attribute_entry(item: dict[str, Any], where: str) -> tuple[str, str, str, dict[str, Any]]:
    """What every attributes / static_attributes entry has: its name (not id or type), the name
    messages call it by, its type as given (Property when absent) and its metadata."""
    name = SHAPE.required(item, "name", attribute_name, f"{where}: ")
    here = f"{where}: {name!r}"
    if name in ("id", "type"):
        raise _bad(f"{here}: 'id' and 'type' cannot be attribute names")
    given = SHAPE.optional(item, "type", KEY, f"{here}: ") or PROPERTY
    return name, here, given, SHAPE.optional(item, "metadata", OBJECT, f"{here}: ") or {}


def parse_attributes(value: Any, where: str) -> tuple[AttributeMapping, ...]:
    """IoT Agent 'attributes': object_id (default: name), name, type, metadata; unique object ids."""
    out: list[AttributeMapping] = []
    for item in objects(value, where):
        name, here, given, metadata = _attribute_entry(item, where)
        for key in _UNSUPPORTED:
            if key in item:
                raise _bad(f"{here}: {key} is not supported by this broker")
        object_id = SHAPE.optional(item, "object_id", KEY, f"{here}: ") or name
        out.append(
            AttributeMapping(
                object_id=object_id,
                name=name,
                type=ld_type(given),
                unit_code=_unit_code(item, metadata, here),
                metadata=_sub_properties(metadata, here),
                source_type=None if given in _LD_TYPES else given,
            )
        )
    seen = [a.object_id for a in out]
    duplicates = sorted({x for x in seen if seen.count(x) > 1})
    if duplicates:
        raise _bad(f"{where}: object_id {', '.join(map(repr, duplicates))} given more than once")
    return tuple(out)


def attributes_json(attributes: tuple[AttributeMapping, ...]) -> list[dict[str, Any]]:
    out = []
    for a in attributes:
        item: dict[str, Any] = {"object_id": a.object_id, "name": a.name, "type": a.source_type or a.type}
        if a.unit_code is not None:
            item["unitCode"] = a.unit_code
        if a.metadata:
            item["metadata"] = a.metadata
        out.append(item)
    return out


def _static_value(kind: str, given: str, value: Any, where: str) -> Any:
    """A static value in NGSI-LD terms: "lat, lon" text of a geo:point becomes a GeoJSON Point."""
    if value is None:
        raise _bad(f"{where}: value is missing")
    if kind == GEO_PROPERTY:
        if isinstance(value, str) and given.lower() == "geo:point":
            match = _LAT_LON.match(value)
            if match is None:
                raise _bad(f"{where}: a geo:point value is 'latitude, longitude', got {value!r}")
            return {"type": "Point", "coordinates": [float(match.group(2)), float(match.group(1))]}
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            raise _bad(f"{where}: a geo value must be a GeoJSON geometry")
    if kind == RELATIONSHIP:
        try:
            check_uri(value, f"{where}: object")
        except BadRequestData as error:
            raise _bad(error.detail) from None
    return value


def parse_static(value: Any, where: str) -> tuple[StaticAttribute, ...]:
    """IoT Agent 'static_attributes': name, type, value (and metadata.unitCode)."""
    out: list[StaticAttribute] = []
    for item in objects(value, where):
        name, here, given, metadata = _attribute_entry(item, where)
        kind = ld_type(given)
        raw = item.get("object", item.get("value")) if kind == RELATIONSHIP else item.get("value")
        value = _static_value(kind, given, raw, here)
        out.append(StaticAttribute(name, kind, value, _unit_code(item, metadata, here)))
    return tuple(out)


def static_json(statics: tuple[StaticAttribute, ...]) -> list[dict[str, Any]]:
    out = []
    for s in statics:
        item: dict[str, Any] = {"name": s.name, "type": s.type, "value": s.value}
        if s.unit_code is not None:
            item["unitCode"] = s.unit_code
        out.append(item)
    return out


def parse_commands(value: Any, where: str) -> tuple[Command, ...]:
    """IoT Agent 'commands': name (type "command"), and ours: object_id, port (LoRaWAN FPort)."""
    out: list[Command] = []
    for item in objects(value, where):
        name = SHAPE.required(item, "name", attribute_name, f"{where}: ")
        object_id = SHAPE.optional(item, "object_id", KEY, f"{where}: ")
        port = item.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 223):
            raise _bad(f"{where}: {name!r}: port must be an integer 1..223")
        out.append(Command(name, object_id, port))
    return tuple(out)


def commands_json(commands: tuple[Command, ...]) -> list[dict[str, Any]]:
    out = []
    for c in commands:
        item: dict[str, Any] = {"name": c.name, "type": "command"}
        if c.object_id is not None:
            item["object_id"] = c.object_id
        if c.port is not None:
            item["port"] = c.port
        out.append(item)
    return out


# --- LPWA: protocol names, IoTA-LoRaWAN settings, DevEUI ---------------------------------------


def parse_protocol(value: Any, where: str) -> Family | None:
    """The family an IoT Agent protocol name says (None: a LoRaWAN name, the settings say which)."""
    name = KEY(value, where).lower()
    if name in _LORAWAN_NAMES:
        return None  # which network server: internal_attributes.lorawan says (see lorawan_settings)
    if name not in _PROTOCOLS:
        raise _bad(f"{where} {value!r} is not one of {', '.join(FAMILIES)}")
    return _PROTOCOLS[name]


def lorawan_settings(data: dict[str, Any], what: str) -> tuple[Family | None, Codec | None]:
    """(protocol, codec) as IoTA-LoRaWAN says them: internal_attributes.lorawan's
    application_server.provider ("TTN", "loraserver.io", "chirpstack") and data_model."""
    internal = data.get("internal_attributes")
    lorawan = internal.get("lorawan") if isinstance(internal, dict) else None
    if not isinstance(lorawan, dict):
        return None, None
    server = lorawan.get("application_server")
    provider = server.get("provider") if isinstance(server, dict) else None
    where = f"{what}: internal_attributes.lorawan.application_server.provider"
    protocol = None if provider is None else parse_protocol(provider, where)
    model = lorawan.get("data_model")
    if model not in (None, "cayennelpp", "application_server"):
        raise _bad(f"{what}: data_model {model!r} is not supported (cayennelpp or application_server)")
    return protocol, Codec.CAYENNE if model == "cayennelpp" else None


def parse_dev_eui(data: dict[str, Any], what: str) -> str | None:
    """The DevEUI, ours or as IoTA-LoRaWAN gives it (internal_attributes.lorawan.dev_eui)."""
    found = [data.get("dev_eui")]
    internal = data.get("internal_attributes")
    if isinstance(internal, dict) and isinstance(internal.get("lorawan"), dict):
        found.append(internal["lorawan"].get("dev_eui"))
    values = {v.lower() if isinstance(v, str) else v for v in found if v is not None}
    if not values:
        return None
    if len(values) > 1:
        raise _bad(f"{what}: dev_eui and internal_attributes.lorawan.dev_eui differ")
    value = values.pop()
    if not isinstance(value, str) or not _DEV_EUI.match(value):
        raise _bad(f"{what}: dev_eui {value!r} is not 16 hex digits")
    return value


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _layout_field(item: dict[str, Any], where: str) -> LayoutField:
    name = SHAPE.required(item, "name", attribute_name, f"{where}: ")
    here = f"{where}: {name!r}"
    offset, length = item.get("offset"), item.get("length")
    for key, number in (("offset", offset), ("length", length)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise _bad(f"{here}: {key} must be a non-negative integer")
    assert isinstance(offset, int)
    assert isinstance(length, int)
    kind = item.get("kind", "int")
    if kind not in _KINDS:
        raise _bad(f"{here}: kind must be one of {', '.join(_KINDS)}")
    if kind == "float" and length not in (4, 8):
        raise _bad(f"{here}: a float field has length 4 or 8")
    if kind in ("int", "bool") and length not in (1, 2, 4, 8):
        raise _bad(f"{here}: an integer field has length 1, 2, 4 or 8")
    if length == 0:
        raise _bad(f"{here}: length must be positive")
    bits = item.get("bits")
    if bits is not None:
        ok = isinstance(bits, list) and len(bits) == 2 and all(type(b) is int for b in bits)
        if not ok or bits[0] < 0 or bits[1] < 1 or bits[0] + bits[1] > length * 8 or kind != "int":
            raise _bad(f"{here}: bits is [first bit, count] inside an integer field's {length * 8} bits")
    signed = SHAPE.optional(item, "signed", FLAG, f"{here}: ")
    big_endian = SHAPE.optional(item, "big_endian", FLAG, f"{here}: ")
    return LayoutField(
        name=name,
        offset=offset,
        length=length,
        signed=bool(signed),
        scale=_or(SHAPE.optional(item, "scale", NUMBER, f"{here}: "), 1.0),
        add=_or(SHAPE.optional(item, "add", NUMBER, f"{here}: "), 0.0),
        big_endian=True if big_endian is None else big_endian,
        bits=None if bits is None else (bits[0], bits[1]),
        kind=kind,
    )


def parse_layout(value: Any, where: str) -> tuple[LayoutField, ...]:
    """Our 'layout': [{name, offset, length, signed, scale, add, big_endian, bits, kind}]."""
    fields = tuple(_layout_field(item, where) for item in objects(value, where))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise _bad(f"{where}: field names must be unique")
    return fields


def layout_json(layout: tuple[LayoutField, ...]) -> list[dict[str, Any]]:
    out = []
    for f in layout:
        item: dict[str, Any] = {
            "name": f.name,
            "offset": f.offset,
            "length": f.length,
            "signed": f.signed,
            "scale": f.scale,
            "add": f.add,
            "big_endian": f.big_endian,
            "kind": f.kind,
        }
        if f.bits is not None:
            item["bits"] = list(f.bits)
        out.append(item)
    return out
