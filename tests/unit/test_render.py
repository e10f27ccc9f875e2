"""Rendering (clause 4.5 representations, digest section 6): normalized, concise, simplified, View options."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.jsonld.context import TermMap, compile_contexts, core_document
from broker.model import ops
from broker.model.entity import VALUE_MEMBER, Entity
from broker.model.parse import parse_entity
from broker.model.render import Form, View, geometry_of, pick_language, render_entity, to_feature

EX = "https://example.org/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
ID = "urn:ngsi-ld:Sensor:001"
T0 = "2024-01-01T00:00:00Z"
T1 = "2024-01-02T00:00:00Z"
POINT = {"type": "Point", "coordinates": [134.05, 34.34]}
TM: TermMap = compile_contexts([{"ex": EX, "temperature": EX + "temperature"}], core_document())

NORMALIZED = View()
CONCISE = View(form=Form.CONCISE)
SIMPLIFIED = View(form=Form.SIMPLIFIED)

EVERY_TYPE: dict[str, Any] = {
    "temperature": {"type": "Property", "value": 21.5},
    "config": {"type": "Property", "value": {"mode": "eco", "levels": [1, 2]}},
    "readings": {"type": "Property", "value": [1, 2, 3]},
    "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"},
    "location": {"type": "GeoProperty", "value": POINT},
    "street": {"type": "LanguageProperty", "languageMap": {"en": "Main Street", "ja": "本通り"}},
    "category": {"type": "VocabProperty", "vocab": "ex:Commercial"},
    "settings": {"type": "JsonProperty", "json": {"a": [1, None], "b": {"@value": 1}}},
    "depths": {"type": "ListProperty", "valueList": [1.5, 1.2]},
    "route": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Stop:1", "urn:ngsi-ld:Stop:2"]},
}


def parsed(body: dict[str, Any]) -> Entity:
    return parse_entity({"id": ID, "type": "Sensor", **body}, TM)


def stored(body: dict[str, Any]) -> Entity:
    outcome = ops.create(None, parsed(body), T0)
    assert outcome.entity is not None
    return outcome.entity


def reparsed(rendered: dict[str, Any]) -> Entity:
    return parse_entity(rendered, TM)


# --- normalized -----------------------------------------------------------------------------------


def test_normalized_output_is_the_normalized_input_with_compacted_names() -> None:
    rendered = render_entity(stored(EVERY_TYPE), TM, NORMALIZED)
    assert rendered == {"id": ID, "type": "Sensor", **EVERY_TYPE}


def test_normalized_output_reparses_to_the_same_entity() -> None:
    entity = parsed(EVERY_TYPE)
    assert reparsed(render_entity(stored(EVERY_TYPE), TM, NORMALIZED)) == entity


# --- concise --------------------------------------------------------------------------------------

CONCISE_SHAPES: dict[str, Any] = {
    "temperature": 21.5,
    "owner": {"object": "urn:ngsi-ld:Person:Bob"},
    "street": {"languageMap": {"en": "Main Street", "ja": "本通り"}},
    "category": {"vocab": "ex:Commercial"},
    "settings": {"json": {"a": [1, None], "b": {"@value": 1}}},
    "depths": {"valueList": [1.5, 1.2]},
    "route": {"objectList": ["urn:ngsi-ld:Stop:1", "urn:ngsi-ld:Stop:2"]},
}


@pytest.mark.parametrize("name", sorted(CONCISE_SHAPES))
def test_concise_output_drops_the_type_and_keeps_only_the_value_member(name: str) -> None:
    rendered = render_entity(stored(EVERY_TYPE), TM, CONCISE)
    assert rendered[name] == CONCISE_SHAPES[name]


def test_concise_output_of_a_json_object_or_array_value_is_unambiguous() -> None:
    rendered = render_entity(stored(EVERY_TYPE), TM, CONCISE)
    for name in ("config", "readings"):
        # A bare object or array would be read back as instances or a different structure; the value
        # member must survive, without any type.
        assert rendered[name] == {"value": EVERY_TYPE[name]["value"]}


def test_concise_output_of_a_geo_property_has_no_type_and_reads_back_as_a_geo_property() -> None:
    rendered = render_entity(stored(EVERY_TYPE), TM, CONCISE)
    assert rendered["location"] in (POINT, {"value": POINT})
    assert reparsed(rendered).attrs["https://uri.etsi.org/ngsi-ld/location"][0]["type"] == "GeoProperty"


def test_concise_output_keeps_metadata_and_sub_attributes() -> None:
    entity = stored(
        {
            "temperature": {
                "type": "Property",
                "value": 21.5,
                "unitCode": "CEL",
                "observedAt": "2024-01-01T00:00:00Z",
                "accuracy": {"type": "Property", "value": 0.5},
                "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"},
            }
        }
    )
    assert render_entity(entity, TM, CONCISE)["temperature"] == {
        "value": 21.5,
        "unitCode": "CEL",
        "observedAt": "2024-01-01T00:00:00Z",
        "accuracy": 0.5,
        "providedBy": {"object": "urn:ngsi-ld:Person:Bob"},
    }


def test_concise_output_of_every_attribute_type_reads_back_as_the_same_entity() -> None:
    assert reparsed(render_entity(stored(EVERY_TYPE), TM, CONCISE)) == parsed(EVERY_TYPE)


def test_concise_output_of_a_multi_attribute_reads_back_as_the_same_instances() -> None:
    body = {
        "temperature": [
            {"type": "Property", "value": 20},
            {"type": "Property", "value": 21, "datasetId": "urn:ds:b"},
        ]
    }
    rendered = render_entity(stored(body), TM, CONCISE)
    assert isinstance(rendered["temperature"], list)
    assert reparsed(rendered) == parsed(body)


def test_concise_output_of_a_property_whose_value_looks_like_geojson_stays_a_property() -> None:
    body = {"shape": {"type": "Property", "value": {"type": "Point", "coordinates": [1, 2]}}}
    assert reparsed(render_entity(stored(body), TM, CONCISE)) == parsed(body)


# --- simplified (keyValues) ---------------------------------------------------------------------------

SIMPLIFIED_SHAPES: dict[str, Any] = {
    "temperature": 21.5,
    "config": {"mode": "eco", "levels": [1, 2]},
    "readings": [1, 2, 3],
    "owner": "urn:ngsi-ld:Person:Bob",
    "location": POINT,
    "street": {"languageMap": {"en": "Main Street", "ja": "本通り"}},
    "category": {"vocab": "ex:Commercial"},
    "settings": {"json": {"a": [1, None], "b": {"@value": 1}}},
}


@pytest.mark.parametrize("name", sorted(SIMPLIFIED_SHAPES))
def test_simplified_output_is_the_bare_value(name: str) -> None:
    rendered = render_entity(stored(EVERY_TYPE), TM, SIMPLIFIED)
    assert rendered[name] == SIMPLIFIED_SHAPES[name]


@pytest.mark.parametrize(("name", "member"), [("depths", "valueList"), ("route", "objectList")])
def test_simplified_output_of_lists_is_the_list(name: str, member: str) -> None:
    value = EVERY_TYPE[name][member]
    assert render_entity(stored(EVERY_TYPE), TM, SIMPLIFIED)[name] in (value, {member: value})


def test_simplified_output_drops_metadata_and_sub_attributes() -> None:
    entity = stored({"temperature": {"type": "Property", "value": 1, "unitCode": "CEL", "accuracy": 0.5}})
    assert render_entity(entity, TM, SIMPLIFIED) == {"id": ID, "type": "Sensor", "temperature": 1}


# --- multi-instance attributes -------------------------------------------------------------------------

MULTI = {
    "temperature": [
        {"type": "Property", "value": 20, "datasetId": "urn:ds:a"},
        {"type": "Property", "value": 21, "datasetId": "urn:ds:b"},
    ]
}


def test_multi_instance_attributes_render_as_arrays_in_every_form() -> None:
    entity = stored(MULTI)
    normalized = render_entity(entity, TM, NORMALIZED)["temperature"]
    assert normalized == MULTI["temperature"]
    concise = render_entity(entity, TM, CONCISE)["temperature"]
    assert concise == [{"value": 20, "datasetId": "urn:ds:a"}, {"value": 21, "datasetId": "urn:ds:b"}]
    assert render_entity(entity, TM, SIMPLIFIED)["temperature"] == [20, 21]


def test_the_dataset_id_view_keeps_only_the_named_instances() -> None:
    body = {"temperature": [{"type": "Property", "value": 1}, *MULTI["temperature"]]}
    view = View(dataset_id=frozenset({"urn:ds:b", "@none"}))
    rendered = render_entity(stored(body), TM, view)["temperature"]
    assert [i.get("datasetId") for i in rendered] == [None, "urn:ds:b"]


# --- selection --------------------------------------------------------------------------------------


def test_pick_keeps_only_the_picked_members() -> None:
    view = View(pick=frozenset({"id", EX + "temperature"}))
    assert set(render_entity(stored(EVERY_TYPE), TM, view)) == {"id", "temperature"}


def test_omit_drops_the_omitted_members() -> None:
    view = View(omit=frozenset({"type", EX + "temperature", DEFAULT + "owner"}))
    rendered = render_entity(stored(EVERY_TYPE), TM, view)
    assert set(rendered) == {"id"} | set(EVERY_TYPE) - {"temperature", "owner"}


def test_attrs_selection_keeps_id_and_type_and_the_named_attributes() -> None:
    view = View(pick=frozenset({"id", "type", "scope", DEFAULT + "owner", DEFAULT + "missing"}))
    assert render_entity(stored(EVERY_TYPE), TM, view) == {
        "id": ID,
        "type": "Sensor",
        "owner": EVERY_TYPE["owner"],
    }


def test_selection_applies_in_every_form() -> None:
    for form in Form:
        view = View(form=form, pick=frozenset({DEFAULT + "owner"}))
        assert set(render_entity(stored(EVERY_TYPE), TM, view)) == {"owner"}


# --- system attributes ---------------------------------------------------------------------------------


def test_sys_attrs_adds_created_and_modified_at_to_the_entity_and_its_attributes() -> None:
    original = stored({"temperature": {"type": "Property", "value": 1, "accuracy": 0.5}})
    entity = ops.partial_update(original, ID, EX + "temperature", {"type": "Property", "value": 2}, T1).entity
    assert entity is not None
    for form in (Form.NORMALIZED, Form.CONCISE):
        rendered = render_entity(entity, TM, View(form=form, sys_attrs=True))
        assert (rendered["createdAt"], rendered["modifiedAt"]) == (T0, T1)
        attribute = rendered["temperature"]
        assert (attribute["createdAt"], attribute["modifiedAt"]) == (T0, T1)
        assert attribute["accuracy"]["createdAt"] == T0


def test_without_sys_attrs_no_system_timestamps_are_rendered() -> None:
    entity = stored({"temperature": {"type": "Property", "value": 1, "accuracy": 0.5}})
    for form in Form:
        assert "createdAt" not in str(render_entity(entity, TM, View(form=form)))
        assert "modifiedAt" not in str(render_entity(entity, TM, View(form=form)))


# --- language ----------------------------------------------------------------------------------------

STREET: dict[str, dict[str, Any]] = {
    "street": {"type": "LanguageProperty", "languageMap": {"en": "Main Street", "ja": "本通り", "@none": "X"}}
}


def test_lang_turns_a_language_property_into_a_property_with_lang() -> None:
    rendered = render_entity(stored(STREET), TM, View(lang="ja"))["street"]
    assert rendered == {"type": "Property", "value": "本通り", "lang": "ja"}


def test_lang_in_simplified_output_gives_the_string() -> None:
    assert render_entity(stored(STREET), TM, View(form=Form.SIMPLIFIED, lang="en"))["street"] == "Main Street"


def test_lang_in_concise_output_gives_the_value_and_its_language() -> None:
    assert render_entity(stored(STREET), TM, View(form=Form.CONCISE, lang="en"))["street"] == {
        "value": "Main Street",
        "lang": "en",
    }


def test_lang_star_keeps_every_language() -> None:
    assert render_entity(stored(STREET), TM, View(lang="*"))["street"] == STREET["street"]


@pytest.mark.parametrize(
    ("wanted", "tag"),
    [
        ("ja", "ja"),
        ("en", "en"),
        ("fr,ja", "ja"),
        ("en;q=0.5,ja", "ja"),
        ("ja;q=0.2,en;q=0.9", "en"),
        ("ja, en", "ja"),
        ("fr", "@none"),
    ],
)
def test_lang_picks_the_best_language_the_client_accepts(wanted: str, tag: str) -> None:
    language_map = STREET["street"]["languageMap"]
    assert pick_language(language_map, wanted) == (language_map[tag], tag)


def test_lang_without_a_match_or_none_entry_still_gives_some_language() -> None:
    text, tag = pick_language({"en": "a", "ja": "b"}, "fr")
    assert (text, tag) in {("a", "en"), ("b", "ja")}


# --- GeoJSON ---------------------------------------------------------------------------------------


def test_geojson_feature_carries_the_location_geometry() -> None:
    entity = stored(EVERY_TYPE)
    rendered = render_entity(entity, TM, SIMPLIFIED)
    feature = to_feature(entity, rendered, "https://uri.etsi.org/ngsi-ld/location")
    assert feature["type"] == "Feature"
    assert feature["id"] == ID
    assert feature["geometry"] == POINT
    assert "id" not in feature["properties"]
    assert feature["properties"]["temperature"] == 21.5


def test_geometry_of_an_entity_without_that_geo_property_is_none() -> None:
    assert geometry_of(stored({"temperature": 1})) is None


# --- concise round trip as a property ----------------------------------------------------------------

NAMES = st.sampled_from(["temperature", "ex:depth", "brandName", "owner", "status"])
SUB_NAMES = st.sampled_from(["accuracy", "ex:quality", "providedBy"])
URIS = st.sampled_from(["urn:ngsi-ld:Person:Bob", "urn:ngsi-ld:Room:1", "https://example.org/things/9"])
TERMS = st.sampled_from(["ex:Hot", "Mild", "Cold"])
TEXT = st.text(alphabet="abcxyz :/-", max_size=8).filter(lambda s: s != "urn:ngsi-ld:null")
SCALARS = st.integers(-100, 100) | st.floats(-1e6, 1e6, allow_nan=False) | st.booleans() | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "type", "value"]), inner)
    ),
    max_leaves=8,
)
GEOMETRIES = st.sampled_from(
    [
        POINT,
        {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
    ]
)
TIMES = st.sampled_from(["2024-01-01T00:00:00Z", "2024-05-01T12:00:00+09:00"])
ATTRIBUTE_TYPES = frozenset(VALUE_MEMBER)


def _value_member() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        JSON.map(lambda v: {"type": "Property", "value": v}),
        URIS.map(lambda u: {"type": "Relationship", "object": u}),
        GEOMETRIES.map(lambda g: {"type": "GeoProperty", "value": g}),
        st.dictionaries(st.sampled_from(["en", "ja", "@none"]), TEXT, min_size=1).map(
            lambda m: {"type": "LanguageProperty", "languageMap": m}
        ),
        (TERMS | st.lists(TERMS, min_size=1, max_size=2)).map(
            lambda v: {"type": "VocabProperty", "vocab": v}
        ),
        (st.dictionaries(st.sampled_from(["a", "b"]), JSON) | st.lists(JSON, max_size=3)).map(
            lambda j: {"type": "JsonProperty", "json": j}
        ),
        st.lists(JSON, max_size=3).map(lambda v: {"type": "ListProperty", "valueList": v}),
        st.lists(URIS, max_size=3).map(lambda v: {"type": "ListRelationship", "objectList": v}),
    )


@st.composite
def normalized_instances(draw: st.DrawFn, dataset: str | None, depth: int = 0) -> dict[str, Any]:
    instance = draw(_value_member())
    if dataset is not None:
        instance["datasetId"] = dataset
    if instance["type"] == "Property" and draw(st.booleans()):
        instance["unitCode"] = draw(st.sampled_from(["CEL", "MTR"]))
    if draw(st.booleans()):
        instance["observedAt"] = draw(TIMES)
    if instance["type"] in ("Relationship", "ListRelationship") and draw(st.booleans()):
        instance["objectType"] = draw(st.sampled_from(["Person", "ex:Room", ["Person", "ex:Room"]]))
    if depth == 0:
        for name in draw(st.lists(SUB_NAMES, unique=True, max_size=2)):
            instance[name] = draw(normalized_instances(None, depth + 1))
    return instance


@st.composite
def normalized_entities(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"id": ID, "type": draw(st.sampled_from(["Sensor", ["Sensor", "ex:Device"]]))}
    if draw(st.booleans()):
        body["scope"] = draw(st.sampled_from(["/Japan/Kagawa", ["/a", "/b/c"]]))
    for name in draw(st.lists(NAMES, unique=True, max_size=4)):
        datasets = draw(
            st.lists(st.sampled_from([None, "urn:ds:a", "urn:ds:b"]), unique=True, min_size=1, max_size=3)
        )
        instances = [draw(normalized_instances(d)) for d in datasets]
        body[name] = instances[0] if len(instances) == 1 else instances
    return body


@settings(max_examples=300, deadline=None)
@given(normalized_entities(), st.booleans())
def test_concise_rendering_reads_back_as_the_normalized_input(body: dict[str, Any], sys_attrs: bool) -> None:
    expected = parse_entity(body, TM)
    created = ops.create(None, expected, T0).entity
    assert created is not None
    concise = render_entity(created, TM, View(form=Form.CONCISE, sys_attrs=sys_attrs))
    for name, value in concise.items():
        if name in ("id", "type", "scope", "createdAt", "modifiedAt"):
            continue
        for instance in value if isinstance(value, list) else [value]:
            assert not isinstance(instance, dict) or instance.get("type") not in ATTRIBUTE_TYPES
    assert parse_entity(concise, TM) == expected


@settings(max_examples=200, deadline=None)
@given(normalized_entities())
def test_normalized_rendering_reads_back_as_the_normalized_input(body: dict[str, Any]) -> None:
    expected = parse_entity(body, TM)
    created = ops.create(None, expected, T0).entity
    assert created is not None
    assert parse_entity(render_entity(created, TM, View(sys_attrs=True)), TM) == expected
