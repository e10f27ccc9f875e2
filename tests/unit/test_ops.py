"""The pure entity operations of clause 5.6, checked against the digest's rules (sections 2 and 3)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from broker.errors import AlreadyExists, BadRequestData, ResourceNotFound
from broker.jsonld.context import TermMap, compile_contexts, core_document
from broker.model import ops
from broker.model.entity import Entity, Instance, dataset_id
from broker.model.geojson import validate_geometry
from broker.model.parse import parse_entity, parse_instance

EX = "https://example.org/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
NULL = "urn:ngsi-ld:null"
ID = "urn:ngsi-ld:Sensor:001"
T0 = "2024-01-01T00:00:00Z"
T1 = "2024-01-02T00:00:00Z"
T2 = "2024-01-03T00:00:00Z"
TEMP = EX + "temperature"
HUMIDITY = DEFAULT + "humidity"
ACCURACY = DEFAULT + "accuracy"
SOURCE = DEFAULT + "source"

TM: TermMap = compile_contexts([{"ex": EX, "temperature": TEMP}], core_document())


def full(body: dict[str, Any]) -> Entity:
    return parse_entity({"id": ID, "type": "Sensor", **body}, TM)


def fragment(body: dict[str, Any], *, allow_null: bool = True) -> Entity:
    return parse_entity(body, TM, require_id=False, require_type=False, allow_null=allow_null)


def patch(body: Any) -> Instance:
    return parse_instance(TEMP, body, TM, allow_null=True)


def stored(body: dict[str, Any], now: str = T0) -> Entity:
    """An entity as the store holds it after a create at ``now``."""
    outcome = ops.create(None, full(body), now)
    assert outcome.entity is not None
    return outcome.entity


def after(outcome: ops.Outcome) -> Entity:
    assert outcome.entity is not None
    return outcome.entity


def by_dataset(entity: Entity, name: str) -> dict[str | None, Instance]:
    return {i.get("datasetId"): i for i in entity.attrs[name]}


SENSOR = {
    "temperature": {
        "type": "Property",
        "value": 21.5,
        "unitCode": "CEL",
        "observedAt": "2024-01-01T00:00:00Z",
        "accuracy": {"type": "Property", "value": 0.5},
        "source": {"type": "Property", "value": "probe"},
    },
    "humidity": [
        {"type": "Property", "value": 40},
        {"type": "Property", "value": 41, "datasetId": "urn:ds:b"},
    ],
}


# --- create / delete ------------------------------------------------------------------------------


def test_create_stamps_the_entity_and_every_attribute_instance() -> None:
    entity = stored(SENSOR)
    assert entity.created_at == T0
    assert entity.modified_at == T0
    for instances in entity.attrs.values():
        for instance in instances:
            assert instance["createdAt"] == T0
            assert instance["modifiedAt"] == T0
    assert entity.attrs[TEMP][0][ACCURACY]["createdAt"] == T0


def test_create_reports_itself_as_a_creation() -> None:
    outcome = ops.create(None, full(SENSOR), T0)
    assert outcome.created
    assert set(outcome.updated) == {TEMP, HUMIDITY}


def test_creating_an_entity_twice_is_already_exists() -> None:
    first = stored(SENSOR)
    with pytest.raises(AlreadyExists):
        ops.create(first, full(SENSOR), T1)


def test_delete_removes_an_existing_entity() -> None:
    assert ops.delete(stored(SENSOR), ID).entity is None


def test_deleting_a_missing_entity_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.delete(None, ID)


# --- replace --------------------------------------------------------------------------------------


def test_replace_keeps_the_entity_created_at_and_drops_attributes_not_given() -> None:
    old = stored(SENSOR)
    new = after(ops.replace(old, full({"type": "Thermometer", "brandName": "Acme"}), T1))
    assert new.id == ID
    assert new.created_at == T0
    assert new.modified_at == T1
    assert new.types == [DEFAULT + "Thermometer"]
    assert set(new.attrs) == {DEFAULT + "brandName"}
    assert new.attrs[DEFAULT + "brandName"][0]["value"] == "Acme"


def test_replace_keeps_the_entity_id_when_the_payload_omits_it() -> None:
    old = stored(SENSOR)
    new = after(
        ops.replace(old, parse_entity({"type": "Sensor", "brandName": "Acme"}, TM, require_id=False), T1)
    )
    assert new.id == ID


def test_replace_of_a_missing_entity_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.replace(None, full(SENSOR), T1)


def test_replace_with_another_id_is_bad_request_data() -> None:
    other = parse_entity({"id": "urn:ngsi-ld:Sensor:002", "type": "Sensor"}, TM)
    with pytest.raises(BadRequestData):
        ops.replace(stored(SENSOR), other, T1)


# --- upsert ---------------------------------------------------------------------------------------


def test_upsert_creates_a_missing_entity() -> None:
    outcome = ops.upsert(None, full(SENSOR), T0, replace_existing=True)
    assert outcome.created
    assert after(outcome).created_at == T0


def test_upsert_of_a_missing_entity_without_type_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData):
        ops.upsert(None, parse_entity({"id": ID, "x": 1}, TM, require_type=False), T0, replace_existing=False)


def test_upsert_with_replace_drops_attributes_not_given() -> None:
    outcome = ops.upsert(stored(SENSOR), full({"brandName": "Acme"}), T1, replace_existing=True)
    entity = after(outcome)
    assert not outcome.created
    assert set(entity.attrs) == {DEFAULT + "brandName"}
    assert entity.created_at == T0


def test_upsert_with_update_keeps_attributes_not_given_and_overwrites_those_given() -> None:
    outcome = ops.upsert(
        stored(SENSOR), full({"brandName": "Acme", "temperature": 30}), T1, replace_existing=False
    )
    entity = after(outcome)
    assert not outcome.created
    assert set(entity.attrs) == {TEMP, HUMIDITY, DEFAULT + "brandName"}
    assert entity.attrs[TEMP] == [{"type": "Property", "value": 30, "createdAt": T0, "modifiedAt": T1}]
    assert entity.attrs[HUMIDITY] == stored(SENSOR).attrs[HUMIDITY]


# --- append ---------------------------------------------------------------------------------------


def test_append_adds_new_attributes_and_overwrites_existing_ones() -> None:
    outcome = ops.append(
        stored(SENSOR), fragment({"temperature": 25, "brandName": "Acme"}), T1, no_overwrite=False
    )
    entity = after(outcome)
    assert set(outcome.updated) == {TEMP, DEFAULT + "brandName"}
    assert outcome.not_updated == []
    assert entity.attrs[TEMP][0]["value"] == 25
    # Append replaces the instance: members not given are gone.
    assert "unitCode" not in entity.attrs[TEMP][0]
    assert entity.attrs[DEFAULT + "brandName"][0]["value"] == "Acme"


def test_append_with_no_overwrite_reports_not_updated_and_keeps_the_old_value() -> None:
    old = stored(SENSOR)
    outcome = ops.append(old, fragment({"temperature": 99, "brandName": "Acme"}), T1, no_overwrite=True)
    entity = after(outcome)
    assert [name for name, _ in outcome.not_updated] == [TEMP]
    assert all(reason for _, reason in outcome.not_updated)
    assert outcome.updated == [DEFAULT + "brandName"]
    assert entity.attrs[TEMP] == old.attrs[TEMP]


def test_append_with_no_overwrite_adds_a_new_dataset_instance_of_an_existing_attribute() -> None:
    old = stored(SENSOR)
    frag = fragment(
        {"humidity": [{"value": 1, "datasetId": "urn:ds:b"}, {"value": 2, "datasetId": "urn:ds:c"}]}
    )
    outcome = ops.append(old, frag, T1, no_overwrite=True)
    instances = by_dataset(after(outcome), HUMIDITY)
    assert set(instances) == {None, "urn:ds:b", "urn:ds:c"}
    assert instances["urn:ds:b"]["value"] == 41
    assert instances["urn:ds:c"]["value"] == 2
    assert outcome.updated == [HUMIDITY]
    assert [name for name, _ in outcome.not_updated] == [HUMIDITY]


def test_append_adds_entity_types() -> None:
    entity = after(ops.append(stored(SENSOR), fragment({"type": "ex:Device"}), T1, no_overwrite=False))
    assert entity.types == [DEFAULT + "Sensor", EX + "Device"]


def test_append_to_a_missing_entity_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.append(None, fragment({"x": 1}), T1, no_overwrite=False)


def test_append_with_no_overwrite_adds_scopes_and_with_overwrite_replaces_them() -> None:
    old = after(ops.append(stored(SENSOR), fragment({"scope": "/a"}), T1, no_overwrite=False))
    assert after(ops.append(old, fragment({"scope": "/b"}), T2, no_overwrite=True)).scopes == ["/a", "/b"]
    assert after(ops.append(old, fragment({"scope": "/b"}), T2, no_overwrite=False)).scopes == ["/b"]


# --- update attributes ----------------------------------------------------------------------------


def test_update_attributes_reports_missing_attributes_as_not_updated_and_creates_nothing() -> None:
    old = stored(SENSOR)
    outcome = ops.update_attributes(old, fragment({"temperature": 30, "brandName": "Acme"}), T1)
    entity = after(outcome)
    assert outcome.updated == [TEMP]
    assert [name for name, _ in outcome.not_updated] == [DEFAULT + "brandName"]
    assert DEFAULT + "brandName" not in entity.attrs
    assert entity.attrs[TEMP][0]["value"] == 30


def test_update_attributes_reports_a_missing_dataset_instance_as_not_updated() -> None:
    outcome = ops.update_attributes(
        stored(SENSOR), fragment({"humidity": {"value": 1, "datasetId": "urn:ds:z"}}), T1
    )
    assert outcome.updated == []
    assert [name for name, _ in outcome.not_updated] == [HUMIDITY]
    assert {i.get("datasetId") for i in after(outcome).attrs[HUMIDITY]} == {None, "urn:ds:b"}


@pytest.mark.parametrize(
    "marker",
    [NULL, {"value": NULL}, {"type": "Property", "value": NULL}, {"type": "Relationship", "object": NULL}],
)
def test_update_attributes_deletes_an_attribute_given_ngsi_ld_null(marker: Any) -> None:
    outcome = ops.update_attributes(stored(SENSOR), fragment({"temperature": marker}), T1)
    entity = after(outcome)
    assert TEMP not in entity.attrs
    assert outcome.updated == [TEMP]
    assert outcome.not_updated == []


def test_update_attributes_with_null_deletes_only_the_instance_with_that_dataset_id() -> None:
    outcome = ops.update_attributes(
        stored(SENSOR), fragment({"humidity": {"value": NULL, "datasetId": "urn:ds:b"}}), T1
    )
    assert list(by_dataset(after(outcome), HUMIDITY)) == [None]


def test_update_attributes_replaces_the_whole_instance() -> None:
    entity = after(ops.update_attributes(stored(SENSOR), fragment({"temperature": {"value": 30}}), T1))
    instance = entity.attrs[TEMP][0]
    assert instance["value"] == 30
    assert "unitCode" not in instance
    assert ACCURACY not in instance


def test_update_attributes_of_a_missing_entity_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.update_attributes(None, fragment({"temperature": 1}), T1)


# --- partial attribute update -----------------------------------------------------------------------


def test_partial_update_keeps_the_unit_code_the_patch_does_not_mention() -> None:
    entity = after(ops.partial_update(stored(SENSOR), ID, TEMP, patch({"value": 30}), T1))
    instance = entity.attrs[TEMP][0]
    assert instance["value"] == 30
    assert instance["unitCode"] == "CEL"
    assert instance["observedAt"] == "2024-01-01T00:00:00Z"
    assert instance[ACCURACY]["value"] == 0.5
    assert instance["type"] == "Property"


def test_partial_update_changes_only_the_members_it_names() -> None:
    entity = after(
        ops.partial_update(
            stored(SENSOR), ID, TEMP, patch({"value": 21.5, "unitCode": "FAH", "accuracy": 1}), T1
        )
    )
    instance = entity.attrs[TEMP][0]
    assert instance["unitCode"] == "FAH"
    assert instance[ACCURACY]["value"] == 1
    assert instance[SOURCE]["value"] == "probe"


def test_partial_update_deletes_a_sub_attribute_given_null() -> None:
    entity = after(ops.partial_update(stored(SENSOR), ID, TEMP, patch({"value": 22, "accuracy": NULL}), T1))
    instance = entity.attrs[TEMP][0]
    assert ACCURACY not in instance
    assert SOURCE in instance
    assert instance["value"] == 22


@pytest.mark.parametrize("marker", [NULL, {"value": NULL}, {"type": "Property", "value": NULL}])
def test_partial_update_with_null_removes_the_attribute(marker: Any) -> None:
    """Clause 5.6.4 with 5.2.1's NGSI-LD Null: the instance is removed (issue 13 item 2)."""
    old = stored(SENSOR)
    before = copy.deepcopy(old)
    entity = after(ops.partial_update(old, ID, TEMP, patch(marker), T1))
    assert TEMP not in entity.attrs
    assert old == before


def test_partial_update_of_another_attribute_type_is_refused() -> None:
    """Clause 5.6.4: a Relationship fragment cannot patch a Property (issue 13 item 11)."""
    old = stored(SENSOR)
    with pytest.raises(BadRequestData, match="cannot patch"):
        ops.partial_update(old, ID, TEMP, patch({"type": "Relationship", "object": "urn:x:1"}), T1)


def test_partial_update_of_a_missing_attribute_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.partial_update(stored(SENSOR), ID, DEFAULT + "brandName", patch({"value": 1}), T1)


def test_partial_update_of_a_missing_dataset_instance_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.partial_update(stored(SENSOR), ID, HUMIDITY, patch({"value": 1, "datasetId": "urn:ds:zzz"}), T1)


def test_partial_update_of_a_missing_default_instance_is_resource_not_found() -> None:
    old = stored({"humidity": {"type": "Property", "value": 1, "datasetId": "urn:ds:b"}})
    with pytest.raises(ResourceNotFound):
        ops.partial_update(old, ID, HUMIDITY, patch({"value": 2}), T1)


def test_partial_update_of_a_missing_entity_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.partial_update(None, ID, TEMP, patch({"value": 1}), T1)


def test_partial_update_targets_the_instance_named_by_dataset_id() -> None:
    entity = after(
        ops.partial_update(stored(SENSOR), ID, HUMIDITY, patch({"value": 7, "datasetId": "urn:ds:b"}), T1)
    )
    instances = by_dataset(entity, HUMIDITY)
    assert instances["urn:ds:b"]["value"] == 7
    assert instances[None]["value"] == 40


# --- replace attribute ------------------------------------------------------------------------------


def test_replace_attribute_drops_members_the_new_instance_lacks() -> None:
    entity = after(ops.replace_attribute(stored(SENSOR), ID, TEMP, patch({"value": 3}), T1))
    instance = entity.attrs[TEMP][0]
    assert instance["value"] == 3
    assert "unitCode" not in instance
    assert ACCURACY not in instance


def test_replace_attribute_of_a_missing_attribute_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.replace_attribute(stored(SENSOR), ID, DEFAULT + "brandName", patch({"value": 3}), T1)


# --- delete attribute -------------------------------------------------------------------------------


def test_delete_attribute_without_dataset_id_deletes_the_default_instance_only() -> None:
    entity = after(ops.delete_attribute(stored(SENSOR), ID, HUMIDITY, T1, dataset=None, delete_all=False))
    assert list(by_dataset(entity, HUMIDITY)) == ["urn:ds:b"]
    assert entity.modified_at == T1


def test_delete_attribute_with_dataset_id_deletes_that_instance_only() -> None:
    entity = after(
        ops.delete_attribute(stored(SENSOR), ID, HUMIDITY, T1, dataset="urn:ds:b", delete_all=False)
    )
    assert list(by_dataset(entity, HUMIDITY)) == [None]


def test_delete_attribute_with_delete_all_deletes_every_instance() -> None:
    entity = after(ops.delete_attribute(stored(SENSOR), ID, HUMIDITY, T1, dataset=None, delete_all=True))
    assert HUMIDITY not in entity.attrs
    assert TEMP in entity.attrs


def test_deleting_the_last_instance_removes_the_attribute() -> None:
    entity = after(ops.delete_attribute(stored(SENSOR), ID, TEMP, T1, dataset=None, delete_all=False))
    assert TEMP not in entity.attrs


@pytest.mark.parametrize(
    ("name", "dataset"), [(DEFAULT + "brandName", None), (HUMIDITY, "urn:ds:zzz"), (TEMP, "urn:ds:b")]
)
def test_deleting_a_missing_attribute_or_instance_is_resource_not_found(
    name: str, dataset: str | None
) -> None:
    with pytest.raises(ResourceNotFound):
        ops.delete_attribute(stored(SENSOR), ID, name, T1, dataset=dataset, delete_all=False)


def test_delete_attribute_with_delete_all_on_a_missing_attribute_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.delete_attribute(stored(SENSOR), ID, DEFAULT + "brandName", T1, dataset=None, delete_all=True)


# --- merge ----------------------------------------------------------------------------------------


def test_merge_keeps_unit_code_the_patch_does_not_mention() -> None:
    entity = after(ops.merge(stored(SENSOR), fragment({"temperature": {"value": 30}}), T1))
    instance = entity.attrs[TEMP][0]
    assert instance["value"] == 30
    assert instance["unitCode"] == "CEL"
    assert instance[ACCURACY]["value"] == 0.5


def test_merge_creates_missing_attributes_and_deletes_null_ones() -> None:
    entity = after(ops.merge(stored(SENSOR), fragment({"temperature": NULL, "brandName": "Acme"}), T1))
    assert TEMP not in entity.attrs
    assert entity.attrs[DEFAULT + "brandName"][0]["value"] == "Acme"
    assert HUMIDITY in entity.attrs


def test_merge_deletes_a_sub_attribute_given_null() -> None:
    entity = after(ops.merge(stored(SENSOR), fragment({"temperature": {"value": 1, "accuracy": NULL}}), T1))
    assert ACCURACY not in entity.attrs[TEMP][0]
    assert SOURCE in entity.attrs[TEMP][0]


def test_merge_of_null_for_a_missing_attribute_is_ignored() -> None:
    old = stored(SENSOR)
    entity = after(ops.merge(old, fragment({"brandName": NULL}), T1))
    assert set(entity.attrs) == set(old.attrs)


def test_merge_uses_the_observed_at_parameter_for_attributes_that_had_one() -> None:
    later = "2024-06-01T00:00:00Z"
    entity = after(
        ops.merge(
            stored(SENSOR), fragment({"temperature": {"value": 1}, "humidity": 2}), T1, observed_at=later
        )
    )
    assert entity.attrs[TEMP][0]["observedAt"] == later
    assert "observedAt" not in by_dataset(entity, HUMIDITY)[None]


def test_merge_prefers_the_fragment_observed_at_over_the_parameter() -> None:
    frag = fragment({"temperature": {"value": 1, "observedAt": "2024-02-02T00:00:00Z"}})
    entity = after(ops.merge(stored(SENSOR), frag, T1, observed_at="2024-06-01T00:00:00Z"))
    assert entity.attrs[TEMP][0]["observedAt"] == "2024-02-02T00:00:00Z"


def test_merge_adds_types() -> None:
    entity = after(ops.merge(stored(SENSOR), fragment({"type": "ex:Device"}), T1))
    assert entity.types == [DEFAULT + "Sensor", EX + "Device"]


def test_merge_with_another_id_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData):
        ops.merge(stored(SENSOR), fragment({"id": "urn:ngsi-ld:Sensor:002"}), T1)


def test_merge_into_a_missing_entity_is_resource_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        ops.merge(None, fragment({"x": 1}), T1)


def test_a_concise_merge_value_keeps_a_geo_property_a_geo_property() -> None:
    old = stored({"location": {"type": "Point", "coordinates": [1, 2]}})
    new_point = {"type": "Point", "coordinates": [3, 4]}
    entity = after(ops.merge(old, fragment({"location": {"value": new_point}}), T1))
    instance = entity.attrs["https://uri.etsi.org/ngsi-ld/location"][0]
    assert instance["type"] == "GeoProperty"
    assert instance["value"] == new_point


def _holds_only_valid_geometries(entity: Entity) -> bool:
    for instances in entity.attrs.values():
        for instance in instances:
            if instance["type"] == "GeoProperty":
                try:
                    validate_geometry(instance["value"], "check")
                except BadRequestData:
                    return False
    return True


AREA = EX + "area"
AREA_BODY = {"ex:area": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}}


@pytest.mark.parametrize("value", [5, "nowhere", {"value": [1, 2]}, {"value": {"a": 1}}], ids=repr)
def test_a_merge_cannot_leave_a_geo_property_without_a_valid_geometry(value: Any) -> None:
    old = stored(AREA_BODY)
    try:
        entity = after(ops.merge(old, fragment({"ex:area": value}), T1))
    except BadRequestData:
        return
    assert _holds_only_valid_geometries(entity), entity.attrs[AREA]


@pytest.mark.parametrize("value", [5, "nowhere", [1, 2], {"a": 1}], ids=repr)
def test_a_partial_update_cannot_leave_a_geo_property_without_a_valid_geometry(value: Any) -> None:
    old = stored(AREA_BODY)
    try:
        entity = after(ops.partial_update(old, ID, AREA, parse_instance(AREA, {"value": value}, TM), T1))
    except BadRequestData:
        return
    assert _holds_only_valid_geometries(entity), entity.attrs[AREA]


# --- system timestamps --------------------------------------------------------------------------------


def _updates() -> list[tuple[str, Any]]:
    return [
        ("append", lambda e: ops.append(e, fragment({"temperature": 30}), T1, no_overwrite=False)),
        ("update_attributes", lambda e: ops.update_attributes(e, fragment({"temperature": 30}), T1)),
        ("merge", lambda e: ops.merge(e, fragment({"temperature": 30}), T1)),
        ("partial_update", lambda e: ops.partial_update(e, ID, TEMP, patch({"value": 30}), T1)),
        ("replace_attribute", lambda e: ops.replace_attribute(e, ID, TEMP, patch({"value": 30}), T1)),
        ("upsert", lambda e: ops.upsert(e, full({"temperature": 30}), T1, replace_existing=False)),
    ]


@pytest.mark.parametrize(("operation", "run"), _updates(), ids=[name for name, _ in _updates()])
def test_updated_attributes_move_modified_at_and_keep_created_at(operation: str, run: Any) -> None:
    old = stored(SENSOR)
    entity = after(run(old))
    instance = entity.attrs[TEMP][0]
    assert instance["value"] == 30
    assert instance["modifiedAt"] == T1
    assert entity.modified_at == T1
    assert entity.created_at == T0
    if operation != "replace_attribute":
        assert instance["createdAt"] == T0
    # Attributes the operation did not touch keep both timestamps.
    for other in entity.attrs[HUMIDITY]:
        assert (other["createdAt"], other["modifiedAt"]) == (T0, T0)


@pytest.mark.parametrize(("operation", "run"), _updates(), ids=[name for name, _ in _updates()])
def test_operations_do_not_modify_the_entity_they_are_given(operation: str, run: Any) -> None:
    old = stored(SENSOR)
    before = copy.deepcopy(old)
    run(old)
    assert old == before, operation


def test_a_new_attribute_gets_created_at_equal_to_modified_at() -> None:
    entity = after(ops.merge(stored(SENSOR), fragment({"brandName": "Acme"}), T1))
    instance = entity.attrs[DEFAULT + "brandName"][0]
    assert instance["createdAt"] == instance["modifiedAt"] == T1


# --- many instances of one attribute (issue 11 defect 6) ---------------------------------------------


def _datasets(size: int, value: int) -> list[Instance]:
    return [
        {"type": "Property", "value": value, "datasetId": f"urn:ngsi-ld:Dataset:{n}"} for n in range(size)
    ]


def _lookups(monkeypatch: pytest.MonkeyPatch, operation: str, size: int) -> int:
    """How often ``operation`` reads an instance's datasetId, given ``size`` of them over ``size`` stored."""
    calls = 0
    real = dataset_id

    def counted(instance: Instance) -> str | None:
        nonlocal calls
        calls += 1
        return real(instance)

    stored = ops.create(
        None, Entity(id=ID, types=[EX + "Sensor"], attrs={TEMP: _datasets(size, 0)}), T0
    ).entity
    assert stored is not None
    change = Entity(id="", attrs={TEMP: _datasets(size, 1)})
    # Both modules: the old scan for an instance (entity.find_instance) read datasetIds there.
    monkeypatch.setattr("broker.model.entity.dataset_id", counted)
    monkeypatch.setattr("broker.model.ops.dataset_id", counted)
    if operation == "merge":
        after = ops.merge(stored, change, T1).entity
    elif operation == "append":
        after = ops.append(stored, change, T1, no_overwrite=False).entity
    else:
        after = ops.update_attributes(stored, change, T1).entity
    monkeypatch.undo()
    assert after is not None
    assert [i["value"] for i in after.attrs[TEMP]] == [1] * size
    return calls


@pytest.mark.parametrize("operation", ["merge", "append", "update"])
def test_many_datasets_of_one_attribute_cost_a_fixed_number_of_lookups_each(
    monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    small, large = (_lookups(monkeypatch, operation, n) for n in (500, 4000))
    # Linear: a few lookups per instance at any size (scanning the list for each was 500 x 4000 / 2).
    assert large <= 3 * 4000, large
    assert large <= 8 * small + 8, (small, large)


def test_replacing_adding_and_deleting_datasets_keeps_the_order_of_the_rest() -> None:
    stored = ops.create(None, Entity(id=ID, types=[EX + "Sensor"], attrs={TEMP: _datasets(4, 0)}), T0).entity
    assert stored is not None
    change = Entity(
        id="",
        attrs={
            TEMP: [
                {"type": "Property", "value": NULL, "datasetId": "urn:ngsi-ld:Dataset:1"},
                {"type": "Property", "value": 7, "datasetId": "urn:ngsi-ld:Dataset:9"},
                {"type": "Property", "value": 5, "datasetId": "urn:ngsi-ld:Dataset:2"},
            ]
        },
    )
    after = ops.merge(stored, change, T1).entity
    assert after is not None
    assert [(i["datasetId"][-1], i["value"]) for i in after.attrs[TEMP]] == [
        ("0", 0),
        ("2", 5),
        ("3", 0),
        ("9", 7),
    ]


def test_an_operation_leaving_too_many_instances_is_refused() -> None:
    entity = Entity(id=ID, attrs={TEMP: _datasets(11, 0)})
    ops.check_instances(Entity(id=ID, attrs={TEMP: _datasets(10, 0)}), 10)
    with pytest.raises(BadRequestData, match="has 11 instances; at most 10"):
        ops.check_instances(entity, 10)
