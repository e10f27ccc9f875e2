"""GPS trackers on municipal vehicles (snowplows) to the Smart Data Model Vehicle.

The position comes from the measure named by gpsMeasure (default: the first CayenneLPP "gps_N",
else "location", else top-level latitude/longitude or lat/lon); speed from speedMeasure (default
"speed") in speedUnit (KMH default, MTS/MPS m/s and KNT knots converted to KMH); heading from
headingMeasure (default "heading") in degrees. A message without a usable position is rejected:
a map of plows must not show one at (0, 0) or nowhere.
"""

from __future__ import annotations

from typing import Any

from adapters.device import DeviceConfig, EntityUpdate
from adapters.message import Measures, Rejected
from adapters.models import common, generic

_TO_KMH = {"KMH": 1.0, "MTS": 3.6, "MPS": 3.6, "KNT": 1.852}
_PASSED = ("serviceStatus", "vehiclePlateIdentifier", "wardName")


def entities(
    device: DeviceConfig, measures: Measures, observed: str, terms: common.Terms = common.bundled_terms
) -> list[EntityUpdate]:
    """The Vehicle entity of the tracker's vehicle."""
    params = device.model_params
    body: dict[str, Any] = {
        "id": device.entity_name,
        "type": "Vehicle",
        "vehicleType": common.prop(str(params.get("vehicleType", "constructionOrMaintenanceVehicle"))),
        "category": common.prop(common.text_list(params.get("category", ["municipalServices"]))),
        "fleetVehicleId": common.prop(str(params.get("fleetVehicleId", device.device_id))),
    }
    if "serviceProvided" in params:
        body["serviceProvided"] = common.prop(common.text_list(params["serviceProvided"]))
    # Values given as they are provisioned: the API parser's checks apply to them.
    foreign = {name for name in _PASSED if name in params}
    for name in foreign:
        body[name] = common.prop(params[name])
    used = set()
    where, position = _position(device, measures)
    used.update(where)
    body["location"] = common.geo(position, observed=observed)
    speed_name = common.measure_name(device, "speedMeasure", "speed")
    if speed_name in measures:
        speed = _speed(device, measures[speed_name], speed_name)
        body["speed"] = common.prop(speed, unit="KMH", observed=observed)
        used.add(speed_name)
    heading_name = common.measure_name(device, "headingMeasure", "heading")
    if heading_name in measures:
        heading = common.number(measures[heading_name], f"measure {heading_name}")
        if not 0 <= heading <= 360:
            raise Rejected(f"measure {heading_name} is {heading}, not a heading in degrees (0 to 360)")
        body["heading"] = common.prop(0 if heading == 360 else heading, observed=observed)
        used.add(heading_name)
    extra = generic.attributes(device, measures, observed, explicit=True, consumed=used)
    extra.update(generic.static_attributes(device.static_attributes))
    for name, attr in extra.items():
        if name not in body:
            body[name] = attr
            foreign.add(name)
    return [common.build(body, common.TRANSPORTATION, terms, foreign=foreign)]


def _position(device: DeviceConfig, measures: Measures) -> tuple[list[str], dict[str, Any]]:
    """(measures used, GeoJSON Point) of the tracker; raises Rejected when there is none."""
    name = device.model_params.get("gpsMeasure")
    if name is None:
        name = next((m.object_id for m in device.attributes if m.name == "location"), None)
    if name is None:
        name = next((k for k in measures if k.startswith("gps_")), None)
    if name is None and "location" in measures:
        name = "location"
    if name is not None:
        if name not in measures:
            raise Rejected(f"the message of tracker {device.device_id} has no position measure {name!r}")
        return [str(name)], common.point(measures[name], f"measure {name}")
    for lat, lon in (("latitude", "longitude"), ("lat", "lon")):
        if lat in measures or lon in measures:
            pair = {"lat": measures.get(lat), "lon": measures.get(lon)}
            return [lat, lon], common.point(pair, f"measures {lat}/{lon}")
    raise Rejected(f"the message of tracker {device.device_id} has no position")


def _speed(device: DeviceConfig, value: Any, name: str) -> float | int:
    unit = str(device.model_params.get("speedUnit", "KMH"))
    if unit not in _TO_KMH:
        raise Rejected(f"device {device.device_id}: speedUnit {unit!r} is not one of {', '.join(_TO_KMH)}")
    speed = common.number(value, f"measure {name}")
    if speed < 0:
        raise Rejected(f"measure {name} is {speed}, a negative speed")
    return speed if unit == "KMH" else round(speed * _TO_KMH[unit], 2)
