"""Simulated streams through the project's own parsers, provisioning model and Smart Data Models.

The simulator provisions its devices with the parameters the models read; these tests run each
simulated message the way the pipeline does (family parser, provisioning, codec, model) and
check the entities say what the simulation did: the level, the flood status as the wave passes,
the plows' positions and speeds, the tags seen at their detectors under a pseudonym only.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from adapters import iotagent, lorawan, sigfox
from adapters.codecs import decode
from adapters.device import DeviceConfig, EntityUpdate
from adapters.message import DeviceMessage, to_utc
from adapters.models import normalise
from adapters.provisioning.model import group_of, parse_device, parse_group, resolve
from adapters.pseudonym import Pseudonymiser
from tests.simulate import flood, plows, tags
from tests.simulate.core import Outgoing, Scenario
from tests.simulate.provision import provisioning_requests

START = datetime(2026, 9, 1, tzinfo=UTC)
PSEUDONYMS = Pseudonymiser(b"simulator-test-secret-0123456789")


def provisioned(scenario: Scenario) -> dict[str, DeviceConfig]:
    """The scenario's devices as the provisioning API would store them, by device id and DevEUI."""
    (_, services), *device_requests = provisioning_requests(scenario)
    groups = [parse_group(g, "sim", "/") for g in services["services"]]
    configs: dict[str, DeviceConfig] = {}
    for _, body in device_requests:
        for data in body["devices"]:
            device = parse_device(data, "sim", "/", groups)
            config = resolve(device, group_of(device, groups))
            configs[config.device_id.lower()] = config
            if config.dev_eui:
                configs[config.dev_eui] = config
    return configs


def parsed(message: Outgoing) -> DeviceMessage:
    body, at = orjson.dumps(message.body), message.at
    if message.family == "tts":
        result = lorawan.parse_tts(message.topic or "", body, at)
    elif message.family == "chirpstack":
        result = lorawan.parse_chirpstack(message.topic or "", body, at)
    elif message.family == "sigfox":
        result = sigfox.parse("/adapters/sigfox/uplink", body, at)
    else:
        result = iotagent.parse_mqtt(message.topic or "", body, at)
    assert result is not None
    return result


def entities(configs: dict[str, DeviceConfig], message: Outgoing) -> tuple[DeviceConfig, list[EntityUpdate]]:
    """What the pipeline makes of one message: the family's parse, the device's codec, its model."""
    parsed_message = parsed(message)
    config = configs[parsed_message.dev_eui or parsed_message.device_id.lower()]
    measures = parsed_message.measures
    if not measures:
        assert parsed_message.payload is not None
        measures = decode(config.codec or "", parsed_message.payload, config.layout)
    observed_at = parsed_message.observed_at or parsed_message.received_at
    updates = [
        update
        for one in measures
        for update in normalise(config, one, observed_at, parsed_message.radio, PSEUDONYMS)
    ]
    return config, updates


def of_type(updates: list[EntityUpdate], kind: str) -> dict[str, Any]:
    (entity,) = [u.normalized() for u in updates if u.normalized()["type"] == kind]
    return entity


def test_a_flood_becomes_gauge_entities_going_normal_alert_danger_and_back() -> None:
    scenario = flood.scenario(4, 2, START, "takamatsu-flood", "ttn", "takamatsu-flood")
    gauges = {f"urn:ngsi-ld:FloodMonitoring:{g.device_id}": g for g in flood.make_gauges(4, 2)}
    configs = provisioned(scenario)
    statuses: dict[str, list[str]] = {name: [] for name in gauges}
    for message in itertools.takewhile(lambda m: m.at < START + timedelta(days=1), scenario.messages):
        config, updates = entities(configs, message)
        entity = of_type(updates, "FloodMonitoring")
        gauge = gauges[entity["id"]]
        # Truth at the time of measurement (the message leaves up to 1.5 s later), LPP's 1 cm
        # resolution and the gauge's noise.
        t = (message.at - START).total_seconds()
        assert abs(entity["currentLevel"]["value"] - gauge.level(t)) < 0.03
        # Sigfox sends whole seconds; TTS the reception time to the nanosecond.
        observed = to_utc(entity["currentLevel"]["observedAt"])
        assert timedelta(0) <= message.at - observed < timedelta(seconds=1)
        level, mode = entity["currentLevel"]["value"], entity["observationMode"]["value"]
        if level >= gauge.start_level + 0.02:
            assert mode == "flood"
        if level < gauge.start_level - flood.HYSTERESIS_M - 0.02:
            assert mode == "normal"
        assert 0.9 <= of_type(updates, "Device")["batteryLevel"]["value"] <= 1.0
        statuses[entity["id"]].append(entity["floodLevelStatus"]["value"])
        assert config.protocol == message.family
    for sequence in statuses.values():
        changes = [status for status, _ in itertools.groupby(sequence)]
        assert changes == ["Normal", "Alert", "Danger", "Alert", "Normal"]


def test_plows_become_vehicles_at_the_reported_position_and_speed() -> None:
    scenario = plows.scenario(20, 3, START, "7c1e0d4a-3b8f-4e6a-9f1d-2a5b6c7d8e9f", "plows")
    configs = provisioned(scenario)
    for message in itertools.islice(scenario.messages, 400):
        _, updates = entities(configs, message)
        vehicle = of_type(updates, "Vehicle")
        gps = message.body["object"]["gpsLocation"]["1"]
        assert vehicle["location"]["value"]["coordinates"] == [gps["longitude"], gps["latitude"]]
        assert vehicle["speed"]["value"] == message.body["object"]["analogInput"]["2"]
        assert vehicle["speed"]["unitCode"] == "KMH"
        assert vehicle["id"] == f"urn:ngsi-ld:Vehicle:{message.body['deviceInfo']['deviceName']}"
        assert vehicle["vehicleType"]["value"] == "constructionOrMaintenanceVehicle"


def test_tag_sightings_become_beacons_at_their_detector_under_a_pseudonym() -> None:
    scenario = tags.scenario(200, 1000, 4, START, "kakogawa-mimamori", phones=30)
    configs = provisioned(scenario)
    beacons = {"det": 0, "phone": 0}
    for message in itertools.islice(scenario.messages, 400):
        config, updates = entities(configs, message)
        text = orjson.dumps([u.normalized() for u in updates]).decode()
        for sighting in message.body:
            assert sighting["tag"] not in text
        places = [[s["longitude"], s["latitude"]] for s in message.body if "latitude" in s]
        tagged = [
            u.normalized() for u in updates if u.normalized()["id"].startswith("urn:ngsi-ld:Device:tag-")
        ]
        assert len(tagged) == len(message.body)
        for entity in tagged:
            where = entity["location"]["value"]
            if places:  # a phone: where it was
                assert where["coordinates"] in places
            else:
                assert where == config.model_params["location"]
        beacons["phone" if places else "det"] += len(tagged)
    assert beacons["det"] > 300
    assert beacons["phone"] > 20
