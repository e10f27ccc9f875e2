"""Measures to Smart Data Model entities: one module per family, chosen by the device's model.

    None              generic.py  the IoT Agent attribute mapping onto (entity_name, entity_type)
    "FloodMonitoring" flood.py    water-level gauges (and WaterObserved with waterObserved: true)
    "WaterObserved"   flood.py    a gauge kept as WaterObserved only
    "Vehicle"         vehicle.py  GPS trackers on municipal vehicles
    "BeaconDetector"  beacon.py   BLE watch-tag sightings, one Device per tag, by pseudonym
and with ``device.health`` every device also updates its own Device entity (health.py).

Each EntityUpdate is the expanded entity the write path stores, made with the term map of its
context tuple (a bundled SDM context, then the core context; a generic device may name its own),
with its keyValues form for the schema; every measured attribute carries observedAt.

DeviceConfig.model_params each model reads (all optional unless marked; heights in metres):
    *Measure parameters name the measure (object_id) to read; without one, the measure the
    provisioning maps to the default name is read (object_id "analog_in_2" -> name "speed").
    any      location ([lon, lat] or GeoJSON Point), batteryMeasure ("battery"), batteryUnit
             (mV | V | percent | fraction; else by magnitude), batteryMinMv/batteryMaxMv (3000/3600),
             lowBattery (0.2), deviceCategory (["sensor"]), controlledProperty, deviceEntity
             (urn:ngsi-ld:Device:<device_id>), context (generic: extra @context URLs)
    flood    levelMode (distance | level | bankRelative), levelMeasure ("distance" | "level"),
             levelScale (1), referenceLevel (required for distance), bankHeight (required for
             bankRelative), alertLevel, dangerLevel, observationStartLevel, floodModeMeasure
             ("flood_mode"), stationID (device_id), waterObserved (false), waterObservedId
    vehicle  gpsMeasure (first gps_N, else location), speedMeasure ("speed"), speedUnit (KMH | MTS
             | KNT), headingMeasure ("heading"), vehicleType (constructionOrMaintenanceVehicle),
             category (["municipalServices"]), fleetVehicleId (device_id), serviceProvided,
             serviceStatus, vehiclePlateIdentifier, wardName
    beacon   tagMeasure ("tag"), rssiMeasure ("rssi"), timeMeasure ("ts"), tagBatteryMeasure
             ("battery"), tagBatteryUnit (fraction | percent), idPrefix (""), sightings (false)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from adapters.device import DeviceConfig, EntityUpdate, ModelName
from adapters.message import DeviceMessage, Measures, Rejected
from adapters.models import beacon, common, flood, generic, health, vehicle
from adapters.pseudonym import Pseudonymiser

MODELS = tuple(ModelName)


def normalise(
    device: DeviceConfig,
    measures: Measures,
    observed_at: datetime,
    radio: dict[str, Any],
    pseudonyms: Pseudonymiser,
    terms: common.Terms = common.bundled_terms,
) -> list[EntityUpdate]:
    """The entities one measurement of ``device`` updates; raises Rejected for unusable measures
    (BadRequestData for what the broker refuses: a name, id or value from the provisioning)."""
    model = device.model
    if model is None:
        updates = [generic.entity(device, measures, observed_at, terms)]
        observed = common.observed_time(device, measures, observed_at, None)
    elif model == ModelName.BEACON_DETECTOR:
        updates = beacon.entities(device, measures, observed_at, pseudonyms, terms)
        # Health is about the detector: its report time, and no battery read from a tag's sighting.
        observed = common.iso(observed_at)
        if "batteryMeasure" not in device.model_params:
            measures = {}
    elif model in (ModelName.FLOOD_MONITORING, ModelName.WATER_OBSERVED, ModelName.VEHICLE):
        observed = common.observed_time(device, measures, observed_at, None)
        family = vehicle if model == ModelName.VEHICLE else flood
        updates = family.entities(device, measures, observed, terms)
    else:
        raise Rejected(f"device {device.device_id} names model {model!r}; known: {', '.join(MODELS)}")
    if device.health:
        updates.append(health.entity(device, measures, observed, radio, terms))
    return updates


def normalise_message(
    device: DeviceConfig,
    message: DeviceMessage,
    pseudonyms: Pseudonymiser,
    terms: common.Terms = common.bundled_terms,
) -> list[EntityUpdate]:
    """Every measurement of ``message`` (an IoT Agent multimeasure has several), in order."""
    observed_at = message.observed_at or message.received_at
    updates: list[EntityUpdate] = []
    quiet = replace(device, health=False)
    for index, measures in enumerate(message.measures):
        # One health update per message (the last), not one per sighting of a batch.
        last = index == len(message.measures) - 1
        device_now = device if last else quiet
        updates.extend(normalise(device_now, measures, observed_at, message.radio, pseudonyms, terms))
    return updates
