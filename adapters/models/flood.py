"""Water-level gauges (MLIT low-cost crisis-management gauges and the like) to FloodMonitoring.

Heights are metres above the river bed at the gauge, as the SDM defines them: referenceLevel is
the sensor tip above the bed, measuredDistance the sensor tip down to the water,
currentLevel = referenceLevel - measuredDistance. Gauges report one of three readings, chosen by
the model parameter levelMode:
  "distance"      an ultrasonic/radar distance from the sensor tip to the water (the SDM's case);
  "level"         the water level above the river bed directly (pressure gauges);
  "bankRelative"  the level relative to the top of the bank, negative below it (the Sigfox and TTS
                  samples: -1230 mm), so currentLevel = bankHeight + reading.
levelScale converts the reading to metres (0.001 for millimetres). In the last two modes
measuredDistance = referenceLevel - currentLevel when referenceLevel is known.
floodLevelStatus is "Danger" from dangerLevel up, "Alert" from alertLevel up, else "Normal".
A flood-mode flag (floodModeMeasure, default "flood_mode") gives observationMode "flood" (the gauge
reports every 5 minutes) or "normal" (every 10); without a flag, observationStartLevel decides.
observationMode is not an SDM attribute: it expands in the NGSI-LD default vocabulary.
"""

from __future__ import annotations

from typing import Any

from adapters.device import DeviceConfig, EntityUpdate, ModelName
from adapters.message import Measures, Rejected
from adapters.models import common, generic, health

_MODES = ("distance", "level", "bankRelative")
_THRESHOLDS = ("referenceLevel", "alertLevel", "dangerLevel")


def entities(
    device: DeviceConfig, measures: Measures, observed: str, terms: common.Terms = common.bundled_terms
) -> list[EntityUpdate]:
    """FloodMonitoring (model FloodMonitoring); WaterObserved (model WaterObserved or waterObserved: true)."""
    current, distance, used = levels(device, measures)
    out: list[EntityUpdate] = []
    if device.model != ModelName.WATER_OBSERVED:
        body, foreign = _flood_monitoring(device, measures, observed, current, distance, used)
        out.append(common.build(body, common.ENVIRONMENT, terms, foreign=foreign))
    if device.model == ModelName.WATER_OBSERVED or device.model_params.get("waterObserved"):
        body, foreign = _water_observed(device, measures, observed, current, used)
        out.append(common.build(body, common.ENVIRONMENT, terms, foreign=foreign))
    return out


def levels(device: DeviceConfig, measures: Measures) -> tuple[float, float | None, set[str]]:
    """(currentLevel, measuredDistance or None, the measures used), in metres, rounded to the millimetre."""
    params = device.model_params
    mode = params.get("levelMode", "distance")
    if mode not in _MODES:
        raise Rejected(f"device {device.device_id}: levelMode {mode!r} is not one of {', '.join(_MODES)}")
    name = common.measure_name(device, "levelMeasure", "distance" if mode == "distance" else "level")
    if name not in measures:
        raise Rejected(f"the message of gauge {device.device_id} has no water level measure {name!r}")
    scale = common.param_number(device, "levelScale") or 1.0
    reading = float(common.number(measures[name], f"measure {name}")) * scale
    reference = common.param_number(device, "referenceLevel", required=mode == "distance")
    distance: float | None
    if mode == "distance":
        assert reference is not None
        distance = reading
        current = reference - reading
    else:
        bank = common.param_number(device, "bankHeight", required=True) if mode == "bankRelative" else 0.0
        assert bank is not None
        current = bank + reading
        distance = None if reference is None else reference - current
    return round(current, 3), None if distance is None else round(distance, 3), {name}


def status(device: DeviceConfig, current: float) -> str | None:
    """floodLevelStatus from the thresholds; None when the gauge has neither threshold."""
    danger = common.param_number(device, "dangerLevel")
    alert = common.param_number(device, "alertLevel")
    if danger is None and alert is None:
        return None
    if danger is not None and alert is not None and danger < alert:
        # Heights above the bed: danger is the higher one. Reversed, every status would be wrong.
        raise Rejected(
            f"gauge {device.device_id}: dangerLevel {danger} is below alertLevel {alert} "
            "(both are heights above the river bed)"
        )
    if danger is not None and current >= danger:
        return "Danger"
    if alert is not None and current >= alert:
        return "Alert"
    return "Normal"


def observation_mode(device: DeviceConfig, measures: Measures, current: float) -> tuple[str | None, set[str]]:
    """("flood" | "normal" | None, the measure used): the gauge's own flag, else the observation-start level.

    Crisis-management gauges report every 10 minutes and every 5 once the water passes their
    observation-start level; the flag says which the gauge is doing, observationStartLevel
    (metres above the bed) what it should be doing when it sends no flag.
    """
    flag = common.measure_name(device, "floodModeMeasure", "flood_mode")
    if flag in measures:
        raw = measures[flag]
        on = raw if isinstance(raw, bool) else common.number(raw, f"measure {flag}") != 0
        return ("flood" if on else "normal"), {flag}
    start = common.param_number(device, "observationStartLevel")
    if start is None:
        return None, set()
    return ("flood" if current >= start else "normal"), set()


def _flood_monitoring(
    device: DeviceConfig,
    measures: Measures,
    observed: str,
    current: float,
    distance: float | None,
    used: set[str],
) -> tuple[dict[str, Any], set[str]]:
    params = device.model_params
    body: dict[str, Any] = {"id": device.entity_name, "type": "FloodMonitoring"}
    body["stationID"] = common.prop(str(params.get("stationID", device.device_id)))
    if distance is not None:
        body["measuredDistance"] = common.prop(distance, unit="MTR", observed=observed)
    for name in _THRESHOLDS:
        value = common.param_number(device, name)
        if value is not None:
            body[name] = common.prop(value, unit="MTR")
    body["currentLevel"] = common.prop(current, unit="MTR", observed=observed)
    flood_status = status(device, current)
    if flood_status is not None:
        body["floodLevelStatus"] = common.prop(flood_status, observed=observed)
    mode, flag = observation_mode(device, measures, current)
    if mode is not None:
        body["observationMode"] = common.prop(mode, observed=observed)
        used = used | flag
    body["observationDateTime"] = common.date_time(observed)
    _add_location(device, body)
    return body, _add_mapped(device, measures, observed, used, body)


def _water_observed(
    device: DeviceConfig, measures: Measures, observed: str, current: float, used: set[str]
) -> tuple[dict[str, Any], set[str]]:
    entity_id = device.model_params.get("waterObservedId")
    if entity_id is None:
        entity_id = (
            device.entity_name
            if device.model == ModelName.WATER_OBSERVED
            else common.sibling_id(device, "WaterObserved")
        )
    body: dict[str, Any] = {
        "id": str(entity_id),
        "type": "WaterObserved",
        "dateObserved": common.date_time(observed),
        "waterLevel": common.prop(current, unit="MTR", observed=observed),
        "refDevice": common.relationship(health.device_entity_id(device)),
    }
    if not _add_location(device, body):
        # The SDM requires a location for WaterObserved: a gauge without one is misprovisioned.
        raise Rejected(f"gauge {device.device_id} has no model parameter 'location' for its WaterObserved")
    if device.model == ModelName.WATER_OBSERVED:
        return body, _add_mapped(device, measures, observed, used, body)
    return body, set()


def _add_location(device: DeviceConfig, body: dict[str, Any]) -> bool:
    location = device.model_params.get("location")
    if location is None:
        return False
    body["location"] = common.geo(common.point(location, "model parameter location"))
    return True


def _add_mapped(
    device: DeviceConfig, measures: Measures, observed: str, used: set[str], body: dict[str, Any]
) -> set[str]:
    """Measures the provisioning maps explicitly, and static attributes, ride along (SDM attributes
    win); returns the names added (foreign: named and valued by the provisioning)."""
    extra = generic.attributes(device, measures, observed, explicit=True, consumed=used)
    extra.update(generic.static_attributes(device.static_attributes))
    added = set()
    for name, attr in extra.items():
        if name not in body:
            body[name] = attr
            added.add(name)
    return added
