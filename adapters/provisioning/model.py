"""Service groups and devices as provisioned: IoT Agent JSON in, typed values out, and back.

The IoT Agent provisioning API (iotagent-node-lib, /iot/services and /iot/devices) speaks NGSI-v2:
attribute types such as "Number" or "geo:point", entity names such as "Thermometer:001". This module
is the one place that turns that JSON into ``ServiceGroup`` and ``Device`` values in NGSI-LD terms,
and renders them back; ``resolve`` merges a device with its group into the ``DeviceConfig`` the
pipeline uses. The database stores what ``group_json``/``device_json`` render and reads it back
through the same parsers.

Entity names are settled when a device is provisioned (adapters.provisioning.names), so they never move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.device import (
    AttributeMapping,
    Codec,
    Command,
    DeviceConfig,
    LayoutField,
    StaticAttribute,
)
from adapters.message import Family
from adapters.provisioning.fields import (
    CODEC,
    FLAG,
    KEY,
    OBJECT,
    SHAPE,
    WRONG_SYNTAX,
    attribute_name,
    attributes_json,
    commands_json,
    key_text,
    layout_json,
    lorawan_settings,
    parse_attributes,
    parse_commands,
    parse_dev_eui,
    parse_layout,
    parse_protocol,
    parse_static,
    static_json,
)
from adapters.provisioning.names import entity_uri, name_template, render_name
from broker.errors import BadRequestData
from broker.model.parse import MAX_ID_LENGTH

DEFAULT_TYPE = "Thing"  # the IoT Agents' default entity type
DEFAULT_PATH = "/"

# IoT Agent fields this broker accepts and keeps, but does not act on.
_KEPT_GROUP = (
    "trust", "cbHost", "lazy", "internal_attributes", "description", "expressionLanguage", "ngsiVersion",
    "payloadType", "transport", "endpoint", "defaultEntityNameConjunction", "storeLastMeasure",
    "useCBflowControl", "timezone",
)  # fmt: skip
_KEPT_DEVICE = (
    "timezone", "endpoint", "transport", "lazy", "internal_attributes", "ngsiVersion", "payloadType",
    "storeLastMeasure", "lastMeasure", "useCBflowControl", "polling", "expressionLanguage",
)  # fmt: skip
# Named by the headers, not the body (as the IoT Agents do).
_IGNORED = ("service", "subservice", "service_path")
_PROFILE = (
    "entity_type", "attributes", "static_attributes", "commands", "explicitAttrs", "timestamp",
    "protocol", "codec", "layout", "model", "model_params", "health",
)  # fmt: skip
GROUP_FIELDS = frozenset(("resource", "apikey", "entityNameExp", "autoprovision", *_PROFILE, *_KEPT_GROUP))
DEVICE_FIELDS = frozenset(("device_id", "apikey", "entity_name", "dev_eui", *_PROFILE, *_KEPT_DEVICE))

_SIGFOX_ID = re.compile(r"^[0-9a-fA-F]{1,8}$")
_MODEL = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_SERVICE_PATH = re.compile(r"^/([A-Za-z0-9_]{1,50}(/[A-Za-z0-9_]{1,50}){0,9})?$")


@dataclass(frozen=True, slots=True)
class Profile:
    """What a group gives its devices by default and a device may override (None/empty: not set)."""

    entity_type: str | None = None
    attributes: tuple[AttributeMapping, ...] = ()
    static_attributes: tuple[StaticAttribute, ...] = ()
    commands: tuple[Command, ...] = ()
    explicit_attrs: bool | None = None
    timestamp: bool | None = None
    protocol: Family | None = None
    codec: Codec | None = None
    layout: tuple[LayoutField, ...] = ()
    model: str | None = None
    model_params: dict[str, Any] = field(default_factory=dict)
    health: bool | None = None


@dataclass(frozen=True, slots=True)
class ServiceGroup:
    """An IoT Agent service (config) group: devices sending with its apikey belong to it."""

    tenant: str
    service_path: str
    resource: str
    apikey: str
    profile: Profile
    entity_name_exp: str | None = None
    autoprovision: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Device:
    """A provisioned device, before its group's defaults are applied."""

    tenant: str
    service_path: str
    device_id: str
    profile: Profile
    apikey: str | None = None
    entity_name: str | None = None
    dev_eui: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def check_service_path(value: str | None) -> str:
    """The fiware-servicepath of a provisioning request ("/" when absent), or 400."""
    path = (value or DEFAULT_PATH).strip() or DEFAULT_PATH
    if not _SERVICE_PATH.match(path):
        raise BadRequestData(
            f"fiware-servicepath {path!r} is not valid: '/' or up to 10 '/name' levels"
            " of letters, digits and '_'",
            name=WRONG_SYNTAX,
        )
    return path


def _check_fields(data: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(key for key in data if key not in allowed and key not in _IGNORED)
    if unknown:
        raise BadRequestData(f"{what}: unknown field(s) {', '.join(unknown)}", name=WRONG_SYNTAX)


def _parse_profile(data: dict[str, Any], what: str) -> Profile:
    lorawan_protocol, lorawan_codec = lorawan_settings(data, what)
    codec = SHAPE.optional(data, "codec", CODEC, f"{what}: ") or lorawan_codec
    layout = SHAPE.optional(data, "layout", parse_layout, f"{what}: ") or ()
    if codec == Codec.LAYOUT and not layout:
        raise BadRequestData(f"{what}: codec 'layout' needs a non-empty layout", name=WRONG_SYNTAX)
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not _MODEL.match(model)):
        raise BadRequestData(f"{what}: model {model!r} is not a model name", name=WRONG_SYNTAX)
    prefix = f"{what}: "
    return Profile(
        entity_type=SHAPE.optional(data, "entity_type", attribute_name, prefix),
        attributes=SHAPE.optional(data, "attributes", parse_attributes, prefix) or (),
        static_attributes=SHAPE.optional(data, "static_attributes", parse_static, prefix) or (),
        commands=SHAPE.optional(data, "commands", parse_commands, prefix) or (),
        explicit_attrs=SHAPE.optional(data, "explicitAttrs", FLAG, prefix),
        timestamp=SHAPE.optional(data, "timestamp", FLAG, prefix),
        protocol=SHAPE.optional(data, "protocol", parse_protocol, prefix) or lorawan_protocol,
        codec=codec,
        layout=layout,
        model=model,
        model_params=SHAPE.optional(data, "model_params", OBJECT, prefix) or {},
        health=SHAPE.optional(data, "health", FLAG, prefix),
    )


def _profile_json(profile: Profile) -> dict[str, Any]:
    out: dict[str, Any] = {
        "entity_type": profile.entity_type,
        "attributes": attributes_json(profile.attributes),
        "static_attributes": static_json(profile.static_attributes),
        "commands": commands_json(profile.commands),
        "explicitAttrs": profile.explicit_attrs,
        "timestamp": profile.timestamp,
        "protocol": profile.protocol,
        "codec": profile.codec,
        "layout": layout_json(profile.layout),
        "model": profile.model,
        "model_params": profile.model_params,
        "health": profile.health,
    }
    return {key: value for key, value in out.items() if value not in (None, [], {})}


def parse_group(data: Any, tenant: str, service_path: str) -> ServiceGroup:
    """One entry of POST /iot/services as a ServiceGroup; BadRequestData when a field is wrong."""
    if not isinstance(data, dict):
        raise BadRequestData("a service group must be a JSON object", name=WRONG_SYNTAX)
    _check_fields(data, GROUP_FIELDS, "service group")
    apikey = SHAPE.required(data, "apikey", KEY, "service group: ")
    what = f"service group {apikey!r}"
    resource = data.get("resource", "")
    if not isinstance(resource, str) or len(resource) > 256 or "\x00" in resource:
        raise BadRequestData(f"{what}: resource must be a string of up to 256 characters", name=WRONG_SYNTAX)
    name_exp = SHAPE.optional(data, "entityNameExp", key_text(MAX_ID_LENGTH), f"{what}: ")
    if name_exp is not None:
        name_template(name_exp)
    autoprovision = SHAPE.optional(data, "autoprovision", FLAG, f"{what}: ")
    return ServiceGroup(
        tenant=tenant,
        service_path=service_path,
        resource=resource,
        apikey=apikey,
        profile=_parse_profile(data, what),
        entity_name_exp=name_exp,
        autoprovision=True if autoprovision is None else autoprovision,
        extra={key: data[key] for key in _KEPT_GROUP if key in data},
    )


def group_json(group: ServiceGroup) -> dict[str, Any]:
    """A group as GET /iot/services shows it (and as the store keeps it)."""
    out: dict[str, Any] = {
        "resource": group.resource,
        "apikey": group.apikey,
        "service": group.tenant,
        "subservice": group.service_path,
        "autoprovision": group.autoprovision,
    }
    if group.entity_name_exp is not None:
        out["entityNameExp"] = group.entity_name_exp
    return {**out, **_profile_json(group.profile), **group.extra}


def parse_device(data: Any, tenant: str, service_path: str, groups: list[ServiceGroup]) -> Device:
    """One entry of POST /iot/devices as a Device, its entity name settled now (so it never moves)."""
    if not isinstance(data, dict):
        raise BadRequestData("a device must be a JSON object", name=WRONG_SYNTAX)
    _check_fields(data, DEVICE_FIELDS, "device")
    device_id = SHAPE.required(data, "device_id", KEY, "device: ")
    what = f"device {device_id!r}"
    profile = _parse_profile(data, what)
    apikey = None if data.get("apikey") == "" else SHAPE.optional(data, "apikey", KEY, f"{what}: ")
    dev_eui = parse_dev_eui(data, what)
    if profile.protocol == Family.SIGFOX:
        if not _SIGFOX_ID.match(device_id):
            raise BadRequestData(f"{what}: a Sigfox device id is 1-8 hex digits", name=WRONG_SYNTAX)
        device_id = device_id.upper()
    device = Device(
        tenant=tenant,
        service_path=service_path,
        device_id=device_id,
        profile=profile,
        apikey=apikey,
        dev_eui=dev_eui,
        extra={key: data[key] for key in _KEPT_DEVICE if key in data},
    )
    group = group_of(device, groups)
    entity_type = _entity_type(device, group)
    given = SHAPE.optional(data, "entity_name", key_text(MAX_ID_LENGTH), f"{what}: ")
    if given is not None:
        name = entity_uri(given, entity_type)
    else:
        name = default_entity_name(group, device_id, entity_type)
    return replace(device, entity_name=name)


def device_json(device: Device) -> dict[str, Any]:
    """A device as GET /iot/devices shows it (and as the store keeps it)."""
    out: dict[str, Any] = {
        "device_id": device.device_id,
        "service": device.tenant,
        "service_path": device.service_path,
        "entity_name": device.entity_name,
    }
    for key, value in (("apikey", device.apikey), ("dev_eui", device.dev_eui)):
        if value is not None:
            out[key] = value
    return {**out, **_profile_json(device.profile), **device.extra}


# --- entity names ---------------------------------------------------------------------------


def default_entity_name(group: ServiceGroup | None, device_id: str, entity_type: str) -> str:
    """The entity id of a device provisioned without one: the group's entityNameExp, else the default."""
    if group is None or group.entity_name_exp is None:
        return entity_uri(device_id, entity_type)
    values = {
        "id": device_id,
        "type": entity_type,
        "entityType": entity_type,
        "service": group.tenant,
        "subservice": group.service_path,
    }
    return entity_uri(render_name(name_template(group.entity_name_exp), values), entity_type)


# --- resolution -----------------------------------------------------------------------------


def group_of(device: Device, groups: list[ServiceGroup]) -> ServiceGroup | None:
    """The group a device belongs to: same tenant and path, by apikey, else by type, else the only one."""
    here = [g for g in groups if g.tenant == device.tenant and g.service_path == device.service_path]
    if device.apikey is not None:
        return next((g for g in here if g.apikey == device.apikey), None)
    if device.profile.entity_type is not None:
        typed = [g for g in here if g.profile.entity_type == device.profile.entity_type]
        if typed:
            return typed[0]
    return here[0] if len(here) == 1 else None


def _entity_type(device: Device, group: ServiceGroup | None) -> str:
    if device.profile.entity_type is not None:
        return device.profile.entity_type
    if group is not None and group.profile.entity_type is not None:
        return group.profile.entity_type
    return DEFAULT_TYPE


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _merge_profiles(mine: Profile, group: Profile) -> Profile:
    """The device's settings over its group's: lists merge by name, the device's entries win."""
    names = {a.name for a in mine.attributes} | {a.object_id for a in mine.attributes}
    attributes = mine.attributes + tuple(
        a for a in group.attributes if a.name not in names and a.object_id not in names
    )
    statics = {s.name for s in mine.static_attributes}
    commands = {c.name for c in mine.commands}
    return Profile(
        entity_type=_first(mine.entity_type, group.entity_type),
        attributes=attributes,
        static_attributes=mine.static_attributes
        + tuple(s for s in group.static_attributes if s.name not in statics),
        commands=mine.commands + tuple(c for c in group.commands if c.name not in commands),
        explicit_attrs=_first(mine.explicit_attrs, group.explicit_attrs),
        timestamp=_first(mine.timestamp, group.timestamp),
        protocol=_first(mine.protocol, group.protocol),
        codec=_first(mine.codec, group.codec),
        layout=mine.layout or group.layout,
        model=_first(mine.model, group.model),
        model_params={**group.model_params, **mine.model_params},
        health=_first(mine.health, group.health),
    )


def resolve(device: Device, group: ServiceGroup | None, *, provisioned: bool = True) -> DeviceConfig:
    """The DeviceConfig the pipeline uses: ``device`` with its group's defaults applied."""
    profile = _merge_profiles(device.profile, group.profile) if group is not None else device.profile
    entity_type = profile.entity_type or DEFAULT_TYPE
    return DeviceConfig(
        tenant=device.tenant,
        service_path=device.service_path,
        device_id=device.device_id,
        entity_name=device.entity_name or default_entity_name(group, device.device_id, entity_type),
        entity_type=entity_type,
        protocol=profile.protocol,
        apikey=device.apikey or (group.apikey if group is not None else None),
        dev_eui=device.dev_eui,
        attributes=profile.attributes,
        static_attributes=profile.static_attributes,
        commands=profile.commands,
        explicit_attrs=bool(profile.explicit_attrs),
        timestamp=True if profile.timestamp is None else profile.timestamp,
        codec=profile.codec,
        layout=profile.layout,
        model=profile.model,
        model_params=profile.model_params,
        health=True if profile.health is None else profile.health,
        provisioned=provisioned,
    )


def autoprovisioned(group: ServiceGroup, device_id: str) -> Device:
    """The device an unknown id sending with ``group``'s apikey becomes (IoT Agent autoprovision)."""
    entity_type = group.profile.entity_type or DEFAULT_TYPE
    KEY(device_id, "device id")
    try:
        device_id.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestData(f"device id {device_id!r} is not valid text", name=WRONG_SYNTAX) from None
    return Device(
        tenant=group.tenant,
        service_path=group.service_path,
        device_id=device_id,
        profile=Profile(),
        apikey=group.apikey,
        entity_name=default_entity_name(group, device_id, entity_type),
    )
