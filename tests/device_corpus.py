"""A golden corpus of device messages: what each one becomes on the way to the write path.

Every model (flood, vehicle, beacon, health, generic) meets representative messages: the sample
uplinks of tests/fixtures/uplinks, the simulators' streams (tests/simulate) and hand-made IoT
Agent messages that reach the generic mapping's corners (metadata, GeoJSON, relationships,
dates, booleans, static attributes, commands, an extra @context), plus messages the pipeline
must refuse. Each message runs through the pipeline's own prepare step (parse, device lookup,
decode, map, validate, build the operations) and each operation is applied to a missing
entity at a fixed time: the entity it would create is recorded (expanded, as stored), or the
reason the message is refused.

tests/fixtures/device_entities.json holds what the path gave when it was recorded;
tests/unit/test_device_entities.py compares the current path to it. To record again (only when
a change of behaviour is meant):

    .venv/bin/python -m tests.device_corpus
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from adapters.device import (
    CAYENNE,
    JSON,
    LAYOUT,
    AttributeMapping,
    Command,
    DeviceConfig,
    LayoutField,
    StaticAttribute,
)
from adapters.message import CHIRPSTACK, IOTA_JSON, IOTA_UL, SIGFOX, TTS, DeviceMessage, Family, Rejected
from adapters.pipeline import Inbound, Pipeline, _Job, _Prepared
from adapters.provisioning.model import group_of, parse_device, parse_group, resolve
from adapters.pseudonym import Pseudonymiser
from adapters.validate import Validator
from adapters.wiring import _Mapper, family_of_topic, parse
from broker.jsonld.context import TermMap, bundled_document, compile_contexts, context_objects, core_document
from broker.model.entity import Entity
from tests.conftest import FIXTURES, fixture_json
from tests.simulate import flood, plows, tags
from tests.simulate.core import Outgoing, Scenario
from tests.simulate.provision import provisioning_requests

GOLDEN = FIXTURES / "device_entities.json"
PSEUDONYMS = Pseudonymiser(b"device-corpus-secret-0123456789ab")
# The time the recorded operations are applied at (createdAt/modifiedAt of every entity).
NOW = "2026-12-04T00:00:00Z"
SIM_START = datetime(2026, 9, 1, tzinfo=UTC)
# Messages taken from each simulated stream (enough to pass through status changes of a gauge).
SIM_MESSAGES = 12

# The Takamatsu gauge of the TTS and Sigfox samples: level relative to the bank top, a 3.6 V cell.
GAUGE_PARAMS: dict[str, Any] = {
    "levelMode": "bankRelative",
    "levelMeasure": "analog_in_1",
    "bankHeight": 2.0,
    "referenceLevel": 4.2,
    "alertLevel": 1.4,
    "dangerLevel": 2.0,
    "stationID": "kasugagawa-001",
    "location": [134.0631, 34.3335],
    "waterObserved": True,
    "batteryMeasure": "analog_in_2",
    "batteryUnit": "V",
    "floodModeMeasure": "digital_in_3",
}
TTS_GAUGE = DeviceConfig(
    tenant="takamatsu",
    service_path="/",
    device_id="wl-kasuga-001",
    entity_name="urn:ngsi-ld:FloodMonitoring:kagawa-kasugagawa-001",
    entity_type="FloodMonitoring",
    protocol=TTS,
    dev_eui="70b3d57ed005a1b2",
    codec=CAYENNE,
    model="FloodMonitoring",
    model_params=GAUGE_PARAMS,
)
SIGFOX_GAUGE = DeviceConfig(
    tenant="takamatsu",
    service_path="/",
    device_id="1A2B3C",
    entity_name="urn:ngsi-ld:FloodMonitoring:kagawa-kasugagawa-002",
    entity_type="FloodMonitoring",
    protocol=SIGFOX,
    codec=LAYOUT,
    layout=(
        LayoutField("level", 0, 2, signed=True, scale=0.001),
        LayoutField("battery", 2, 2),
        LayoutField("flood_mode", 4, 1, bits=(0, 1), kind="bool"),
    ),
    model="FloodMonitoring",
    model_params={
        "levelMode": "bankRelative",
        "bankHeight": 2.0,
        "alertLevel": 1.4,
        "dangerLevel": 2.0,
        "observationStartLevel": 1.0,
        "location": {"type": "Point", "coordinates": [134.05, 34.32]},
        "batteryUnit": "mV",
    },
    static_attributes=(StaticAttribute("riverName", "Text", "Kasuga"),),
)
# An ultrasonic gauge reporting the distance down to the water, as WaterObserved only, over UL.
SONAR = DeviceConfig(
    tenant="ayagawa",
    service_path="/river",
    device_id="sonar-7",
    entity_name="urn:ngsi-ld:WaterObserved:ayagawa-sonar-7",
    entity_type="WaterObserved",
    protocol=IOTA_UL,
    apikey="ayagawa-river",
    model="WaterObserved",
    model_params={
        "levelMode": "distance",
        "levelMeasure": "d",
        "referenceLevel": 5.5,
        "location": "34.21, 133.95",
        "deviceEntity": "urn:ngsi-ld:Device:ayagawa-sonar-7",
    },
    attributes=(
        AttributeMapping("d", "distance", "Number"),
        AttributeMapping("t", "temperature", "Number", unit_code="CEL"),
        AttributeMapping("b", "battery", "Number"),
    ),
)
PLOW = DeviceConfig(
    tenant="aizuwakamatsu",
    service_path="/",
    device_id="plow-017",
    entity_name="urn:ngsi-ld:Vehicle:aizuwakamatsu-plow-017",
    entity_type="Vehicle",
    protocol=CHIRPSTACK,
    dev_eui="0004a30b001c0530",
    codec=CAYENNE,
    model="Vehicle",
    model_params={
        "speedMeasure": "analog_in_2",
        "serviceProvided": ["maintenance"],
        "serviceStatus": "onRoute",
        "vehiclePlateIdentifier": "会津 800 さ 17",
        "wardName": "Kita",
    },
)
# A tracker over the IoT Agent JSON: position as geo:point text, speed in knots, a mapped extra.
BUS = DeviceConfig(
    tenant="toyama",
    service_path="/bus",
    device_id="bus-3",
    entity_name="urn:ngsi-ld:Vehicle:toyama-bus-3",
    entity_type="Vehicle",
    protocol=IOTA_JSON,
    apikey="toyama-bus",
    model="Vehicle",
    model_params={"speedUnit": "KNT", "vehicleType": "bus", "category": "public"},
    attributes=(
        AttributeMapping("pos", "location", "geo:point"),
        AttributeMapping("occ", "occupancy", "Number", metadata={"description": "seats taken"}),
    ),
    timestamp=True,
)
DETECTOR = DeviceConfig(
    tenant="kakogawa",
    service_path="/mimamori",
    device_id="det-cam-0412",
    entity_name="urn:ngsi-ld:Device:det-cam-0412",
    entity_type="Device",
    protocol=IOTA_JSON,
    apikey="kakogawa-mimamori",
    model="BeaconDetector",
    model_params={
        "location": {"type": "Point", "coordinates": [134.8406, 34.7566]},
        "idPrefix": "kakogawa-",
        "sightings": True,
    },
)
PHONE = DeviceConfig(
    tenant="kakogawa",
    service_path="/mimamori",
    device_id="volunteer-app-77",
    entity_name="urn:ngsi-ld:Device:volunteer-app-77",
    entity_type="Device",
    protocol=IOTA_JSON,
    apikey="kakogawa-mimamori",
    model="BeaconDetector",
    model_params={"tagBatteryUnit": "percent", "batteryMeasure": "phone_battery", "batteryUnit": "percent"},
)
THERMO = DeviceConfig(
    tenant="toyama",
    service_path="/trial",
    device_id="thermo-1",
    entity_name="urn:ngsi-ld:Thermometer:thermo-1",
    entity_type="Thermometer",
    protocol=IOTA_UL,
    apikey="toyama-trial",
    attributes=(
        AttributeMapping("t", "temperature", "Number", unit_code="CEL"),
        AttributeMapping("p", "position", "geo:point"),
        AttributeMapping("on", "active", "Boolean"),
        AttributeMapping("at", "lastService", "DateTime"),
        AttributeMapping("n", "note", "Text"),
    ),
    static_attributes=(
        StaticAttribute("owner", "Text", "Toyama trial 7"),
        StaticAttribute("installedIn", "Relationship", "urn:ngsi-ld:Building:toyama-hall"),
        StaticAttribute("height", "Number", 2.5, unit_code="MTR"),
    ),
    commands=(Command("reset"), Command("interval")),
    model_params={"controlledProperty": ["temperature"]},
)
# An IoT Agent JSON device with rich provisioning: metadata, GeoJSON, relationships, an SDM context.
STATION = DeviceConfig(
    tenant="toyama",
    service_path="/trial",
    device_id="station-9",
    entity_name="urn:ngsi-ld:WeatherObserved:station-9",
    entity_type="WeatherObserved",
    protocol=IOTA_JSON,
    apikey="toyama-trial",
    attributes=(
        AttributeMapping(
            "temp",
            "temperature",
            "Property",
            unit_code="CEL",
            metadata={
                "accuracy": {"type": "Property", "value": 0.2},
                "unitCode": {"value": "CEL"},
                "sensorModel": "SHT31",
            },
            source_type="Number",
        ),
        AttributeMapping("area", "coverage", "GeoProperty", source_type="geo:json"),
        AttributeMapping("near", "refPointOfInterest", "Relationship"),
        AttributeMapping("rain", "precipitation", "Property", unit_code="MMT", source_type="Number"),
    ),
    explicit_attrs=True,
    health=False,
    model_params={
        "context": "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld"
    },
)
# JSON codec over LoRaWAN (the payload is JSON text, base64 in the uplink), generic mapping.
JSON_NODE = DeviceConfig(
    tenant="toyama",
    service_path="/trial",
    device_id="json-node-2",
    entity_name="urn:ngsi-ld:AirSensor:json-node-2",
    entity_type="AirSensor",
    protocol=TTS,
    dev_eui="a84041000181c6f3",
    codec=JSON,
    model_params={"batteryMeasure": "bat", "lowBattery": 0.3},
)
# A tracker misprovisioned with a vehicle type its Smart Data Model does not know: the schema refuses it.
HOVER = DeviceConfig(
    tenant="toyama",
    service_path="/bus",
    device_id="hover-1",
    entity_name="urn:ngsi-ld:Vehicle:toyama-hover-1",
    entity_type="Vehicle",
    protocol=IOTA_JSON,
    apikey="toyama-bus",
    model="Vehicle",
    model_params={"vehicleType": "hovercraft"},
    health=False,
)
DEVICES = (HOVER, TTS_GAUGE, SIGFOX_GAUGE, SONAR, PLOW, BUS, DETECTOR, PHONE, THERMO, STATION, JSON_NODE)


class Devices:
    """A registry of fixed devices, found by DevEUI, Sigfox id or apikey and device id."""

    def __init__(self, devices: list[DeviceConfig]) -> None:
        self._by: dict[tuple[str, ...], DeviceConfig] = {}
        for device in devices:
            self.add(device)

    def add(self, device: DeviceConfig) -> None:
        if device.dev_eui:
            self._by[("eui", device.dev_eui)] = device
        self._by[("id", device.device_id.lower())] = device
        if device.apikey:
            self._by[("key", device.apikey, device.device_id)] = device

    def find(self, message: DeviceMessage) -> DeviceConfig | None:
        if message.dev_eui is not None:
            return self._by.get(("eui", message.dev_eui))
        if message.apikey is not None:
            return self._by.get(("key", message.apikey, message.device_id))
        return self._by.get(("id", message.device_id.lower()))


@dataclass(frozen=True, slots=True)
class Case:
    """One message of the corpus, under a name that says what it exercises."""

    name: str
    inbound: Inbound


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _inbound(family: Family, origin: str, body: Any, at: str | datetime) -> Inbound:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    received = at if isinstance(at, datetime) else _at(at)
    return Inbound(family, origin, raw, received)


def sample_cases() -> Iterator[Case]:
    """The sample uplinks of tests/fixtures/uplinks, each through its family's binding."""
    tts = fixture_json("uplinks/tts_v3_uplink_waterlevel.json")
    yield Case("tts gauge sample", _inbound(TTS, tts["_mqtt_topic"], tts["message"], "2025-09-01T01:00:05Z"))
    undecoded = orjson.loads(orjson.dumps(tts["message"]))
    del undecoded["uplink_message"]["decoded_payload"]
    yield Case(
        "tts gauge sample, raw frame", _inbound(TTS, "/adapters/tts", undecoded, "2025-09-01T01:00:05Z")
    )
    sigfox = fixture_json("uplinks/sigfox_uplink_callback_waterlevel.json")
    for index, body in enumerate(_sigfox_bodies(sigfox)):
        yield Case(
            f"sigfox gauge sample {index}",
            _inbound(SIGFOX, "/adapters/sigfox/uplink", body, "2025-09-01T01:00:02Z"),
        )
    chirpstack = fixture_json("uplinks/chirpstack_v4_uplink_snowplow.json")
    yield Case(
        "chirpstack plow sample",
        _inbound(CHIRPSTACK, chirpstack["_mqtt_topic"], chirpstack["message"], "2025-01-15T21:40:21Z"),
    )
    ble = fixture_json("uplinks/ble_detection_mqtt.json")
    yield Case(
        "ble detector sample batch",
        _inbound(IOTA_JSON, ble["_mqtt_topic"], ble["message"], "2025-10-03T06:41:20Z"),
    )


def _sigfox_bodies(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """The sample's callback body pointed at SIGFOX_GAUGE, and one sent as text with the river high."""
    body = {**sample["example_body"], "device": SIGFOX_GAUGE.device_id}
    high = {**body, "data": "fe0c0d8000", "seqNumber": "2212", "time": "1756689000", "rssi": "-131.5"}
    return [body, high]


def hand_cases() -> Iterator[Case]:
    """IoT Agent and LoRaWAN messages that reach the corners of every model."""
    at = "2025-09-01T01:00:05.250Z"
    ul, js = "/ul/ayagawa-river/sonar-7/attrs", "/json/toyama-bus/bus-3/attrs"
    yield Case("ul sonar distance", _inbound(IOTA_UL, ul, b"d|2.125|t|18.5|b|3.41", at))
    yield Case(
        "ul sonar with TimeInstant", _inbound(IOTA_UL, ul, b"d|1.5|TimeInstant|2025-09-01T10:00:00+09:00", at)
    )
    yield Case("ul sonar unmapped measure", _inbound(IOTA_UL, ul, b"d|3|x_y|7", at))
    yield Case(
        "json bus in knots",
        _inbound(IOTA_JSON, js, {"pos": "36.70, 137.21", "speed": 10, "heading": 360, "occ": 31}, at),
    )
    yield Case(
        "json bus multimeasure",
        _inbound(
            IOTA_JSON, js, [{"pos": "36.70, 137.21", "speed": 0}, {"pos": "36.71, 137.22", "speed": 12.5}], at
        ),
    )
    yield Case("json bus without a position", _inbound(IOTA_JSON, js, {"speed": 3}, at))
    yield Case(
        "json hovercraft refused by the schema",
        _inbound(IOTA_JSON, "/json/toyama-bus/hover-1/attrs", {"location": [137.2, 36.7]}, at),
    )
    yield Case("json bus at 0,0", _inbound(IOTA_JSON, js, {"pos": "0, 0"}, at))
    phone = "/json/kakogawa-mimamori/volunteer-app-77/attrs"
    yield Case(
        "json phone sightings with own position",
        _inbound(
            IOTA_JSON,
            phone,
            [
                {
                    "tag": "a1f3c09e7b22",
                    "rssi": -60,
                    "ts": "2025-10-03T06:41:12.5Z",
                    "latitude": 34.75,
                    "longitude": 134.84,
                    "battery": 82,
                },
                {
                    "tag": "0c9d55e21a40",
                    "ts": "2025-10-03T15:41:15+09:00",
                    "location": [134.85, 34.76],
                    "phone_battery": 55,
                },
            ],
            at,
        ),
    )
    yield Case(
        "json phone sighting without a place", _inbound(IOTA_JSON, phone, [{"tag": "a1f3c09e7b22"}], at)
    )
    thermo = "/ul/toyama-trial/thermo-1/attrs"
    yield Case(
        "ul thermometer every type",
        _inbound(
            IOTA_UL, thermo, b"t|21.5|p|36.70, 137.21|on|true|at|2025-09-01T10:00:00+09:00|n|42|h|45", at
        ),
    )
    yield Case("ul thermometer not a number", _inbound(IOTA_UL, thermo, b"t|warm", at))
    yield Case("ul thermometer a measure named type", _inbound(IOTA_UL, thermo, b"type|x", at))
    yield Case("ul thermometer a forbidden name", _inbound(IOTA_UL, thermo, b"bad name|1", at))
    yield Case("ul thermometer a measure named location", _inbound(IOTA_UL, thermo, b"location|1", at))
    station = "/json/toyama-trial/station-9/attrs"
    yield Case(
        "json station metadata, geojson, relationship, sdm context",
        _inbound(
            IOTA_JSON,
            station,
            {
                "temp": "3.5",
                "area": {
                    "type": "Polygon",
                    "coordinates": [[[137.2, 36.7], [137.3, 36.7], [137.3, 36.8], [137.2, 36.7]]],
                },
                "near": "urn:ngsi-ld:PointOfInterest:toyama-station",
                "rain": 0,
                "ignored": 1,
                "TimeInstant": "2025-09-01T10:00:00.123456+09:00",
            },
            at,
        ),
    )
    yield Case("json station not an entity id", _inbound(IOTA_JSON, station, {"near": "toyama station"}, at))
    yield Case(
        "json station bad polygon",
        _inbound(IOTA_JSON, station, {"area": {"type": "Polygon", "coordinates": [[[1, 2], [3, 4]]]}}, at),
    )
    yield Case(
        "ul-apikey json thermometer a nested JSON value",
        _inbound(
            IOTA_JSON,
            "/json/toyama-trial/thermo-1/attrs",
            {"t": 1, "blob": {"a": [1, {"b": None}], "c": "x"}},
            at,
        ),
    )
    node = {
        "end_device_ids": {
            "device_id": "json-node-2",
            "dev_eui": "A84041000181C6F3",
            "application_ids": {"application_id": "toyama-air"},
        },
        "received_at": "2025-09-01T01:00:05.5Z",
        "uplink_message": {
            "f_port": 1,
            "f_cnt": 88,
            "frm_payload": "eyJwbTI1IjogMTIuNSwgImJhdCI6IDAuMjUsICJ0ZW1wIjogMjIsICJvayI6IHRydWV9",
            "rx_metadata": [{"gateway_ids": {"gateway_id": "toyama-gw-2"}, "rssi": -97, "snr": 6.5}],
            "received_at": "2025-09-01T01:00:05.4Z",
        },
    }
    yield Case("tts json codec node", _inbound(TTS, "v3/toyama-air@ttn/devices/json-node-2/up", node, at))


def simulated_cases() -> Iterator[Case]:
    """The first messages of each simulator stream (gauges over TTS and Sigfox, plows, tags)."""
    scenarios = (
        ("flood", flood.scenario(4, 2, SIM_START, "takamatsu-flood", "ttn", "takamatsu-flood")),
        ("plows", plows.scenario(3, 3, SIM_START, "7c1e0d4a-3b8f-4e6a-9f1d-2a5b6c7d8e9f", "plows")),
        ("tags", tags.scenario(3, 20, 4, SIM_START, "kakogawa-mimamori", phones=2)),
    )
    for name, scenario in scenarios:
        for index, message in enumerate(itertools.islice(scenario.messages, SIM_MESSAGES)):
            yield Case(f"simulated {name} {index}", _outgoing(message))


def _outgoing(message: Outgoing) -> Inbound:
    family = Family(message.family)
    origin = message.topic if message.topic is not None else message.path
    if message.topic is not None and family not in (SIGFOX,):
        family = family_of_topic(message.topic)
    return _inbound(family, origin, message.body, message.at)


def simulated_devices() -> list[DeviceConfig]:
    """The simulators' devices as the provisioning API would store them."""
    configs: list[DeviceConfig] = []
    for scenario in _device_scenarios():
        (_, services), *device_requests = provisioning_requests(scenario)
        groups = [parse_group(g, "sim", "/") for g in services["services"]]
        for _, body in device_requests:
            for data in body["devices"]:
                device = parse_device(data, "sim", "/", groups)
                configs.append(resolve(device, group_of(device, groups)))
    return configs


def _device_scenarios() -> list[Scenario]:
    return [
        flood.scenario(4, 2, SIM_START, "takamatsu-flood", "ttn", "takamatsu-flood"),
        plows.scenario(3, 3, SIM_START, "7c1e0d4a-3b8f-4e6a-9f1d-2a5b6c7d8e9f", "plows"),
        tags.scenario(3, 20, 4, SIM_START, "kakogawa-mimamori", phones=2),
    ]


def cases() -> list[Case]:
    return [*sample_cases(), *hand_cases(), *simulated_cases()]


def devices() -> Devices:
    return Devices([*DEVICES, *simulated_devices()])


async def offline_term_map(urls: list[str]) -> TermMap:
    """What the broker's resolver compiles for bundled @contexts (the only ones the corpus uses),
    compiled once per list as the resolver caches it."""
    return _compiled(tuple(urls))


@cache
def _compiled(urls: tuple[str, ...]) -> TermMap:
    documents = []
    for url in urls:
        document = bundled_document(url)
        if document is not None:
            documents.extend(context_objects(document))
    return compile_contexts(documents, core_document())


class _NoLetters:
    async def add(self, *args: Any) -> int:
        raise AssertionError("the prepare step stores no dead letter")


def pipeline(found: Devices | None = None) -> Pipeline:
    """A pipeline wired as adapters.wiring wires it, minus the database: only its prepare step runs."""
    return Pipeline(
        None,  # type: ignore[arg-type]  # the writer: the prepare step does not write
        found or devices(),
        parse,
        _Mapper(PSEUDONYMS, offline_term_map),
        Validator().check,
        _NoLetters(),
    )


async def prepare(pipe: Pipeline, inbound: Inbound) -> _Prepared | None:
    """The pipeline's prepare step for one message (raises Rejected with the dead letter's reason)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    return await pipe._prepare(_Job(inbound, future))


def outcome(prepared: _Prepared | None) -> dict[str, Any]:
    """What a prepared message would write: each entity as created at NOW, or nothing."""
    if prepared is None:
        return {"ignored": True}
    entities = []
    for operation in prepared.operations:
        created = operation.apply(None, NOW).entity
        assert created is not None
        entities.append({"operation": operation.entity_id, "once": operation.once, **as_json(created)})
    return {"device": prepared.device.device_id, "entities": entities}


def as_json(entity: Entity) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entity.id, "types": entity.types}
    if entity.scopes is not None:
        out["scopes"] = entity.scopes
    out["attrs"] = entity.attrs
    out["createdAt"], out["modifiedAt"] = entity.created_at, entity.modified_at
    return out


async def run_corpus() -> dict[str, Any]:
    """Every case's outcome, by case name."""
    pipe = pipeline()
    results: dict[str, Any] = {}
    for case in cases():
        assert case.name not in results, f"two cases named {case.name!r}"
        try:
            results[case.name] = outcome(await prepare(pipe, case.inbound))
        except Rejected as rejected:
            results[case.name] = {"rejected": rejected.reason}
    return results


def dumps(results: dict[str, Any]) -> bytes:
    return orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def record(path: Path = GOLDEN) -> None:
    results = asyncio.run(run_corpus())
    path.write_bytes(dumps(results))
    kinds = [
        ("rejected" if "rejected" in r else "ignored" if "ignored" in r else "stored")
        for r in results.values()
    ]
    print(
        f"{path}: {len(results)} messages, {kinds.count('stored')} stored, {kinds.count('rejected')} rejected"
    )


if __name__ == "__main__":
    record()
