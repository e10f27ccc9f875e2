"""Input parsing: concise inference (digest 6.2) and normalized validation (digest 7, 2.1)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import BadRequestData, InvalidRequest
from broker.jsonld.context import TermMap, compile_contexts, core_document
from broker.model.entity import Instance, parse_time
from broker.model.parse import parse_attribute, parse_entity, parse_instance

NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
EX = "https://example.org/"
NULL = "urn:ngsi-ld:null"
ENTITY_ID = "urn:ngsi-ld:Sensor:001"
POINT = {"type": "Point", "coordinates": [134.05, 34.34]}


@pytest.fixture(scope="module")
def tm() -> TermMap:
    return compile_contexts([{"ex": EX, "temperature": EX + "temperature"}], core_document())


def entity(**attrs: Any) -> dict[str, Any]:
    return {"id": ENTITY_ID, "type": "Sensor", **attrs}


def only(tm: TermMap, raw: Any, *, allow_null: bool = False) -> Instance:
    """The single instance of attribute 'temperature' parsed from ``raw``."""
    instances = parse_entity(entity(temperature=raw), tm, allow_null=allow_null).attrs[EX + "temperature"]
    assert len(instances) == 1
    return instances[0]


# --- the entity itself ------------------------------------------------------------------------------


def test_entity_id_and_types_are_expanded(tm: TermMap) -> None:
    parsed = parse_entity({"id": ENTITY_ID, "type": ["Sensor", "ex:Device", "Sensor"]}, tm)
    assert parsed.id == ENTITY_ID
    assert parsed.types == [DEFAULT + "Sensor", EX + "Device"]
    assert parsed.attrs == {}


def test_attribute_names_are_expanded_with_the_context(tm: TermMap) -> None:
    parsed = parse_entity(entity(temperature=1, location=POINT, brandName="x", **{"ex:depth": 2}), tm)
    assert set(parsed.attrs) == {
        EX + "temperature",
        NGSI_LD + "location",
        DEFAULT + "brandName",
        EX + "depth",
    }


# --- concise inference ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind", "member", "stored"),
    [
        ({"value": 21.5}, "Property", "value", 21.5),
        ({"object": "urn:ngsi-ld:Room:1"}, "Relationship", "object", "urn:ngsi-ld:Room:1"),
        (
            {"languageMap": {"en": "hot", "ja": "暑い"}},
            "LanguageProperty",
            "languageMap",
            {"en": "hot", "ja": "暑い"},
        ),
        ({"vocab": "ex:Hot"}, "VocabProperty", "vocab", EX + "Hot"),
        ({"vocab": ["ex:Hot", "Mild"]}, "VocabProperty", "vocab", [EX + "Hot", DEFAULT + "Mild"]),
        ({"json": {"a": [1, {"b": None}]}}, "JsonProperty", "json", {"a": [1, {"b": None}]}),
        ({"valueList": [3, 1, 2]}, "ListProperty", "valueList", [3, 1, 2]),
        ({"objectList": ["urn:a:1", "urn:a:2"]}, "ListRelationship", "objectList", ["urn:a:1", "urn:a:2"]),
        ({"objectList": [{"object": "urn:a:1"}]}, "ListRelationship", "objectList", ["urn:a:1"]),
        (POINT, "GeoProperty", "value", POINT),
        ({"value": POINT}, "GeoProperty", "value", POINT),
        (21.5, "Property", "value", 21.5),
        (0, "Property", "value", 0),
        (False, "Property", "value", False),
        ("urn:ngsi-ld:Room:1", "Property", "value", "urn:ngsi-ld:Room:1"),
        ("", "Property", "value", ""),
        ([1, "two", {"three": 3}], "Property", "value", [1, "two", {"three": 3}]),
        ([], "Property", "value", []),
        ({"speed": 3, "unit": "km/h"}, "Property", "value", {"speed": 3, "unit": "km/h"}),
        ({}, "Property", "value", {}),
        (
            {"type": "Feature", "coordinates": [1, 2]},
            "Property",
            "value",
            {"type": "Feature", "coordinates": [1, 2]},
        ),
        ({"type": "Point"}, "Property", "value", {"type": "Point"}),
    ],
)
def test_concise_attributes_get_the_type_the_inference_rules_give(
    tm: TermMap, raw: Any, kind: str, member: str, stored: Any
) -> None:
    instance = only(tm, raw)
    assert instance["type"] == kind
    assert instance[member] == stored
    assert {k for k in instance if k not in ("type", member)} == set()


def test_concise_metadata_members_are_not_sub_attributes(tm: TermMap) -> None:
    instance = only(
        tm,
        {"value": 7, "unitCode": "CEL", "observedAt": "2024-05-01T00:00:00Z", "datasetId": "urn:ds:1"},
    )
    assert instance["type"] == "Property"
    assert instance["unitCode"] == "CEL"
    assert instance["datasetId"] == "urn:ds:1"
    assert parse_time(instance["observedAt"]) == datetime(2024, 5, 1, tzinfo=UTC)
    assert not any(":" in key for key in instance if key != "datasetId")


def test_concise_sub_attributes_follow_the_same_inference(tm: TermMap) -> None:
    instance = only(
        tm,
        {
            "value": 7,
            "accuracy": 0.5,
            "providedBy": {"object": "urn:ngsi-ld:Person:Bob"},
            "ex:area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        },
    )
    assert instance[DEFAULT + "accuracy"] == {"type": "Property", "value": 0.5}
    assert instance[DEFAULT + "providedBy"] == {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"}
    assert instance[EX + "area"]["type"] == "GeoProperty"


def test_a_concise_array_of_instances_is_a_multi_attribute(tm: TermMap) -> None:
    instances = parse_entity(
        entity(temperature=[{"value": 1}, {"value": 2, "datasetId": "urn:ds:2"}]), tm
    ).attrs[EX + "temperature"]
    assert [(i["type"], i["value"], i.get("datasetId")) for i in instances] == [
        ("Property", 1, None),
        ("Property", 2, "urn:ds:2"),
    ]


def test_normalized_attributes_keep_their_explicit_type(tm: TermMap) -> None:
    instance = only(tm, {"type": "Property", "value": {"type": "Point", "coordinates": [1, 2]}})
    assert instance["type"] == "Property"
    relationship = only(tm, {"type": "Relationship", "object": "urn:a:1", "objectType": "ex:Room"})
    assert relationship["objectType"] == [EX + "Room"]


# --- normalized validation errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["not a uri", "plainword", "", 42, None, ["urn:a:1"], "urn:a:b c", "http://x/<y>"]
)
def test_an_entity_id_that_is_not_a_uri_is_rejected(tm: TermMap, bad_id: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity({"id": bad_id, "type": "Sensor"}, tm)


def test_an_entity_without_id_is_rejected_when_an_id_is_required(tm: TermMap) -> None:
    with pytest.raises(BadRequestData):
        parse_entity({"type": "Sensor"}, tm)


@pytest.mark.parametrize(
    "body", [{"id": ENTITY_ID}, {"id": ENTITY_ID, "type": []}, {"id": ENTITY_ID, "type": ""}]
)
def test_an_entity_without_type_is_rejected(tm: TermMap, body: dict[str, Any]) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(body, tm)


@pytest.mark.parametrize("kind", [{}, [[]], [{}], {"a": 1}, 1, None, True, ["Sensor", {}]], ids=repr)
def test_an_entity_type_that_is_not_a_string_is_bad_request_data(tm: TermMap, kind: Any) -> None:
    """Issue 11 (found by the fuzz test): ``"type": {}`` crashed expand_types (an unhashable set
    lookup, answered 500); a non-string type name is BadRequestData like any invalid name."""
    with pytest.raises(BadRequestData):
        parse_entity({"id": ENTITY_ID, "type": kind}, tm)


@pytest.mark.parametrize("body", ["entity", 1, None])
def test_an_entity_that_is_not_an_object_is_rejected(tm: TermMap, body: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(body, tm)


def test_an_array_where_an_entity_is_expected_is_an_invalid_request(tm: TermMap) -> None:
    """Clause 5.5.2: InvalidRequest, the request's content is wrong (issue 13 item 4)."""
    with pytest.raises(InvalidRequest):
        parse_entity([], tm)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "Property"},
        {"type": "Property", "unitCode": "CEL"},
        {"type": "Relationship"},
        {"type": "GeoProperty"},
        {"type": "LanguageProperty"},
        {"type": "VocabProperty"},
        {"type": "JsonProperty"},
        {"type": "ListProperty"},
        {"type": "ListRelationship"},
    ],
)
def test_an_attribute_without_its_value_member_is_rejected(tm: TermMap, raw: dict[str, Any]) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature=raw), tm)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "Relationship", "object": "urn:a:1", "value": 3},
        {"type": "Property", "value": 3, "object": "urn:a:1"},
        {"type": "LanguageProperty", "languageMap": {"en": "x"}, "value": "x"},
        {"type": "JsonProperty", "json": {}, "value": 1},
        {"type": "ListProperty", "valueList": [], "value": []},
    ],
)
def test_an_attribute_with_a_value_member_of_another_type_is_rejected(
    tm: TermMap, raw: dict[str, Any]
) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature=raw), tm)


@pytest.mark.parametrize("target", ["not a uri", "", 5, {"id": "urn:a:1"}, None])
def test_a_relationship_object_that_is_not_a_uri_is_rejected(tm: TermMap, target: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"type": "Relationship", "object": target}), tm)


@pytest.mark.parametrize("objects", [["not a uri"], "urn:a:1", [5]])
def test_a_list_relationship_with_non_uri_objects_is_rejected(tm: TermMap, objects: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"type": "ListRelationship", "objectList": objects}), tm)


@pytest.mark.parametrize("dataset", ["not a uri", "", 3, None, ["urn:ds:1"]])
def test_an_invalid_dataset_id_is_rejected(tm: TermMap, dataset: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"type": "Property", "value": 1, "datasetId": dataset}), tm)


def test_two_default_instances_of_one_attribute_are_rejected(tm: TermMap) -> None:
    raw = [{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature=raw), tm)


def test_two_instances_with_the_same_dataset_id_are_rejected(tm: TermMap) -> None:
    raw = [
        {"type": "Property", "value": 1, "datasetId": "urn:ds:1"},
        {"type": "Property", "value": 2, "datasetId": "urn:ds:1"},
    ]
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature=raw), tm)


def test_instances_with_distinct_dataset_ids_and_one_default_are_accepted(tm: TermMap) -> None:
    raw = [
        {"type": "Property", "value": 1},
        {"type": "Property", "value": 2, "datasetId": "urn:ds:1"},
        {"type": "Relationship", "object": "urn:a:1", "datasetId": "urn:ds:2"},
    ]
    instances = parse_entity(entity(temperature=raw), tm).attrs[EX + "temperature"]
    assert [i.get("datasetId") for i in instances] == [None, "urn:ds:1", "urn:ds:2"]


FORBIDDEN = ["<", ">", '"', "'", "=", ";", "(", ")", " ", "\t", "\n", "\x00", "\x07", "\x7f"]


@pytest.mark.parametrize("char", FORBIDDEN, ids=repr)
def test_an_attribute_name_with_a_forbidden_character_is_rejected(tm: TermMap, char: str) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(**{f"temp{char}erature": 1}), tm)


@pytest.mark.parametrize("char", FORBIDDEN, ids=repr)
def test_an_entity_type_with_a_forbidden_character_is_rejected(tm: TermMap, char: str) -> None:
    with pytest.raises(BadRequestData):
        parse_entity({"id": ENTITY_ID, "type": f"Sen{char}sor"}, tm)


@pytest.mark.parametrize("char", FORBIDDEN, ids=repr)
def test_a_sub_attribute_name_with_a_forbidden_character_is_rejected(tm: TermMap, char: str) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"value": 1, f"acc{char}uracy": 0.5}), tm)


NULL_ENCODINGS = [
    NULL,
    {"value": NULL},
    {"type": "Property", "value": NULL},
    {"type": "Relationship", "object": NULL},
    {"type": "LanguageProperty", "languageMap": {"@none": NULL}},
    {"type": "VocabProperty", "vocab": NULL},
    {"type": "ListProperty", "valueList": [NULL]},
    {"type": "JsonProperty", "json": NULL},
]


@pytest.mark.parametrize("raw", NULL_ENCODINGS)
def test_ngsi_ld_null_is_rejected_outside_updates_and_merges(tm: TermMap, raw: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature=raw), tm)


def test_ngsi_ld_null_in_a_sub_attribute_is_rejected_outside_updates_and_merges(tm: TermMap) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"value": 1, "accuracy": NULL}), tm)


@pytest.mark.parametrize(
    "raw",
    [
        NULL,
        {"type": "Property", "value": NULL},
        {"type": "Relationship", "object": NULL},
        {"type": "LanguageProperty", "languageMap": {"@none": NULL}},
    ],
)
def test_ngsi_ld_null_is_kept_as_a_deletion_marker_when_allowed(tm: TermMap, raw: Any) -> None:
    instance = parse_entity(
        {"temperature": raw}, tm, require_id=False, require_type=False, allow_null=True
    ).attrs[EX + "temperature"][0]
    values = [v for k, v in instance.items() if k != "type"]
    assert values in ([NULL], [{"@none": NULL}])


@pytest.mark.parametrize(
    "when", ["yesterday", "2024-13-01T00:00:00Z", "2024-05-01T25:00:00Z", 1714521600, "", None]
)
def test_an_observed_at_that_is_not_a_date_time_is_rejected(tm: TermMap, when: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"type": "Property", "value": 1, "observedAt": when}), tm)


@pytest.mark.parametrize("code", ["", 5, None, ["CEL"]])
def test_a_unit_code_that_is_not_a_non_empty_string_is_rejected(tm: TermMap, code: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"type": "Property", "value": 1, "unitCode": code}), tm)


@pytest.mark.parametrize(
    "raw",
    [None, {"type": "Property", "value": None}, {"value": None}, {"type": "Relationship", "object": None}],
)
def test_a_json_null_value_is_rejected(tm: TermMap, raw: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature=raw), tm)


def test_a_json_null_sub_attribute_is_rejected(tm: TermMap) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"value": 1, "accuracy": None}), tm)


def test_an_unknown_attribute_type_is_rejected(tm: TermMap) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature={"type": "Propertee", "value": 1}), tm)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "LanguageProperty", "languageMap": {}},
        {"type": "LanguageProperty", "languageMap": "hot"},
        {"type": "LanguageProperty", "languageMap": {"en": 5}},
        {"type": "ListProperty", "valueList": "abc"},
        {"type": "JsonProperty", "json": 5},
        {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [181, 0]}},
        {"type": "Property", "value": 1, "objectType": "Room"},
    ],
)
def test_attribute_values_of_the_wrong_shape_are_rejected(tm: TermMap, raw: dict[str, Any]) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(temperature=raw), tm)


@pytest.mark.parametrize("scope", ["Japan", "/Japan/", "//", "/a b", 5, ["/ok", "bad"]])
def test_an_invalid_scope_is_rejected(tm: TermMap, scope: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(scope=scope), tm)


def test_valid_scopes_are_kept_without_duplicates(tm: TermMap) -> None:
    parsed = parse_entity(entity(scope=["/Japan/Kagawa", "/", "/Japan/Kagawa"]), tm)
    assert parsed.scopes == ["/Japan/Kagawa", "/"]


@pytest.mark.parametrize("name", ["location", "observationSpace", "operationSpace"])
@pytest.mark.parametrize(
    "raw", [5, "Tokyo", {"type": "Property", "value": [1, 2]}, {"object": "urn:a:1"}], ids=repr
)
def test_the_core_geo_attributes_must_be_geo_properties(tm: TermMap, name: str, raw: Any) -> None:
    with pytest.raises(BadRequestData):
        parse_entity(entity(**{name: raw}), tm)


# --- system members and times -----------------------------------------------------------------------


def test_created_and_modified_at_given_by_clients_are_ignored(tm: TermMap) -> None:
    stamp = "2001-01-01T00:00:00Z"
    parsed = parse_entity(
        entity(
            createdAt=stamp,
            modifiedAt=stamp,
            temperature={
                "type": "Property",
                "value": 1,
                "createdAt": stamp,
                "modifiedAt": stamp,
                "accuracy": {"type": "Property", "value": 0.5, "createdAt": stamp, "modifiedAt": stamp},
            },
        ),
        tm,
    )
    assert parsed.created_at is None
    assert parsed.modified_at is None
    assert set(parsed.attrs) == {EX + "temperature"}
    instance = parsed.attrs[EX + "temperature"][0]
    assert "createdAt" not in instance
    assert "modifiedAt" not in instance
    assert "createdAt" not in instance[DEFAULT + "accuracy"]
    assert "modifiedAt" not in instance[DEFAULT + "accuracy"]


@pytest.mark.parametrize(
    ("given", "instant"),
    [
        ("2024-05-01T12:00:00+09:00", datetime(2024, 5, 1, 3, 0, tzinfo=UTC)),
        ("2024-05-01T00:30:00-02:30", datetime(2024, 5, 1, 3, 0, tzinfo=UTC)),
        ("2024-05-01T03:00:00Z", datetime(2024, 5, 1, 3, 0, tzinfo=UTC)),
        ("2024-05-01T03:00:00.250+00:00", datetime(2024, 5, 1, 3, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_observed_at_with_an_offset_is_normalized_to_utc_with_z(
    tm: TermMap, given: str, instant: datetime
) -> None:
    observed = only(tm, {"type": "Property", "value": 1, "observedAt": given})["observedAt"]
    assert observed.endswith("Z")
    assert "+" not in observed
    assert datetime.fromisoformat(observed.replace("Z", "+00:00")) == instant


# --- parse_instance / parse_attribute directly --------------------------------------------------------


def test_parse_instance_accepts_a_concise_patch_body(tm: TermMap) -> None:
    instance = parse_instance(EX + "temperature", {"value": 3, "unitCode": "CEL"}, tm)
    assert instance == {"type": "Property", "value": 3, "unitCode": "CEL"}


def test_parse_attribute_rejects_duplicate_default_instances_in_concise_form(tm: TermMap) -> None:
    with pytest.raises(BadRequestData):
        parse_attribute(EX + "temperature", [{"value": 1}, {"value": 2}], tm)


# --- robustness: anything a client sends is either parsed or refused as BadRequestData ------------------

_MEMBERS = [
    "type",
    "value",
    "object",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "objectList",
    "datasetId",
    "observedAt",
    "unitCode",
    "objectType",
    "coordinates",
    "accuracy",
    "@none",
    "en",
]
_KINDS = [
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "VocabProperty",
    "JsonProperty",
    "ListProperty",
    "ListRelationship",
    "Point",
    "Polygon",
]
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-200, 200)
    | st.floats(allow_nan=False)
    | st.sampled_from([*_KINDS, NULL, "urn:a:1", "2024-01-01T00:00:00Z", "ex:x", "a b"])
    | st.text(max_size=5)
)
ANY_JSON = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_MEMBERS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(ANY_JSON, st.booleans())
def test_any_json_attribute_is_parsed_or_refused_as_bad_request_data(raw: Any, allow_null: bool) -> None:
    tm = compile_contexts([{"ex": EX}], core_document())
    with contextlib.suppress(BadRequestData):
        parse_entity(entity(temperature=raw), tm, allow_null=allow_null)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": None, "value": 1},
        {"type": None, "object": "urn:a:1"},
        {"type": ["Property"], "value": 1},
        {"type": {"a": 1}, "value": 1},
        {"type": ["Point"], "coordinates": [1, 2]},
        {"value": {"type": [], "a": 1}},
        {"value": {"type": {"nested": True}}},
        {"type": "GeoProperty", "value": {"type": ["Point"], "coordinates": [1, 2]}},
    ],
    ids=repr,
)
def test_a_null_or_non_string_type_member_is_parsed_or_refused_never_a_crash(
    tm: TermMap, raw: dict[str, Any]
) -> None:
    try:
        instance = only(tm, raw)
    except BadRequestData:
        return
    assert instance["type"] == "Property"
