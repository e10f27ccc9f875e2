"""BLE watch-tag sightings (Kakogawa's mimamori service) to one Device per tag, by pseudonym only.

A fixed detector or a volunteer's phone sends a batch of sightings as an IoT Agent JSON
multimeasure; each measure dict is one sighting: the tag id (tagMeasure, default "tag"), its
rssi and the time it was seen (timeMeasure, default "ts"). The tag's position is the detector's:
a phone sends its own (a "location" measure, or latitude/longitude), a fixed detector has it in
the model parameter location. The tag id is personal data: it is replaced by its per-tenant
pseudonym before anything is built, and no reason given for a rejection quotes it.

The tag entity is urn:ngsi-ld:Device:<idPrefix>tag-<pseudonym>; with the model parameter
sightings: true each sighting is also kept as a DeviceMeasurement
urn:ngsi-ld:DeviceMeasurement:<idPrefix><detector>-<time>-<pseudonym>.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.device import DeviceConfig, EntityUpdate
from adapters.message import Measures, Rejected, to_utc
from adapters.models import common
from adapters.pseudonym import Pseudonymiser


def tag_entity_id(device: DeviceConfig, pseudonym: str) -> str:
    """The entity id a guardian's app subscribes to for the tag with ``pseudonym``."""
    return f"urn:ngsi-ld:Device:{device.model_params.get('idPrefix', '')}tag-{pseudonym}"


def entities(
    device: DeviceConfig,
    measures: Measures,
    observed_at: datetime,
    pseudonyms: Pseudonymiser,
    terms: common.Terms = common.bundled_terms,
) -> list[EntityUpdate]:
    """The tag's Device (and its DeviceMeasurement when configured) for one sighting."""
    params = device.model_params
    tag_field = str(params.get("tagMeasure", "tag"))
    raw = measures.get(tag_field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise Rejected(f"a sighting from detector {device.device_id} has no tag id ({tag_field!r})")
    pseudonym = pseudonyms.tag_id(device.tenant, raw)
    where = f"the sighting of tag {pseudonym}"
    time_field = str(params.get("timeMeasure", "ts"))
    moment = observed_at
    if time_field in measures:
        moment = to_utc(measures[time_field], where=f"{where}: {time_field}")
    observed = common.iso(moment)
    location = common.geo(_detector_location(device, measures, where), observed=observed)
    tag_id = tag_entity_id(device, pseudonym)
    body: dict[str, Any] = {
        "id": tag_id,
        "type": "Device",
        "category": common.prop(["beacon"]),
        "controlledProperty": common.prop(["location"]),
        "supportedProtocol": common.prop(["bluetooth LE"]),
        "location": location,
        "dateLastValueReported": common.date_time(observed),
    }
    rssi = _rssi(measures, params, where)
    if rssi is not None:
        body["rssi"] = common.prop(rssi, observed=observed)
    battery = _battery(measures, params, where)
    if battery is not None:
        body["batteryLevel"] = common.prop(battery)
    out = [common.build(body, common.DEVICE, terms)]
    if params.get("sightings"):
        sighting = _sighting(device, tag_id, pseudonym, moment, location["value"], rssi)
        out.append(common.build(sighting, common.DEVICE, terms))
    return out


def _sighting(
    device: DeviceConfig,
    tag_id: str,
    pseudonym: str,
    moment: datetime,
    position: dict[str, Any],
    rssi: float | int | None,
) -> dict[str, Any]:
    observed = common.iso(moment)
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    prefix = device.model_params.get("idPrefix", "")
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:DeviceMeasurement:{prefix}{device.device_id}-{stamp}-{pseudonym}",
        "type": "DeviceMeasurement",
        "refDevice": common.relationship(tag_id),
        "controlledProperty": common.prop("location"),
        "measurementType": common.prop("bleSighting"),
        # As the reference entity: dateObserved plain text (the SDM types it as a string).
        "dateObserved": common.prop(observed),
        "location": common.geo(position),
    }
    if rssi is not None:
        body["numValue"] = common.prop(rssi, observed=observed)
    return body


def _detector_location(device: DeviceConfig, measures: Measures, where: str) -> dict[str, Any]:
    """Where the sighting happened: the phone's own position if sent, else the fixed detector's."""
    if "location" in measures:
        return common.point(measures["location"], f"{where}: location")
    for lat, lon in (("latitude", "longitude"), ("lat", "lon")):
        if lat in measures or lon in measures:
            return common.point({"lat": measures.get(lat), "lon": measures.get(lon)}, f"{where}: {lat}/{lon}")
    fixed = device.model_params.get("location")
    if fixed is None:
        raise Rejected(f"{where}: detector {device.device_id} has no location (none sent, none provisioned)")
    return common.point(fixed, "model parameter location")


def _rssi(measures: Measures, params: dict[str, Any], where: str) -> float | int | None:
    name = str(params.get("rssiMeasure", "rssi"))
    if name not in measures:
        return None
    rssi = common.number(measures[name], f"{where}: {name}")
    if not -150 <= rssi <= 20:
        raise Rejected(f"{where}: {name} {rssi} is not a received signal strength in dBm")
    return rssi


def _battery(measures: Measures, params: dict[str, Any], where: str) -> float | None:
    """The tag's battery as a fraction; tagBatteryUnit "fraction" (default) or "percent"."""
    name = str(params.get("tagBatteryMeasure", "battery"))
    if name not in measures:
        return None
    value = float(common.number(measures[name], f"{where}: {name}"))
    if params.get("tagBatteryUnit") == "percent":
        value /= 100
    if not 0 <= value <= 1:
        raise Rejected(f"{where}: {name} {value} is not a battery level between 0 and 1")
    return round(value, 3)
