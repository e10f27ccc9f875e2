"""Merge Entity (5.6.17, merge-patch behaviour 5.5.12) against an independent reference model.

The reference below is written from the digest's rules (section 2.2), not from broker.model.ops:
attributes the fragment does not name are untouched; NGSI-LD Null deletes an instance or a
sub-attribute; other instances are created or merged member by member; Property values that are
JSON objects follow RFC 7396 with NGSI-LD Null in place of JSON null; arrays are replaced.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.model import ops
from broker.model.entity import Entity, Instance

NULL = "urn:ngsi-ld:null"
ID = "urn:ngsi-ld:Thing:1"
T0 = "2024-01-01T00:00:00.000Z"
T1 = "2024-02-01T00:00:00.000Z"
ATTRS = [f"https://example.org/attr{i}" for i in range(4)]
SUBS = [f"https://example.org/sub{i}" for i in range(3)]
DATASETS: list[str | None] = [None, "urn:ds:1", "urn:ds:2"]
KEYS = ["a", "b", "c"]
TIMESTAMPS = ("createdAt", "modifiedAt")

# --- strategies -----------------------------------------------------------------------------------

SCALARS = st.integers(-5, 5) | st.booleans() | st.sampled_from(["x", "y", "urn:ngsi-ld:Thing:9"])
ARRAYS = st.lists(SCALARS, max_size=3)
OBJECTS = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), SCALARS | ARRAYS, max_size=3),
    lambda inner: st.dictionaries(st.sampled_from(KEYS), SCALARS | ARRAYS | inner, max_size=3),
    max_leaves=8,
)

VALUES = SCALARS | ARRAYS | OBJECTS
# Patch objects may set any nested key to NGSI-LD Null (never inside arrays: arrays are plain values).
PATCH_OBJECTS = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), SCALARS | ARRAYS | st.just(NULL), max_size=3),
    lambda inner: st.dictionaries(
        st.sampled_from(KEYS), SCALARS | ARRAYS | st.just(NULL) | inner, max_size=3
    ),
    max_leaves=8,
)
PATCH_VALUES = SCALARS | ARRAYS | PATCH_OBJECTS
URIS = st.sampled_from(["urn:ngsi-ld:Room:1", "urn:ngsi-ld:Room:2"])
TIMES = st.sampled_from(["2023-05-01T00:00:00.000Z", "2023-06-01T00:00:00.000Z"])


def sub_attributes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Instance]]:
    sub = st.one_of(
        values.map(lambda v: {"type": "Property", "value": v}),
        URIS.map(lambda u: {"type": "Relationship", "object": u}),
    )
    return st.dictionaries(st.sampled_from(SUBS), sub, max_size=2)


@st.composite
def stored_instance(draw: st.DrawFn, dataset: str | None) -> Instance:
    kind = draw(st.sampled_from(["Property", "Property", "Relationship"]))
    instance: Instance = {"type": kind}
    instance["value" if kind == "Property" else "object"] = draw(VALUES if kind == "Property" else URIS)
    if dataset is not None:
        instance["datasetId"] = dataset
    if kind == "Property" and draw(st.booleans()):
        instance["unitCode"] = draw(st.sampled_from(["CEL", "MTR"]))
    if draw(st.booleans()):
        instance["observedAt"] = draw(TIMES)
    for name, sub in draw(sub_attributes(VALUES)).items():
        instance[name] = {**sub, "createdAt": T0, "modifiedAt": T0}
    instance["createdAt"] = T0
    instance["modifiedAt"] = T0
    return instance


@st.composite
def stored_entities(draw: st.DrawFn) -> Entity:
    attrs: dict[str, list[Instance]] = {}
    for name in draw(st.lists(st.sampled_from(ATTRS), unique=True, max_size=3)):
        datasets = draw(st.lists(st.sampled_from(DATASETS), unique=True, min_size=1, max_size=3))
        attrs[name] = [draw(stored_instance(d)) for d in datasets]
    return Entity(id=ID, types=["https://example.org/Thing"], attrs=attrs, created_at=T0, modified_at=T0)


def null_marker(kind: str) -> Instance:
    return (
        {"type": "Relationship", "object": NULL}
        if kind == "Relationship"
        else {"type": "Property", "value": NULL}
    )


@st.composite
def patch_instance(draw: st.DrawFn, old: Instance | None, dataset: str | None) -> Instance:
    """A fragment instance as parse_entity(..., allow_null=True) produces it."""
    kind = old["type"] if old is not None else draw(st.sampled_from(["Property", "Relationship"]))
    if draw(st.integers(0, 4)) == 0:
        # Concise input "attr": "urn:ngsi-ld:null" arrives as a Property whatever the target's type.
        marker = null_marker(draw(st.sampled_from([kind, "Property"])))
    else:
        marker = {"type": kind}
        marker["value" if kind == "Property" else "object"] = draw(
            PATCH_VALUES if kind == "Property" else URIS
        )
        if kind == "Property" and draw(st.booleans()):
            marker["unitCode"] = draw(st.sampled_from(["CEL", "FAH"]))
        if draw(st.booleans()):
            marker["observedAt"] = draw(TIMES)
        for name, sub in draw(sub_attributes(PATCH_VALUES)).items():
            marker[name] = null_marker(sub["type"]) if draw(st.integers(0, 2)) == 0 else sub
    if dataset is not None:
        marker["datasetId"] = dataset
    return marker


@st.composite
def merge_cases(draw: st.DrawFn) -> tuple[Entity, Entity]:
    current = draw(stored_entities())
    attrs: dict[str, list[Instance]] = {}
    for name in draw(st.lists(st.sampled_from(ATTRS), unique=True, min_size=1, max_size=4)):
        old = {i.get("datasetId"): i for i in current.attrs.get(name, [])}
        datasets = draw(st.lists(st.sampled_from(DATASETS), unique=True, min_size=1, max_size=3))
        attrs[name] = [draw(patch_instance(old.get(d), d)) for d in datasets]
    return current, Entity(id="", attrs=attrs)


# --- the reference model --------------------------------------------------------------------------


def is_null(instance: Instance) -> bool:
    return instance.get("value") == NULL or instance.get("object") == NULL


def rfc7396(target: Any, patch: Any) -> Any:
    """RFC 7396 section 2 MergePatch, with NGSI-LD Null standing for JSON null."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value == NULL:
            result.pop(key, None)
        else:
            result[key] = rfc7396(result.get(key), value)
    return result


def created(patch: Instance) -> Instance:
    """A new instance made from a patch: nested NGSI-LD Nulls mean nothing and disappear."""
    out: Instance = {}
    for key, value in patch.items():
        if key.startswith("https://"):
            if not is_null(value):
                out[key] = created(value)
        elif key == "value" and isinstance(value, dict):
            out[key] = rfc7396({}, value)
        else:
            out[key] = value
    return out


def merged(old: Instance, patch: Instance) -> Instance:
    """Member-by-member merge of two instances of the same kind (rules 3, 4, 5, 7)."""
    out = {k: v for k, v in old.items() if k not in TIMESTAMPS}
    for key, value in patch.items():
        if key.startswith("https://"):
            if is_null(value):
                out.pop(key, None)
            elif key in old and old[key]["type"] == value["type"]:
                out[key] = merged(old[key], value)
            else:
                out[key] = created(value)
        elif key == "value" and old["type"] == "Property":
            out[key] = rfc7396(old.get("value"), value)
        else:
            out[key] = value
    return out


def without_timestamps(instance: Instance) -> Instance:
    return {
        k: without_timestamps(v) if k.startswith("https://") else v
        for k, v in instance.items()
        if k not in TIMESTAMPS
    }


def expected_attrs(current: Entity, fragment: Entity) -> dict[str, list[Instance]]:
    result: dict[str, list[Instance]] = {}
    for name, instances in current.attrs.items():
        result[name] = [without_timestamps(i) for i in instances]
    for name, patches in fragment.attrs.items():
        instances = result.setdefault(name, [])
        for patch in patches:
            dataset = patch.get("datasetId")
            index = next((n for n, i in enumerate(instances) if i.get("datasetId") == dataset), None)
            if is_null(patch):
                if index is not None:
                    del instances[index]
            elif index is None:
                instances.append(created(patch))
            else:
                instances[index] = merged(instances[index], patch)
        if not instances:
            del result[name]
    return result


def by_dataset(instances: list[Instance]) -> dict[str | None, Instance]:
    return {i.get("datasetId"): i for i in instances}


def contains_null(value: Any) -> bool:
    if value == NULL:
        return True
    if isinstance(value, dict):
        return any(contains_null(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_null(v) for v in value)
    return False


# --- the properties -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(merge_cases())
def test_merge_follows_the_merge_patch_rules(case: tuple[Entity, Entity]) -> None:
    current, fragment = case
    pristine_current = copy.deepcopy(current)
    pristine_fragment = copy.deepcopy(fragment)

    outcome = ops.merge(current, fragment, T1)
    assert outcome.entity is not None
    result = outcome.entity

    # Operations are pure: neither input is touched.
    assert current == pristine_current
    assert fragment == pristine_fragment

    # Attributes absent from the fragment are unchanged, timestamps included.
    for name, instances in current.attrs.items():
        if name not in fragment.attrs:
            assert result.attrs[name] == instances

    expected = expected_attrs(current, fragment)
    actual = {name: [without_timestamps(i) for i in instances] for name, instances in result.attrs.items()}
    assert set(actual) == set(expected)
    for name in expected:
        assert by_dataset(actual[name]) == by_dataset(expected[name]), name

    # Null-marked instances are gone; every other fragment instance exists afterwards.
    for name, patches in fragment.attrs.items():
        present = by_dataset(result.attrs.get(name, []))
        for patch in patches:
            assert (patch.get("datasetId") in present) is not is_null(patch)

    # No NGSI-LD Null is left anywhere.
    assert not contains_null(result.attrs)

    # System timestamps: merged instances keep createdAt, touched ones move modifiedAt.
    assert result.created_at == T0
    assert result.modified_at == T1
    for name, patches in fragment.attrs.items():
        old = by_dataset(current.attrs.get(name, []))
        now = by_dataset(result.attrs.get(name, []))
        for patch in patches:
            dataset = patch.get("datasetId")
            if dataset not in now:
                continue
            assert now[dataset]["modifiedAt"] == T1
            assert now[dataset]["createdAt"] == (old[dataset]["createdAt"] if dataset in old else T1)


@given(OBJECTS, PATCH_OBJECTS)
def test_property_values_that_are_json_objects_merge_per_rfc_7396(
    old: dict[str, Any], patch: dict[str, Any]
) -> None:
    current = Entity(
        id=ID,
        types=["https://example.org/Thing"],
        attrs={
            ATTRS[0]: [
                {"type": "Property", "value": old, "unitCode": "CEL", "createdAt": T0, "modifiedAt": T0}
            ]
        },
        created_at=T0,
        modified_at=T0,
    )
    pristine = copy.deepcopy(current)
    outcome = ops.merge(current, Entity(id="", attrs={ATTRS[0]: [{"type": "Property", "value": patch}]}), T1)
    assert outcome.entity is not None
    instance = outcome.entity.attrs[ATTRS[0]][0]
    assert instance["value"] == rfc7396(old, patch)
    assert instance["unitCode"] == "CEL"
    assert current == pristine
