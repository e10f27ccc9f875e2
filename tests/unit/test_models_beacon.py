"""BLE watch-tag sightings to one Device per tag, under a pseudonym: the raw tag id never comes out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.device import DeviceConfig, EntityUpdate
from adapters.message import IOTA_JSON, DeviceMessage, Rejected
from adapters.models import normalise, normalise_message
from adapters.models.beacon import tag_entity_id
from adapters.pseudonym import Pseudonymiser
from adapters.pseudonym import normalise as normalise_tag
from adapters.validate import Validator
from broker.jsonld.context import DEFAULT_VOCAB
from tests.conftest import fixture_json
from tests.unit.test_models import expanded

PSEUDONYMS = Pseudonymiser(b"unit-test-secret-0123456789abcdef")
RECEIVED = datetime(2025, 10, 3, 6, 41, 20, tzinfo=UTC)
VALIDATOR = Validator()

# The fixed camera-pole detector of the sample batch (uplinks/ble_detection_mqtt.json).
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
    model="BeaconDetector",
    health=False,
)


def sighting(tag: str = "a1f3c09e7b22", **more: Any) -> dict[str, Any]:
    return {"tag": tag, "rssi": -71, "ts": "2025-10-03T06:41:12Z", **more}


def by_type(updates: list[EntityUpdate]) -> dict[str, EntityUpdate]:
    return {
        u.normalized()["type"]: u
        for u in updates
        if u.normalized()["id"] != "urn:ngsi-ld:Device:det-cam-0412"
    }


def without_id(update: EntityUpdate) -> dict[str, Any]:
    return {k: v for k, v in update.normalized().items() if k != "id"}


def test_a_sighting_gives_the_reference_tag_device_under_its_pseudonym() -> None:
    updates = by_type(normalise(DETECTOR, sighting(battery=0.82), RECEIVED, {}, PSEUDONYMS))
    tag = updates["Device"]
    reference = fixture_json("Device_ble-tag.jsonld")
    assert tag.context == tuple(reference.pop("@context"))
    reference.pop("id")
    # The reference has no rssi (it is not from a detector's batch); ours carries the sighting's.
    entity = without_id(tag)
    assert entity.pop("rssi") == {"type": "Property", "value": -71, "observedAt": "2025-10-03T06:41:12Z"}
    assert entity == reference
    pseudonym = PSEUDONYMS.tag_id("kakogawa", "a1f3c09e7b22")
    assert tag.normalized()["id"] == f"urn:ngsi-ld:Device:kakogawa-tag-{pseudonym}"


def test_a_sighting_is_also_kept_as_the_reference_device_measurement_when_configured() -> None:
    updates = by_type(normalise(DETECTOR, sighting(), RECEIVED, {}, PSEUDONYMS))
    measurement = updates["DeviceMeasurement"].normalized()
    reference = fixture_json("DeviceMeasurement_ble-sighting.jsonld")
    pseudonym = PSEUDONYMS.tag_id("kakogawa", "a1f3c09e7b22")
    assert (
        measurement["id"]
        == f"urn:ngsi-ld:DeviceMeasurement:kakogawa-det-cam-0412-20251003T064112Z-{pseudonym}"
    )
    assert measurement["refDevice"]["object"] == updates["Device"].normalized()["id"]
    reference.pop("@context")
    for member in ("id", "refDevice"):
        reference.pop(member), measurement.pop(member)
    assert measurement == reference


def test_the_same_tag_has_one_entity_per_tenant_and_different_ones_across_tenants() -> None:
    other_town = DeviceConfig(**{**_fields(DETECTOR), "tenant": "himeji"})
    here = by_type(normalise(DETECTOR, sighting("A1:F3:C0:9E:7B:22"), RECEIVED, {}, PSEUDONYMS))["Device"]
    again = by_type(normalise(DETECTOR, sighting("a1f3c09e7b22"), RECEIVED, {}, PSEUDONYMS))["Device"]
    there = by_type(normalise(other_town, sighting("a1f3c09e7b22"), RECEIVED, {}, PSEUDONYMS))["Device"]
    assert here.normalized()["id"] == again.normalized()["id"] != there.normalized()["id"]


def test_a_phone_sighting_takes_the_phone_position_and_a_fixed_one_needs_a_provisioned_position() -> None:
    (tag,) = normalise(PHONE, sighting(lat=34.75, lon=134.84), RECEIVED, {}, PSEUDONYMS)
    assert tag.normalized()["location"]["value"] == {"type": "Point", "coordinates": [134.84, 34.75]}
    with pytest.raises(Rejected, match="has no location"):
        normalise(PHONE, sighting(), RECEIVED, {}, PSEUDONYMS)


def test_a_tag_battery_in_a_sighting_is_not_taken_for_the_detector_battery() -> None:
    updates = normalise(DETECTOR, sighting(battery=0.82), RECEIVED, {}, PSEUDONYMS)
    (detector,) = [
        u.normalized() for u in updates if u.normalized()["id"] == "urn:ngsi-ld:Device:det-cam-0412"
    ]
    assert "batteryLevel" not in detector
    assert detector["deviceState"]["value"] == "ok"


def test_a_batch_of_sightings_updates_each_tag_and_the_detector_health_once() -> None:
    batch = fixture_batch()
    message = DeviceMessage(
        IOTA_JSON, "/json/kakogawa-mimamori/det-cam-0412/attrs", "det-cam-0412", RECEIVED, measures=batch
    )
    updates = normalise_message(DETECTOR, message, PSEUDONYMS)
    ids = [u.normalized()["id"] for u in updates]
    assert ids.count("urn:ngsi-ld:Device:det-cam-0412") == 1
    assert len([i for i in ids if ":Device:kakogawa-tag-" in i]) == 2
    for update in updates:
        VALIDATOR.check(update)


@pytest.mark.parametrize(
    ("measures", "reason"),
    [
        ({"rssi": -70}, "has no tag id"),
        (sighting(rssi="loud"), "rssi is 'loud', not a number"),
        (sighting(rssi=-400), "not a received signal strength"),
        (sighting(ts="yesterday"), "ts 'yesterday' is not an ISO 8601 date-time"),
        (sighting(battery=82), "not a battery level between 0 and 1"),
    ],
)
def test_a_bad_sighting_is_rejected_without_quoting_the_tag(measures: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected, match=reason) as caught:
        normalise(DETECTOR, measures, RECEIVED, {}, PSEUDONYMS)
    assert "a1f3c09e7b22" not in caught.value.reason


TAG_IDS = st.one_of(
    st.text("0123456789abcdef", min_size=12, max_size=12),
    st.uuids().map(str),
    st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b)),
)


@given(raw=TAG_IDS, rssi=st.integers(-120, 0))
def test_the_raw_tag_id_appears_in_no_output(raw: str, rssi: int) -> None:
    updates = normalise(DETECTOR, sighting(raw, rssi=rssi), RECEIVED, {}, PSEUDONYMS)
    text = orjson.dumps([u.normalized() for u in updates]).decode()
    assert raw.lower() not in text.lower()
    assert normalise_tag(raw) not in text.lower()
    assert tag_entity_id(DETECTOR, PSEUDONYMS.tag_id("kakogawa", raw)) in text


def fixture_batch() -> list[dict[str, Any]]:
    """The "message" of ../shared/reference/uplinks/ble_detection_mqtt.json."""
    return [
        {"tag": "a1f3c09e7b22", "rssi": -71, "ts": "2025-10-03T06:41:12Z"},
        {"tag": "0c9d55e21a40", "rssi": -88, "ts": "2025-10-03T06:41:15Z"},
    ]


def _fields(device: DeviceConfig) -> dict[str, Any]:
    return {name: getattr(device, name) for name in DeviceConfig.__slots__}


def test_every_tag_and_sighting_attribute_expands_to_its_smart_data_model_iri() -> None:
    for update in normalise(DETECTOR, sighting(battery=0.5), RECEIVED, {"rssi": -90}, PSEUDONYMS):
        for iri in expanded(update):
            assert not iri.startswith(DEFAULT_VOCAB), (
                f"{update.normalized()['type']}: {iri} is not a SDM term"
            )
