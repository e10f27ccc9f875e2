"""Attribute operations: append, update, partial update, replace, delete (clauses 5.6.2-5.6.5, 5.6.19)."""

from __future__ import annotations

import asyncio
from typing import Any

from broker.model import entity as model
from tests.conftest import Api, eventually, new_id, problem

NULL = "urn:ngsi-ld:null"


async def _entity(api: Api) -> str:
    entity_id = new_id("Vehicle")
    entity: dict[str, Any] = {
        "id": entity_id,
        "type": "Vehicle",
        "speed": {"type": "Property", "value": 32.5, "unitCode": "KMH", "observedAt": "2026-11-22T05:00:00Z"},
        "heading": {"type": "Property", "value": 90},
        "fuel": [
            {"type": "Property", "value": 0.8},
            {"type": "Property", "value": 0.7, "datasetId": "urn:ngsi-ld:Dataset:sensor2"},
        ],
    }
    response = await api.create(entity)
    assert response.status == 201, await response.text()
    return entity_id


def attrs_path(entity_id: str, attr: str | None = None) -> str:
    base = f"/ngsi-ld/v1/entities/{entity_id}/attrs"
    return base if attr is None else f"{base}/{attr}"


async def test_append_attributes_adds_and_overwrites(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request("POST", attrs_path(entity_id), {"speed": 10, "plowDown": True})
    assert response.status == 204, await response.text()
    body = await api.get_json(entity_id)
    assert body["speed"] == {"type": "Property", "value": 10}
    assert body["plowDown"]["value"] is True


async def test_append_with_no_overwrite_answers_207_naming_what_was_kept(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request(
        "POST", attrs_path(entity_id), {"speed": 10, "plowDown": True}, params={"options": "noOverwrite"}
    )
    assert response.status == 207
    result = await response.json()
    assert result["updated"] == ["plowDown"]
    assert [item["attributeName"] for item in result["notUpdated"]] == ["speed"]
    body = await api.get_json(entity_id)
    assert body["speed"]["value"] == 32.5
    assert body["plowDown"]["value"] is True


async def test_append_to_a_missing_entity_is_404(api: Api) -> None:
    await _entity(api)
    response = await api.request("POST", attrs_path(new_id()), {"speed": 1})
    await problem(response, 404, "ResourceNotFound")


async def test_update_attributes_replaces_existing_and_reports_missing_ones(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request(
        "PATCH", attrs_path(entity_id), {"speed": {"type": "Property", "value": 5}, "ghost": 1}
    )
    assert response.status == 207
    result = await response.json()
    assert result["updated"] == ["speed"]
    assert result["notUpdated"][0]["attributeName"] == "ghost"
    body = await api.get_json(entity_id)
    assert body["speed"] == {"type": "Property", "value": 5}
    assert "ghost" not in body


async def test_update_attributes_with_null_deletes_the_attribute(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request("PATCH", attrs_path(entity_id), {"heading": NULL})
    assert response.status == 204, await response.text()
    assert "heading" not in await api.get_json(entity_id)


async def test_partial_attribute_update_keeps_members_not_given(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request("PATCH", attrs_path(entity_id, "speed"), {"value": 40.0})
    assert response.status == 204, await response.text()
    body = await api.get_json(entity_id)
    assert body["speed"] == {
        "type": "Property",
        "value": 40.0,
        "unitCode": "KMH",
        "observedAt": "2026-11-22T05:00:00Z",
    }


async def test_partial_attribute_update_of_a_dataset_instance(api: Api) -> None:
    entity_id = await _entity(api)
    patch = {"value": 0.5, "datasetId": "urn:ngsi-ld:Dataset:sensor2"}
    assert (await api.request("PATCH", attrs_path(entity_id, "fuel"), patch)).status == 204
    body = await api.get_json(entity_id)
    values = {i.get("datasetId"): i["value"] for i in body["fuel"]}
    assert values == {None: 0.8, "urn:ngsi-ld:Dataset:sensor2": 0.5}


async def test_partial_attribute_update_with_ngsi_ld_null_removes_the_attribute(api: Api) -> None:
    """Clause 5.6.4 with NGSI-LD Null (5.2.1): the attribute is removed (issue 13 item 2)."""
    entity_id = await _entity(api)
    response = await api.request("PATCH", attrs_path(entity_id, "speed"), {"value": NULL})
    assert response.status == 204, await response.text()
    assert "speed" not in await api.get_json(entity_id)
    response = await api.request(
        "PATCH", attrs_path(entity_id, "fuel"), {"value": NULL, "datasetId": "urn:ngsi-ld:Dataset:sensor2"}
    )
    assert response.status == 204, await response.text()
    assert (await api.get_json(entity_id))["fuel"] == {"type": "Property", "value": 0.8}


async def test_partial_attribute_update_of_only_a_sub_attribute_updates_it_and_keeps_the_value(
    api: Api,
) -> None:
    """Clause 5.6.4: a fragment holding a sub-attribute updates that sub-attribute (issue 13 item 11)."""
    entity_id = await _entity(api)
    response = await api.request(
        "PATCH", attrs_path(entity_id, "speed"), {"accuracy": {"type": "Property", "value": 0.5}}
    )
    assert response.status == 204, await response.text()
    speed = (await api.get_json(entity_id))["speed"]
    assert speed["value"] == 32.5
    assert speed["unitCode"] == "KMH"
    assert speed["accuracy"] == {"type": "Property", "value": 0.5}
    response = await api.request("PATCH", attrs_path(entity_id, "speed"), {"accuracy": {"value": 0.25}})
    assert response.status == 204, await response.text()
    speed = (await api.get_json(entity_id))["speed"]
    assert (speed["value"], speed["accuracy"]["value"]) == (32.5, 0.25)


async def test_partial_attribute_update_with_another_attribute_type_is_400(api: Api) -> None:
    """Clause 5.6.4: a Relationship fragment cannot patch a Property (issue 13 item 11)."""
    entity_id = await _entity(api)
    response = await api.request(
        "PATCH", attrs_path(entity_id, "speed"), {"type": "Relationship", "object": "urn:ngsi-ld:X:1"}
    )
    await problem(response, 400, "BadRequestData")
    assert (await api.get_json(entity_id))["speed"]["value"] == 32.5


async def test_an_invalid_attribute_name_in_the_path_is_400(api: Api) -> None:
    """Clauses 5.6.4 and 4.6.2: an attribute name with forbidden characters names nothing."""
    entity_id = await _entity(api)
    for method in ("PATCH", "PUT"):
        response = await api.request(method, attrs_path(entity_id, "sp(eed"), {"value": 1})
        await problem(response, 400, "BadRequestData")
    await problem(await api.request("DELETE", attrs_path(entity_id, "sp(eed")), 400, "BadRequestData")


async def test_update_attributes_with_type_adds_the_types(api: Api) -> None:
    """Clause 5.6.2 (with the entity's type as in 5.6.3): types in the fragment are added (item 10)."""
    entity_id = await _entity(api)
    response = await api.request("PATCH", attrs_path(entity_id), {"type": "Snowplow", "heading": 180})
    assert response.status == 204, await response.text()
    body = await api.get_json(entity_id)
    assert body["type"] == ["Vehicle", "Snowplow"]
    assert body["heading"]["value"] == 180


async def test_creating_an_entity_of_type_type_is_400(api: Api) -> None:
    """Clause 4.6.2: 'type' is a member of the core @context (@type), not an entity type name."""
    await _entity(api)
    entity_id = new_id()
    response = await api.create({"id": entity_id, "type": "type"})
    await problem(response, 400, "BadRequestData")
    await problem(await api.get(entity_id), 404, "ResourceNotFound")


async def _scoped(api: Api) -> str:
    entity_id = new_id("Vehicle")
    response = await api.create(
        {"id": entity_id, "type": "Vehicle", "scope": "/Kagawa/Takamatsu", "speed": 1}
    )
    assert response.status == 201, await response.text()
    return entity_id


async def test_delete_of_attrs_scope_removes_the_scope(api: Api) -> None:
    """Clause 4.18: scope is an entity member; DELETE /attrs/scope removes it, 404 when there is none."""
    entity_id = await _scoped(api)
    response = await api.request("DELETE", attrs_path(entity_id, "scope"))
    assert response.status == 204, await response.text()
    body = await api.get_json(entity_id)
    assert "scope" not in body
    assert body["speed"]["value"] == 1
    await problem(await api.request("DELETE", attrs_path(entity_id, "scope")), 404, "ResourceNotFound")


async def test_put_of_attrs_scope_is_400(api: Api) -> None:
    """Clause 4.18: scope is not an attribute, it cannot be replaced as one."""
    entity_id = await _scoped(api)
    response = await api.request("PUT", attrs_path(entity_id, "scope"), {"type": "Property", "value": "/X"})
    await problem(response, 400, "BadRequestData")
    assert (await api.get_json(entity_id))["scope"] == "/Kagawa/Takamatsu"


async def test_update_attributes_of_scope_on_an_entity_without_scope_reports_it_in_a_207(api: Api) -> None:
    """Clauses 5.6.2 and 4.18: a scope is updated only where there is one; else notUpdated (207)."""
    entity_id = await _entity(api)
    response = await api.request("PATCH", attrs_path(entity_id), {"scope": "/Kagawa", "heading": 45})
    assert response.status == 207, await response.text()
    result = await response.json()
    assert result["updated"] == ["heading"]
    assert [item["attributeName"] for item in result["notUpdated"]] == ["scope"]
    body = await api.get_json(entity_id)
    assert "scope" not in body
    assert body["heading"]["value"] == 45
    scoped = await _scoped(api)
    response = await api.request("PATCH", attrs_path(scoped), {"scope": "/Kagawa"})
    assert response.status == 204, await response.text()
    assert (await api.get_json(scoped))["scope"] == "/Kagawa"


async def test_partial_attribute_update_of_a_missing_attribute_is_404(api: Api) -> None:
    entity_id = await _entity(api)
    await problem(
        await api.request("PATCH", attrs_path(entity_id, "ghost"), {"value": 1}), 404, "ResourceNotFound"
    )


async def test_replace_attribute_drops_members_not_given(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request("PUT", attrs_path(entity_id, "speed"), {"type": "Property", "value": 12})
    assert response.status == 204, await response.text()
    assert (await api.get_json(entity_id))["speed"] == {"type": "Property", "value": 12}


async def test_replace_attribute_requires_the_attribute_to_exist(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request("PUT", attrs_path(entity_id, "ghost"), {"type": "Property", "value": 1})
    await problem(response, 404, "ResourceNotFound")


async def test_delete_attribute_default_instance_then_dataset_then_all(api: Api) -> None:
    entity_id = await _entity(api)
    assert (await api.request("DELETE", attrs_path(entity_id, "fuel"))).status == 204
    body = await api.get_json(entity_id)
    assert body["fuel"]["datasetId"] == "urn:ngsi-ld:Dataset:sensor2"
    await problem(await api.request("DELETE", attrs_path(entity_id, "fuel")), 404, "ResourceNotFound")
    response = await api.request(
        "DELETE", attrs_path(entity_id, "fuel"), params={"datasetId": "urn:ngsi-ld:Dataset:sensor2"}
    )
    assert response.status == 204
    assert "fuel" not in await api.get_json(entity_id)


async def test_delete_attribute_with_delete_all_removes_every_instance(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request("DELETE", attrs_path(entity_id, "fuel"), params={"deleteAll": "true"})
    assert response.status == 204
    assert "fuel" not in await api.get_json(entity_id)


async def test_attribute_update_moves_modified_at_but_not_created_at(api: Api) -> None:
    entity_id = await _entity(api)
    before = (await api.get_json(entity_id, params={"options": "sysAttrs"}))["speed"]
    # Timestamps have millisecond precision: wait for the clock to pass the one stored.
    await eventually(lambda: model.now() > before["modifiedAt"], what="the clock past modifiedAt")
    await api.request("PATCH", attrs_path(entity_id, "speed"), {"value": 1})
    after = (await api.get_json(entity_id, params={"options": "sysAttrs"}))["speed"]
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]


async def test_concurrent_writers_to_one_entity_never_lose_an_update(api: Api) -> None:
    entity_id = await _entity(api)
    writers = 40

    async def append(index: int) -> int:
        response = await api.request("POST", attrs_path(entity_id), {f"a{index}": index})
        return response.status

    statuses = await asyncio.gather(*(append(i) for i in range(writers)))
    assert statuses == [204] * writers
    body = await api.get_json(entity_id)
    assert {f"a{i}" for i in range(writers)} <= set(body)


async def test_concurrent_creates_of_one_id_make_exactly_one_entity(api: Api) -> None:
    await _entity(api)
    entity_id = new_id()

    async def create(index: int) -> int:
        response = await api.create({"id": entity_id, "type": "Thing", "n": index})
        return response.status

    statuses = await asyncio.gather(*(create(i) for i in range(10)))
    assert sorted(statuses) == [201] + [409] * 9


def datasets(first: int, count: int, value: int = 1) -> list[dict[str, Any]]:
    return [
        {"type": "Property", "value": value, "datasetId": f"urn:ngsi-ld:Dataset:{n}"}
        for n in range(first, first + count)
    ]


async def test_a_patch_with_more_instances_of_an_attribute_than_the_limit_is_400_and_changes_nothing(
    api: Api,
) -> None:
    entity_id = await _entity(api)
    response = await api.request("PATCH", f"/ngsi-ld/v1/entities/{entity_id}", {"fuel": datasets(0, 1001)})
    body = await problem(response, 400, "BadRequestData")
    assert "1001 instances" in body["detail"]
    assert "NGSI_MAX_INSTANCES" in body["detail"]
    assert len((await api.get_json(entity_id))["fuel"]) == 2


async def test_a_patch_of_as_many_instances_as_the_limit_is_stored(api: Api) -> None:
    entity_id = await _entity(api)
    response = await api.request("PATCH", f"/ngsi-ld/v1/entities/{entity_id}", {"level": datasets(0, 1000)})
    assert response.status == 204, await response.text()
    assert len((await api.get_json(entity_id))["level"]) == 1000


async def test_patches_that_would_grow_an_attribute_beyond_the_limit_are_400(api: Api) -> None:
    entity_id = await _entity(api)
    path = f"/ngsi-ld/v1/entities/{entity_id}"
    assert (await api.request("PATCH", path, {"level": datasets(0, 600)})).status == 204
    await problem(await api.request("PATCH", path, {"level": datasets(600, 600)}), 400, "BadRequestData")
    assert len((await api.get_json(entity_id))["level"]) == 600
