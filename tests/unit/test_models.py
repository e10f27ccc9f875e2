"""Gauges, plows and generic IoT Agent devices to Smart Data Model entities, against the reference entities."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.codecs.cayenne import decode as cayenne_decode
from adapters.codecs.layout import decode as layout_decode
from adapters.device import AttributeMapping, DeviceConfig, EntityUpdate, LayoutField, StaticAttribute
from adapters.message import Family, Rejected, to_utc
from adapters.models import flood, normalise
from adapters.models.common import point
from adapters.pseudonym import Pseudonymiser
from adapters.validate import Validator
from broker.errors import BadRequestData
from broker.jsonld.context import (
    DEFAULT_VOCAB,
    bundled_document,
    compile_contexts,
    context_objects,
    core_document,
    is_core_url,
)
from broker.model.parse import parse_entity
from tests.conftest import fixture_json

PSEUDONYMS = Pseudonymiser(b"unit-test-secret-0123456789abcdef")
GAUGE_TIME = datetime(2025, 9, 1, 1, 0, tzinfo=UTC)  # the Sigfox sample's time 1756688400
PLOW_TIME = datetime(2025, 1, 15, 21, 40, 20, tzinfo=UTC)

# The Takamatsu gauge of the TTS and Sigfox samples: level relative to the bank top, a 3.6 V cell.
GAUGE = DeviceConfig(
    tenant="takamatsu",
    service_path="/",
    device_id="wl-kasuga-001",
    entity_name="urn:ngsi-ld:FloodMonitoring:kagawa-kasugagawa-001",
    entity_type="FloodMonitoring",
    protocol=Family.TTS,
    model="FloodMonitoring",
    model_params={
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
    },
)
PLOW = DeviceConfig(
    tenant="aizuwakamatsu",
    service_path="/",
    device_id="plow-017",
    entity_name="urn:ngsi-ld:Vehicle:aizuwakamatsu-plow-017",
    entity_type="Vehicle",
    protocol=Family.CHIRPSTACK,
    model="Vehicle",
    model_params={
        "speedMeasure": "analog_in_2",
        "serviceProvided": ["maintenance"],
        "serviceStatus": "onRoute",
    },
    health=False,
)


def by_type(updates: list[EntityUpdate]) -> dict[str, EntityUpdate]:
    return {u.normalized()["type"]: u for u in updates}


def same_as_reference(update: EntityUpdate, name: str, entity: dict[str, Any] | None = None) -> None:
    """``update`` (or ``entity``, its normalized form edited) read back is the reference entity ``name``."""
    reference = fixture_json(name)
    assert update.context == tuple(reference.pop("@context"))
    assert (update.normalized() if entity is None else entity) == reference


def expanded(update: EntityUpdate) -> dict[str, Any]:
    """The entity's expanded attributes, which must be what the broker's API parser makes of the
    entity read back in normalized form with the update's own @context (bundled documents only):
    building the entity directly gives what parsing its JSON gave."""
    documents = [
        doc
        for url in update.context
        if not is_core_url(url)
        for doc in context_objects(bundled_document(url))
    ]
    parsed = parse_entity(update.normalized(), compile_contexts(documents, core_document()))
    assert parsed == update.entity
    return update.entity.attrs


def test_a_gauge_reading_relative_to_the_bank_gives_the_reference_flood_monitoring_entity() -> None:
    measures = {"analog_in_1": -1.23, "analog_in_2": 3.61}
    updates = by_type(normalise(GAUGE, measures, GAUGE_TIME, {"rssi": -108}, PSEUDONYMS))
    same_as_reference(updates["FloodMonitoring"], "FloodMonitoring_kasuga-001.jsonld")
    same_as_reference(updates["WaterObserved"], "WaterObserved_kasuga-001.jsonld")


def test_an_ultrasonic_distance_gives_the_same_entity_as_the_bank_relative_reading() -> None:
    params = {k: v for k, v in GAUGE.model_params.items() if k not in ("levelMode", "levelMeasure")}
    sonar = DeviceConfig(**{**_fields(GAUGE), "model_params": params, "health": False})
    updates = by_type(normalise(sonar, {"distance": 3.43}, GAUGE_TIME, {}, PSEUDONYMS))
    same_as_reference(updates["FloodMonitoring"], "FloodMonitoring_kasuga-001.jsonld")


def test_a_level_in_millimetres_is_scaled_to_metres() -> None:
    params = {**GAUGE.model_params, "levelMode": "level", "levelMeasure": "level", "levelScale": 0.001}
    gauge = DeviceConfig(**{**_fields(GAUGE), "model_params": params})
    current, distance, _ = flood.levels(gauge, {"level": 1530})
    assert (current, distance) == (1.53, 2.67)


@pytest.mark.parametrize(
    ("reading", "status"),
    [
        (-1.23, "Normal"),
        (-0.61, "Normal"),
        (-0.6, "Alert"),
        (-0.01, "Alert"),
        (0.0, "Danger"),
        (0.5, "Danger"),
    ],
)
def test_flood_level_status_turns_alert_at_the_alert_level_and_danger_at_the_danger_level(
    reading: float, status: str
) -> None:
    # bank 2.0 m: alert 1.4 m is a reading of -0.6 m, danger 2.0 m a reading of 0.
    updates = by_type(normalise(GAUGE, {"analog_in_1": reading}, GAUGE_TIME, {}, PSEUDONYMS))
    assert updates["FloodMonitoring"].normalized()["floodLevelStatus"]["value"] == status


def test_the_flood_mode_flag_sets_the_observation_mode() -> None:
    gauge = DeviceConfig(
        **{**_fields(GAUGE), "model_params": {**GAUGE.model_params, "floodModeMeasure": "digital_in_3"}}
    )
    flag_on = by_type(normalise(gauge, {"analog_in_1": -1.0, "digital_in_3": 1}, GAUGE_TIME, {}, PSEUDONYMS))
    flag_off = by_type(normalise(gauge, {"analog_in_1": -1.0, "digital_in_3": 0}, GAUGE_TIME, {}, PSEUDONYMS))
    assert flag_on["FloodMonitoring"].normalized()["observationMode"]["value"] == "flood"
    assert flag_off["FloodMonitoring"].normalized()["observationMode"]["value"] == "normal"


def test_the_sigfox_sample_frame_decoded_by_its_layout_gives_the_reference_entity() -> None:
    # uplinks/sigfox_uplink_callback_waterlevel.json: i16 level mm to bank top, u16 battery mV, flags.
    layout = (
        LayoutField("level", 0, 2, signed=True, scale=0.001),
        LayoutField("battery", 2, 2),
        LayoutField("flood_mode", 4, 1, bits=(0, 1), kind="bool"),
    )
    params = {**GAUGE.model_params, "levelMeasure": "level", "batteryMeasure": "battery", "batteryUnit": "mV"}
    gauge = DeviceConfig(
        **{**_fields(GAUGE), "protocol": "sigfox", "device_id": "3F2A91", "model_params": params}
    )
    measures = layout_decode(bytes.fromhex("fb320e1a01"), layout)
    updates = by_type(normalise(gauge, measures, to_utc(1756688400), {"rssi": "-128.0"}, PSEUDONYMS))
    flood = updates["FloodMonitoring"]
    entity = flood.normalized()
    assert entity.pop("observationMode") == {
        "type": "Property",
        "value": "flood",
        "observedAt": "2025-09-01T01:00:00Z",
    }
    same_as_reference(flood, "FloodMonitoring_kasuga-001.jsonld", entity)
    assert updates["Device"].normalized()["rssi"]["value"] == -128.0
    assert updates["Device"].normalized()["batteryLevel"]["value"] == 1.0


def test_the_tts_sample_cayenne_payload_gives_the_reference_entity() -> None:
    measures = cayenne_decode(base64.b64decode("AQL/hQICAWkDAAE="))
    updates = by_type(normalise(GAUGE, measures, GAUGE_TIME, {}, PSEUDONYMS))
    same_as_reference(updates["FloodMonitoring"], "FloodMonitoring_kasuga-001.jsonld")


def test_every_entity_the_models_make_passes_its_schema() -> None:
    validator = Validator(accept_unknown=False)
    updates = normalise(
        GAUGE, {"analog_in_1": 0.4, "analog_in_2": 3.4}, GAUGE_TIME, {"rssi": -100}, PSEUDONYMS
    )
    plow = DeviceConfig(**{**_fields(PLOW), "health": True})
    updates += normalise(
        plow,
        {"gps_1": {"latitude": 37.5, "longitude": 139.9}, "analog_in_2": 0, "heading": 0},
        PLOW_TIME,
        {},
        PSEUDONYMS,
    )
    for update in updates:
        validator.check(update)


def test_without_a_flag_the_observation_start_level_decides_the_mode() -> None:
    params = {**GAUGE.model_params, "observationStartLevel": 1.0}
    gauge = DeviceConfig(**{**_fields(GAUGE), "model_params": params, "health": False})
    modes = [
        by_type(normalise(gauge, {"analog_in_1": reading}, GAUGE_TIME, {}, PSEUDONYMS))[
            "FloodMonitoring"
        ].normalized()["observationMode"]["value"]
        for reading in (-1.01, -1.0, 0.2)
    ]
    assert modes == ["normal", "flood", "flood"]


def test_a_gauge_with_danger_below_alert_is_rejected_as_misprovisioned() -> None:
    params = {**GAUGE.model_params, "alertLevel": 2.0, "dangerLevel": 1.2}
    gauge = DeviceConfig(**{**_fields(GAUGE), "model_params": params})
    with pytest.raises(Rejected, match=r"dangerLevel 1\.2 is below alertLevel 2\.0"):
        normalise(gauge, {"analog_in_1": -1.0}, GAUGE_TIME, {}, PSEUDONYMS)


def test_a_gauge_message_without_its_level_or_with_text_is_rejected_with_the_measure_named() -> None:
    with pytest.raises(Rejected, match="no water level measure 'analog_in_1'"):
        normalise(GAUGE, {"analog_in_2": 3.6}, GAUGE_TIME, {}, PSEUDONYMS)
    with pytest.raises(Rejected, match="measure analog_in_1 is 'high', not a number"):
        normalise(GAUGE, {"analog_in_1": "high"}, GAUGE_TIME, {}, PSEUDONYMS)


def test_the_gauge_health_has_battery_as_a_fraction_rssi_and_last_report() -> None:
    updates = by_type(
        normalise(GAUGE, {"analog_in_1": -1.2, "analog_in_2": 3.3}, GAUGE_TIME, {"rssi": -108}, PSEUDONYMS)
    )
    device = updates["Device"].normalized()
    assert device["id"] == "urn:ngsi-ld:Device:wl-kasuga-001"
    assert device["batteryLevel"]["value"] == 0.5  # 3.3 V between 3.0 and 3.6 V
    assert device["rssi"]["value"] == -108
    assert device["deviceState"]["value"] == "ok"
    assert device["dateLastValueReported"]["value"] == {"@type": "DateTime", "@value": "2025-09-01T01:00:00Z"}
    assert device["supportedProtocol"]["value"] == ["lora"]
    low = by_type(normalise(GAUGE, {"analog_in_1": -1.2, "analog_in_2": 3.05}, GAUGE_TIME, {}, PSEUDONYMS))
    assert low["Device"].normalized()["deviceState"]["value"] == "batteryLow"


def test_a_plow_position_and_speed_give_the_reference_vehicle() -> None:
    measures = {
        "gps_1": {"latitude": 37.4947, "longitude": 139.9298, "altitude": 215.0},
        "analog_in_2": 12.5,
        "heading": 84,
    }
    (update,) = normalise(PLOW, measures, PLOW_TIME, {}, PSEUDONYMS)
    same_as_reference(update, "Vehicle_plow-017.jsonld")


@pytest.mark.parametrize(
    "position",
    [
        [None, None],
        {"latitude": None, "longitude": None},
        {"latitude": 91, "longitude": 139.9},
        {"latitude": 37.4, "longitude": 181},
        {"latitude": 0, "longitude": 0},
        "37.4",
        {"latitude": "n/a", "longitude": 1},
    ],
)
def test_a_plow_without_a_usable_position_is_rejected(position: Any) -> None:
    with pytest.raises(Rejected, match="measure gps_1"):
        normalise(PLOW, {"gps_1": position, "analog_in_2": 3}, PLOW_TIME, {}, PSEUDONYMS)


def test_a_plow_message_with_no_position_at_all_is_rejected() -> None:
    with pytest.raises(Rejected, match="has no position"):
        normalise(PLOW, {"analog_in_2": 3}, PLOW_TIME, {}, PSEUDONYMS)


def test_plow_speed_in_metres_per_second_is_converted_and_a_negative_speed_rejected() -> None:
    plow = DeviceConfig(**{**_fields(PLOW), "model_params": {**PLOW.model_params, "speedUnit": "MTS"}})
    (update,) = normalise(plow, {"location": "37.49, 139.93", "analog_in_2": 5}, PLOW_TIME, {}, PSEUDONYMS)
    assert update.normalized()["speed"] == {
        "type": "Property",
        "value": 18.0,
        "unitCode": "KMH",
        "observedAt": "2025-01-15T21:40:20Z",
    }
    assert update.normalized()["location"]["value"]["coordinates"] == [139.93, 37.49]
    with pytest.raises(Rejected, match="negative speed"):
        normalise(plow, {"location": "37.49, 139.93", "analog_in_2": -1}, PLOW_TIME, {}, PSEUDONYMS)


def test_a_plow_reads_the_measures_its_provisioned_attributes_name_speed_and_location() -> None:
    mappings = (
        AttributeMapping("analog_in_2", "speed", "Number"),
        AttributeMapping("gps_1", "location", "geo:point"),
    )
    plow = DeviceConfig(**{**_fields(PLOW), "model_params": {}, "attributes": mappings})
    measures = {"gps_1": {"latitude": 37.49, "longitude": 139.93}, "analog_in_2": 22.0, "digital_in_3": 1}
    (update,) = normalise(plow, measures, PLOW_TIME, {}, PSEUDONYMS)
    assert update.normalized()["speed"]["value"] == 22.0
    assert update.normalized()["location"]["value"]["coordinates"] == [139.93, 37.49]
    assert "analog_in_2" not in update.normalized()
    assert "digital_in_3" not in update.normalized()  # not mapped: an SDM entity stays clean


@pytest.mark.parametrize(
    ("battery", "unit"),
    [(3.3, None), (3300, None), (50, None), (0.5, None), (0.5, "fraction"), (3300, "mV"), (50, "percent")],
)
def test_battery_is_read_as_volts_millivolts_or_percent_by_unit_or_magnitude(
    battery: float, unit: str | None
) -> None:
    params = {k: v for k, v in GAUGE.model_params.items() if k not in ("batteryMeasure", "batteryUnit")}
    if unit is not None:
        params["batteryUnit"] = unit
    gauge = DeviceConfig(**{**_fields(GAUGE), "model_params": params})
    updates = by_type(normalise(gauge, {"analog_in_1": -1.0, "battery": battery}, GAUGE_TIME, {}, PSEUDONYMS))
    assert updates["Device"].normalized()["batteryLevel"]["value"] == 0.5


def test_every_model_attribute_expands_to_its_smart_data_model_iri() -> None:
    updates = normalise(
        GAUGE, {"analog_in_1": -1.23, "analog_in_2": 3.61}, GAUGE_TIME, {"rssi": -9}, PSEUDONYMS
    )
    updates += normalise(
        PLOW,
        {"gps_1": {"latitude": 37.5, "longitude": 139.9}, "analog_in_2": 1, "heading": 3},
        PLOW_TIME,
        {},
        PSEUDONYMS,
    )
    for update in updates:
        for iri in expanded(update):
            assert not iri.startswith(DEFAULT_VOCAB), (
                f"{update.normalized()['type']}: {iri} is not a SDM term"
            )


# --- generic IoT Agent mapping -------------------------------------------------------------

THERMO = DeviceConfig(
    tenant="toyama",
    service_path="/trial",
    device_id="thermo-1",
    entity_name="urn:ngsi-ld:Thermometer:thermo-1",
    entity_type="Thermometer",
    protocol=Family.IOTA_UL,
    attributes=(
        AttributeMapping("t", "temperature", "Number", unit_code="CEL"),
        AttributeMapping("p", "position", "geo:point"),
        AttributeMapping("on", "active", "Boolean"),
    ),
    static_attributes=(StaticAttribute("owner", "Text", "Toyama trial 7"),),
)


def test_generic_mapping_renames_casts_and_stamps_measures_as_the_iot_agent_does() -> None:
    local = datetime(2025, 9, 1, 10, 0, 5, 250000, tzinfo=timezone(timedelta(hours=9)))
    (entity, health) = normalise(
        THERMO, {"t": "21.5", "p": "36.70, 137.21", "on": "true", "h": "45"}, local, {}, PSEUDONYMS
    )
    at = "2025-09-01T01:00:05.250Z"
    assert entity.context == ("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",)
    assert entity.normalized() == {
        "id": "urn:ngsi-ld:Thermometer:thermo-1",
        "type": "Thermometer",
        "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": at},
        "position": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [137.21, 36.7]},
            "observedAt": at,
        },
        "active": {"type": "Property", "value": True, "observedAt": at},
        "h": {"type": "Property", "value": "45", "observedAt": at},
        "owner": {"type": "Property", "value": "Toyama trial 7"},
    }
    assert health.normalized()["type"] == "Device"
    assert health.normalized()["supportedProtocol"]["value"] == ["ul20"]


def test_a_mapping_converted_at_provisioning_still_casts_by_its_iot_agent_type() -> None:
    mappings = (
        AttributeMapping("t", "temperature", "Property", unit_code="CEL", source_type="Number"),
        AttributeMapping("p", "position", "GeoProperty", source_type="geo:point"),
    )
    device = DeviceConfig(
        **{**_fields(THERMO), "attributes": mappings, "health": False, "static_attributes": ()}
    )
    (update,) = normalise(device, {"t": "21.5", "p": "36.70, 137.21"}, GAUGE_TIME, {}, PSEUDONYMS)
    assert update.normalized()["temperature"]["value"] == 21.5
    assert update.normalized()["position"]["value"] == {"type": "Point", "coordinates": [137.21, 36.7]}


def test_explicit_attrs_drop_unmapped_measures_and_time_instant_sets_observed_at() -> None:
    device = DeviceConfig(
        **{**_fields(THERMO), "explicit_attrs": True, "health": False, "static_attributes": ()}
    )
    (update,) = normalise(
        device,
        {"t": 20, "junk": 1, "TimeInstant": "2025-09-01T10:00:00+09:00"},
        GAUGE_TIME + timedelta(hours=1),
        {},
        PSEUDONYMS,
    )
    assert set(update.normalized()) == {"id", "type", "temperature"}
    assert update.normalized()["temperature"]["observedAt"] == "2025-09-01T01:00:00Z"


def test_without_timestamp_the_time_instant_measure_is_an_ordinary_attribute() -> None:
    device = DeviceConfig(**{**_fields(THERMO), "timestamp": False, "health": False, "static_attributes": ()})
    (update,) = normalise(
        device, {"t": 20, "TimeInstant": "2025-09-01T10:00:00+09:00"}, GAUGE_TIME, {}, PSEUDONYMS
    )
    assert update.normalized()["temperature"]["observedAt"] == "2025-09-01T01:00:00Z"
    assert update.normalized()["TimeInstant"]["value"] == "2025-09-01T10:00:00+09:00"


def test_generic_mapping_rejects_a_non_number_for_a_number_and_a_measure_named_type() -> None:
    with pytest.raises(Rejected, match="measure t is 'warm', not a number"):
        normalise(THERMO, {"t": "warm"}, GAUGE_TIME, {}, PSEUDONYMS)
    with pytest.raises(Rejected, match="entity member 'type'"):
        normalise(THERMO, {"type": "x"}, GAUGE_TIME, {}, PSEUDONYMS)


def test_a_null_measure_is_rejected_by_name() -> None:
    with pytest.raises(Rejected, match="measure 'h' is null"):
        normalise(THERMO, {"t": 1, "h": None}, GAUGE_TIME, {}, PSEUDONYMS)


def test_word_list_parameters_may_be_given_as_one_word() -> None:
    params = {**PLOW.model_params, "category": "municipalServices", "serviceProvided": "streetCleaning"}
    plow = DeviceConfig(**{**_fields(PLOW), "model_params": params})
    (update,) = normalise(plow, {"location": "37.49, 139.93"}, PLOW_TIME, {}, PSEUDONYMS)
    assert update.normalized()["category"]["value"] == ["municipalServices"]
    assert update.normalized()["serviceProvided"]["value"] == ["streetCleaning"]


def test_an_unknown_model_is_rejected_by_name() -> None:
    device = DeviceConfig(**{**_fields(THERMO), "model": "Submarine"})
    with pytest.raises(Rejected, match="'Submarine'"):
        normalise(device, {"t": 1}, GAUGE_TIME, {}, PSEUDONYMS)


def test_points_accept_the_shapes_gateways_send_in_geojson_order() -> None:
    expected = {"type": "Point", "coordinates": [139.9, 37.5]}
    for shape in (
        {"latitude": 37.5, "longitude": 139.9},
        {"lat": "37.5", "lon": "139.9"},
        "37.5,139.9",
        [139.9, 37.5],
        {"type": "Point", "coordinates": [139.9, 37.5]},
    ):
        assert point(shape, "p") == expected


def _fields(device: DeviceConfig) -> dict[str, Any]:
    return {name: getattr(device, name) for name in DeviceConfig.__slots__}


# --- robustness: any measures give entities the broker accepts, or a Rejected ----------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True), st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
MEASURE_NAMES = st.sampled_from(
    [
        "analog_in_1",
        "analog_in_2",
        "gps_1",
        "speed",
        "heading",
        "t",
        "p",
        "on",
        "TimeInstant",
        "location",
        "x_y",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    device=st.sampled_from([GAUGE, PLOW, THERMO]),
    measures=st.dictionaries(MEASURE_NAMES, JSON_VALUES, max_size=5),
)
def test_any_measures_give_entities_the_broker_parses_or_a_rejection(
    device: DeviceConfig, measures: dict[str, Any]
) -> None:
    refused: str | None = None
    try:
        updates = normalise(device, measures, GAUGE_TIME, {"rssi": -90}, PSEUDONYMS)
    except Rejected:
        return
    except BadRequestData as error:
        refused, updates = error.detail, []
    # The generic mapping passes unmapped values through; only the broker's rules judge those.
    assert refused is None or device is THERMO, refused
    for update in updates:
        problem = broker_refusal(update)
        assert problem is None, f"{update.normalized()['type']}: {problem}"


def broker_refusal(update: EntityUpdate) -> str | None:
    try:
        expanded(update)
    except BadRequestData as error:
        return error.detail
    return None


@given(lat=st.floats(-90, 90), lon=st.floats(-180, 180))
def test_every_position_in_range_becomes_a_geojson_point_in_longitude_latitude_order(
    lat: float, lon: float
) -> None:
    if lat == 0 and lon == 0:
        return
    assert point({"latitude": lat, "longitude": lon}, "p") == {"type": "Point", "coordinates": [lon, lat]}


@given(lat=st.floats(allow_nan=True), lon=st.floats(allow_nan=True))
def test_a_position_out_of_range_or_not_finite_is_rejected(lat: float, lon: float) -> None:
    if -90 <= lat <= 90 and -180 <= lon <= 180:
        return
    with pytest.raises(Rejected):
        point({"latitude": lat, "longitude": lon}, "p")
