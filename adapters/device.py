"""A provisioned device as the pipeline uses it, and the entities a model makes of its measures.

DeviceConfig is the device merged with its service group (the group gives defaults: entity type,
attributes, static attributes, codec, model), in the terms of the FIWARE IoT Agent provisioning
API (/iot/services, /iot/devices) plus what LPWA devices need (DevEUI, codec, binary layout,
Smart Data Model and its parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from adapters.message import Family
from broker.jsonld.context import TermMap
from broker.model.entity import Entity
from broker.model.render import View, render_entity


class Codec(StrEnum):
    """Codecs a device may name (adapters/codecs): how its raw payload bytes become measures."""

    CAYENNE = "cayennelpp"
    ULTRALIGHT = "ultralight"
    JSON = "json"
    LAYOUT = "layout"


CAYENNE, ULTRALIGHT, JSON, LAYOUT = Codec.CAYENNE, Codec.ULTRALIGHT, Codec.JSON, Codec.LAYOUT
CODECS = tuple(Codec)


class ModelName(StrEnum):
    """The Smart Data Model families of adapters/models a device may name. A provisioned name
    outside these is kept (DeviceConfig.model is text) and refused per message, with the known ones."""

    FLOOD_MONITORING = "FloodMonitoring"
    WATER_OBSERVED = "WaterObserved"
    VEHICLE = "Vehicle"
    BEACON_DETECTOR = "BeaconDetector"


class CommandState(StrEnum):
    """A device command's progress, shown on its entity as <command>_status (as the IoT Agents do)
    and kept in device_commands.status."""

    PENDING = "PENDING"
    SENT = "SENT"
    OK = "OK"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class AttributeMapping:
    """IoT Agent 'attributes' entry: measure ``object_id`` becomes attribute ``name``."""

    object_id: str
    name: str
    # NGSI-LD attribute type: Property, GeoProperty, Relationship (IoT Agent NGSI-v2 names such as
    # 'Number', 'geo:point' or 'geo:json' are accepted at provisioning and converted there).
    type: str = "Property"
    unit_code: str | None = None
    # Extra sub-properties to attach, e.g. {"description": ...}.
    metadata: dict[str, Any] = field(default_factory=dict)
    # The IoT Agent type as provisioned ('Number', 'geo:point', ...), so a mapping can coerce the
    # measured value (a 'geo:point' measure is "lat, lon" text); None: provisioned in NGSI-LD terms.
    source_type: str | None = None


@dataclass(frozen=True, slots=True)
class StaticAttribute:
    name: str
    type: str
    value: Any
    unit_code: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A command the device accepts: a PATCH of ``name`` on its entity is sent down to it."""

    name: str
    # Downlink encoding: for LoRaWAN/Sigfox the hex/base64 payload per command value, else text.
    object_id: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class LayoutField:
    """One field of a declared binary layout (e.g. a 12-byte Sigfox frame)."""

    name: str
    offset: int  # bytes from the start
    length: int  # bytes: 1, 2, 4 or 8 (8: 64-bit); bit fields use ``bits``
    signed: bool = False
    scale: float = 1.0  # value = raw * scale + add
    add: float = 0.0
    big_endian: bool = True
    # Optional bit field inside the bytes: (first bit counted from the least significant, count).
    bits: tuple[int, int] | None = None
    # "int" (default), "float" (IEEE 754 of length 4 or 8), "bool" (non-zero), "hex" (the bytes as text).
    kind: str = "int"


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device, resolved with its group's defaults. Immutable; the registry swaps whole values."""

    tenant: str
    service_path: str
    device_id: str
    entity_name: str
    entity_type: str
    # The family the device sends with, or None: any.
    protocol: Family | None = None
    apikey: str | None = None
    dev_eui: str | None = None  # lower-case hex
    attributes: tuple[AttributeMapping, ...] = ()
    static_attributes: tuple[StaticAttribute, ...] = ()
    commands: tuple[Command, ...] = ()
    # Only mapped attributes are kept (IoT Agent explicitAttrs); else unknown measures pass as Property.
    explicit_attrs: bool = False
    # IoT Agent 'timestamp': a TimeInstant measure sets observedAt (else the reception time does).
    timestamp: bool = True
    codec: Codec | None = None
    layout: tuple[LayoutField, ...] = ()
    # Smart Data Model family in adapters/models (a ModelName when it is one this broker knows);
    # None: the generic IoT Agent mapping only.
    model: str | None = None
    # Model parameters, e.g. referenceLevel/alertLevel/dangerLevel for a gauge, vehicleType for a plow.
    model_params: dict[str, Any] = field(default_factory=dict)
    # Also keep a Device entity with the device's own health (battery, rssi, last report).
    health: bool = True
    # A stored device (False: made on the fly from a group with autoprovision).
    provisioned: bool = True

    def attribute(self, object_id: str) -> AttributeMapping | None:
        for mapping in self.attributes:
            if mapping.object_id == object_id:
                return mapping
        return None


@dataclass(frozen=True, slots=True)
class EntityUpdate:
    """One entity (or fragment) a model makes of a message, ready for the write path.

    ``entity`` is expanded (IRIs of the bundled Smart Data Model context, then the core one, as
    ``context`` names them), its instances in the shape the broker stores, every measured
    attribute with its observedAt in UTC: the pipeline appends it to the stored entity, creating
    the entity when missing, without parsing it again. ``values`` is the same entity in keyValues
    form under the short terms: what the Smart Data Model schema checks. ``terms`` is the
    compiled ``context`` the names were expanded with.
    """

    entity: Entity
    values: dict[str, Any]
    context: tuple[str, ...]
    terms: TermMap = field(compare=False, repr=False)

    def normalized(self) -> dict[str, Any]:
        """The entity in normalized form under its context's short terms, as an app reading it sees it."""
        return render_entity(self.entity, self.terms, View())
