"""The schemas/ folder and its validator: every reference entity passes, wrong values fail with a reason."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from adapters.device import EntityUpdate
from adapters.message import Rejected
from adapters.models.common import CORE, build
from adapters.validate import Validator, key_values, schemas_dir
from tests.conftest import FIXTURES, fixture_json

VALIDATOR = Validator()
REFERENCES = sorted(p.name for p in FIXTURES.glob("*.jsonld"))


def update(name: str, *, without: str | None = None, **changes: Any) -> EntityUpdate:
    """The reference entity ``name`` with ``changes`` (and ``without`` that attribute), built as a model builds."""
    entity = copy.deepcopy(fixture_json(name))
    context = tuple(entity.pop("@context"))
    entity.update(changes)
    if without is not None:
        del entity[without]
    return build(entity, context)


def test_the_schemas_folder_holds_one_self_contained_schema_per_emitted_type() -> None:
    assert schemas_dir() == Path(__file__).resolve().parents[2] / "schemas"
    assert VALIDATOR.types == {"FloodMonitoring", "WaterObserved", "Vehicle", "Device", "DeviceMeasurement"}
    for path in schemas_dir().glob("*.json"):
        assert "$ref" not in path.read_text(), f"{path.name} still refers outside itself"


@pytest.mark.parametrize("name", REFERENCES)
def test_every_reference_entity_is_accepted(name: str) -> None:
    VALIDATOR.check(update(name))


@pytest.mark.parametrize(
    ("name", "changes", "reason"),
    [
        (
            "Vehicle_plow-017.jsonld",
            {"vehicleType": {"type": "Property", "value": "hovercraft"}},
            "Vehicle urn:ngsi-ld:Vehicle:aizuwakamatsu-plow-017: vehicleType: 'hovercraft' is not one of",
        ),
        (
            "Vehicle_plow-017.jsonld",
            {"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [139.9, 97.5]}}},
            "location/coordinates/1: 97.5 is greater than the maximum of 90",
        ),
        (
            "Vehicle_plow-017.jsonld",
            {"heading": {"type": "Property", "value": 400}},
            "heading: 400 is not valid under any of the given schemas",
        ),
        (
            "Device_ble-tag.jsonld",
            {"batteryLevel": {"type": "Property", "value": 82}},
            "Device urn:ngsi-ld:Device:kakogawa-tag-a1f3c09e7b22: batteryLevel: 82 is not valid",
        ),
        (
            "FloodMonitoring_kasuga-001.jsonld",
            {"currentLevel": {"type": "Property", "value": "0.77"}},
            "currentLevel: '0.77' is not of type 'number'",
        ),
        (
            "WaterObserved_kasuga-001.jsonld",
            {"dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": "1 Sept"}}},
            "dateObserved: ",
        ),
    ],
)
def test_a_schema_invalid_value_is_rejected_with_type_id_path_and_reason(
    name: str, changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Rejected) as caught:
        VALIDATOR.check(update(name, **changes))
    assert reason in caught.value.reason


def test_a_required_member_missing_is_named() -> None:
    vehicle = update("Vehicle_plow-017.jsonld", without="category")
    with pytest.raises(
        Rejected,
        match="Vehicle urn:ngsi-ld:Vehicle:aizuwakamatsu-plow-017: \\(entity\\): 'category' is a required",
    ):
        VALIDATOR.check(vehicle)


def test_a_type_without_a_schema_is_accepted_unless_the_validator_is_strict() -> None:
    thing = build(
        {"id": "urn:ngsi-ld:Thermometer:1", "type": "Thermometer", "t": {"type": "Property", "value": 1}},
        CORE,
    )
    VALIDATOR.check(thing)
    with pytest.raises(Rejected, match="no schema for entity type 'Thermometer'"):
        Validator(accept_unknown=False).check(thing)


def test_key_values_unwraps_date_times_relationships_and_default_instances() -> None:
    entity = {
        "id": "urn:ngsi-ld:X:1",
        "type": "X",
        "@context": ["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"],
        "when": {"type": "Property", "value": {"@type": "DateTime", "@value": "2025-01-01T00:00:00Z"}},
        "ref": {"type": "Relationship", "object": "urn:ngsi-ld:Y:2"},
        "multi": [{"type": "Property", "value": 1, "datasetId": "urn:a"}, {"type": "Property", "value": 2}],
        "concise": 5,
    }
    assert key_values(entity) == {
        "id": "urn:ngsi-ld:X:1",
        "type": "X",
        "when": "2025-01-01T00:00:00Z",
        "ref": "urn:ngsi-ld:Y:2",
        "multi": 2,
        "concise": 5,
    }


def test_an_empty_schemas_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no JSON Schemas"):
        Validator(tmp_path)
