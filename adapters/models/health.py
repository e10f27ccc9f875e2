"""Every device's own health as a Smart Data Model Device: battery, radio signal, last report, state.

An operator watching hundreds of gauges wants the dying ones before they go silent, whatever
the device measures. Battery is a fraction 0..1 (SDM batteryLevel), from a voltage between the
model parameters batteryMinMv and batteryMaxMv (linear: good enough to rank devices for a visit)
or from a percentage.
"""

from __future__ import annotations

from typing import Any

from adapters.device import DeviceConfig, EntityUpdate, ModelName
from adapters.message import CHIRPSTACK, IOTA_UL, SIGFOX, TTS, Measures, Rejected
from adapters.models import common

# Cell voltages of the usual 3.6 V lithium primary cells in LPWA sensors: flat until near the end.
_MIN_MV = 3000.0
_MAX_MV = 3600.0
_LOW = 0.2
_PROTOCOLS = {TTS: "lora", CHIRPSTACK: "lora", SIGFOX: "sigfox", IOTA_UL: "ul20"}
# What a device of each model measures (SDM ControlledPropertyType values).
_CONTROLLED: dict[str, list[str]] = {
    ModelName.FLOOD_MONITORING: ["waterLevel"],
    ModelName.WATER_OBSERVED: ["waterLevel"],
    ModelName.VEHICLE: ["location", "speed", "heading"],
    ModelName.BEACON_DETECTOR: ["location"],
}


def device_entity_id(device: DeviceConfig) -> str:
    """The id of the device's health entity (model parameter deviceEntity, else urn:ngsi-ld:Device:<id>)."""
    explicit = device.model_params.get("deviceEntity")
    return str(explicit) if explicit else f"urn:ngsi-ld:Device:{device.device_id}"


def entity(
    device: DeviceConfig,
    measures: Measures,
    observed: str,
    radio: dict[str, Any],
    terms: common.Terms = common.bundled_terms,
) -> EntityUpdate:
    """The Device entity of ``device`` after a message observed at ``observed``."""
    body: dict[str, Any] = {
        "id": device_entity_id(device),
        "type": "Device",
        "category": common.prop(common.text_list(device.model_params.get("deviceCategory", ["sensor"]))),
        "controlledProperty": common.prop(_controlled(device)),
        "dateLastValueReported": common.date_time(observed),
    }
    protocol = None if device.protocol is None else _PROTOCOLS.get(device.protocol)
    if protocol is not None:
        body["supportedProtocol"] = common.prop([protocol])
    battery = battery_level(device, measures)
    if battery is not None:
        body["batteryLevel"] = common.prop(battery, observed=observed)
    low = common.param_number(device, "lowBattery")
    state = "batteryLow" if battery is not None and battery < (_LOW if low is None else low) else "ok"
    body["deviceState"] = common.prop(state, observed=observed)
    rssi = _rssi(radio)
    if rssi is not None:
        body["rssi"] = common.prop(rssi, observed=observed)
    location = device.model_params.get("location")
    if location is not None:
        body["location"] = common.geo(common.point(location, "model parameter location"))
    return common.build(body, common.DEVICE, terms)


def battery_level(device: DeviceConfig, measures: Measures) -> float | None:
    """The battery as a fraction 0..1 from the measure named by batteryMeasure, None without one.

    batteryUnit says what the measure is: "mV", "V", "percent" or "fraction"; without it the
    magnitude tells (up to 1: fraction, up to 5: volts, from 1000: millivolts, else percent),
    which misreads only values that mean "empty" (1 % would read as full: give the unit).
    """
    name = common.measure_name(device, "batteryMeasure", "battery")
    if name not in measures:
        return None
    raw = float(common.number(measures[name], f"battery measure {name}"))
    unit = device.model_params.get("batteryUnit") or _unit_by_magnitude(raw)
    if unit == "percent":
        fraction = raw / 100
    elif unit == "fraction":
        fraction = raw
    else:
        millivolts = raw * 1000 if unit == "V" else raw
        low = common.param_number(device, "batteryMinMv") or _MIN_MV
        high = common.param_number(device, "batteryMaxMv") or _MAX_MV
        fraction = (millivolts - low) / (high - low) if high > low else 0.0
    return round(min(1.0, max(0.0, fraction)), 3)


def _unit_by_magnitude(raw: float) -> str:
    if raw <= 1:
        return "fraction"
    if raw <= 5:
        return "V"
    return "mV" if raw >= 1000 else "percent"


def _controlled(device: DeviceConfig) -> list[str]:
    """What the device measures: the model parameter, else the model's usual set (none for generic)."""
    explicit = device.model_params.get("controlledProperty")
    if explicit is not None:
        return common.text_list(explicit)
    return list(_CONTROLLED.get(device.model or "", []))


def _rssi(radio: dict[str, Any]) -> float | int | None:
    """The link's signal strength in dBm; Sigfox callbacks may send it as text, a bad one is dropped."""
    try:
        return common.number(radio["rssi"], "rssi") if radio.get("rssi") is not None else None
    except Rejected:
        return None
