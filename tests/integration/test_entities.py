"""Entity create / retrieve / replace / merge / delete against the real store (clauses 5.6, 5.7.1)."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import Api, fixture_json, new_id, problem

NULL = "urn:ngsi-ld:null"


def gauge(entity_id: str, level: float = 0.77) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "FloodMonitoring",
        "currentLevel": {
            "type": "Property",
            "value": level,
            "unitCode": "MTR",
            "observedAt": "2026-11-22T01:00:00Z",
        },
        "alertLevel": {"type": "Property", "value": 1.4, "unitCode": "MTR"},
        "name": {"type": "LanguageProperty", "languageMap": {"ja": "春日川", "en": "Kasuga river"}},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.0631, 34.3335]}},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:gauge-1"},
    }


async def test_create_entity_returns_201_and_the_entity_reads_back_normalized(api: Api) -> None:
    entity_id = new_id("FloodMonitoring")
    response = await api.create(gauge(entity_id))
    assert response.status == 201
    assert response.headers["Location"] == f"/ngsi-ld/v1/entities/{entity_id}"
    body = await api.get_json(entity_id)
    assert body["type"] == "FloodMonitoring"
    assert body["currentLevel"] == {
        "type": "Property",
        "value": 0.77,
        "unitCode": "MTR",
        "observedAt": "2026-11-22T01:00:00Z",
    }
    assert body["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:gauge-1"}
    assert body["location"]["value"]["coordinates"] == [134.0631, 34.3335]


async def test_create_entity_returns_409_if_it_exists(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(gauge(entity_id))).status == 201
    await problem(await api.create(gauge(entity_id, 9.9)), 409, "AlreadyExists")
    body = await api.get_json(entity_id)
    assert body["currentLevel"]["value"] == 0.77


async def test_retrieve_entity_returns_404_for_an_unknown_id(api: Api) -> None:
    await api.create(gauge(new_id()))
    await problem(await api.get(new_id()), 404, "ResourceNotFound")


async def test_retrieve_entity_rejects_an_id_that_is_not_a_uri(api: Api) -> None:
    await problem(await api.get("not-a-uri"), 400, "BadRequestData")


async def test_every_attribute_type_is_stored_and_returned(api: Api) -> None:
    entity_id = new_id()
    entity = {
        "id": entity_id,
        "type": "Thing",
        "p": {"type": "Property", "value": {"nested": [1, 2, {"x": True}]}},
        "r": {"type": "Relationship", "object": "urn:ngsi-ld:Other:1", "objectType": "Other"},
        "g": {
            "type": "GeoProperty",
            "value": {"type": "LineString", "coordinates": [[134.0, 34.0], [134.1, 34.1]]},
        },
        "l": {"type": "LanguageProperty", "languageMap": {"ja": "川", "en": "river"}},
        "v": {"type": "VocabProperty", "vocab": "Flooding"},
        "j": {"type": "JsonProperty", "json": {"any": {"json": None}}},
        "lp": {"type": "ListProperty", "valueList": [1, "two", 3.0]},
        "lr": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:A:1", "urn:ngsi-ld:A:2"]},
    }
    assert (await api.create(entity)).status == 201
    body = await api.get_json(entity_id)
    for name in ("p", "r", "g", "l", "v", "j", "lp", "lr"):
        assert body[name] == entity[name], name


async def test_multi_attributes_are_kept_per_dataset_id(api: Api) -> None:
    entity_id = new_id()
    entity = {
        "id": entity_id,
        "type": "Thing",
        "level": [
            {"type": "Property", "value": 1.0},
            {"type": "Property", "value": 2.0, "datasetId": "urn:ngsi-ld:Dataset:radar"},
        ],
    }
    assert (await api.create(entity)).status == 201
    body = await api.get_json(entity_id)
    assert sorted(i["value"] for i in body["level"]) == [1.0, 2.0]
    only = await api.get_json(entity_id, params={"datasetId": "urn:ngsi-ld:Dataset:radar"})
    assert only["level"]["value"] == 2.0


async def test_sys_attrs_adds_created_and_modified_at_to_entity_and_attributes(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    body = await api.get_json(entity_id, params={"options": "sysAttrs"})
    assert body["createdAt"].endswith("Z")
    assert body["modifiedAt"] >= body["createdAt"]
    assert "createdAt" in body["currentLevel"]
    assert "modifiedAt" in body["currentLevel"]
    plain = await api.get_json(entity_id)
    assert "createdAt" not in plain
    assert "createdAt" not in plain["currentLevel"]


async def test_key_values_and_concise_representations(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    simplified = await api.get_json(entity_id, params={"options": "keyValues"})
    assert simplified["currentLevel"] == 0.77
    assert simplified["refDevice"] == "urn:ngsi-ld:Device:gauge-1"
    assert simplified["location"] == {"type": "Point", "coordinates": [134.0631, 34.3335]}
    assert simplified == await api.get_json(entity_id, params={"format": "simplified"})
    concise = await api.get_json(entity_id, params={"format": "concise"})
    assert concise["currentLevel"] == {
        "value": 0.77,
        "unitCode": "MTR",
        "observedAt": "2026-11-22T01:00:00Z",
    }
    assert concise["refDevice"] == {"object": "urn:ngsi-ld:Device:gauge-1"}


async def test_conflicting_representations_are_rejected(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    response = await api.get(entity_id, params={"options": "keyValues,concise"})
    await problem(response, 400, "InvalidRequest")


async def test_pick_omit_and_attrs_select_members(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    picked = await api.get_json(entity_id, params={"pick": "id,currentLevel"})
    assert set(picked) == {"id", "currentLevel"}
    omitted = await api.get_json(entity_id, params={"omit": "currentLevel,name"})
    assert "currentLevel" not in omitted
    assert "alertLevel" in omitted
    attrs = await api.get_json(entity_id, params={"attrs": "alertLevel"})
    assert set(attrs) == {"id", "type", "alertLevel"}
    await problem(await api.get(entity_id, params={"pick": "id", "omit": "name"}), 400, "BadRequestData")


async def test_lang_turns_a_language_property_into_a_property_in_that_language(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    body = await api.get_json(entity_id, params={"lang": "en"})
    assert body["name"] == {"type": "Property", "value": "Kasuga river", "lang": "en"}
    simplified = await api.get_json(entity_id, params={"lang": "ja", "options": "keyValues"})
    assert simplified["name"] == "春日川"


async def test_geojson_representation_of_one_entity(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    response = await api.get(entity_id, headers={"Accept": "application/geo+json"})
    assert response.status == 200
    assert response.content_type == "application/geo+json"
    feature = await response.json(content_type=None)
    assert feature["type"] == "Feature"
    assert feature["geometry"] == {"type": "Point", "coordinates": [134.0631, 34.3335]}
    assert feature["properties"]["type"] == "FloodMonitoring"


async def test_scope_is_stored_and_returned(api: Api) -> None:
    entity_id = new_id()
    entity = {**gauge(entity_id), "scope": ["/Japan/Kagawa/Takamatsu", "/River/Kasuga"]}
    await api.create(entity)
    body = await api.get_json(entity_id)
    assert body["scope"] == ["/Japan/Kagawa/Takamatsu", "/River/Kasuga"]
    await problem(await api.create({**gauge(new_id()), "scope": "no-slash"}), 400, "BadRequestData")


async def test_replace_entity_keeps_created_at_and_drops_attributes_not_given(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    before = await api.get_json(entity_id, params={"options": "sysAttrs"})
    replacement = {"id": entity_id, "type": "FloodMonitoring", "currentLevel": 1.9}
    response = await api.request("PUT", f"/ngsi-ld/v1/entities/{entity_id}", replacement)
    assert response.status == 204, await response.text()
    after = await api.get_json(entity_id, params={"options": "sysAttrs"})
    assert after["createdAt"] == before["createdAt"]
    assert after["currentLevel"]["value"] == 1.9
    assert "alertLevel" not in after
    assert "location" not in after


async def test_replace_entity_with_another_id_in_the_body_is_rejected(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    response = await api.request("PUT", f"/ngsi-ld/v1/entities/{entity_id}", gauge(new_id()))
    await problem(response, 400, "BadRequestData")


async def test_replace_of_a_missing_entity_is_404(api: Api) -> None:
    await api.create(gauge(new_id()))
    entity_id = new_id()
    response = await api.request("PUT", f"/ngsi-ld/v1/entities/{entity_id}", gauge(entity_id))
    await problem(response, 404, "ResourceNotFound")


async def test_merge_entity_patches_members_and_null_deletes(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    patch = {
        "currentLevel": {"type": "Property", "value": 1.6, "observedAt": "2026-11-22T02:00:00+09:00"},
        "alertLevel": NULL,
        "status": {"type": "Property", "value": "rising"},
        "name": {"type": "LanguageProperty", "languageMap": {"ja": "春日川（上流）"}},
    }
    response = await api.request("PATCH", f"/ngsi-ld/v1/entities/{entity_id}", patch)
    assert response.status == 204, await response.text()
    body = await api.get_json(entity_id)
    assert body["currentLevel"] == {
        "type": "Property",
        "value": 1.6,
        "unitCode": "MTR",
        "observedAt": "2026-11-21T17:00:00Z",
    }
    assert "alertLevel" not in body
    assert body["status"]["value"] == "rising"
    assert body["location"]["type"] == "GeoProperty"


async def test_merge_entity_merges_json_object_values_per_rfc_7396(api: Api) -> None:
    entity_id = new_id()
    entity = {
        "id": entity_id,
        "type": "Thing",
        "cfg": {"type": "Property", "value": {"a": 1, "b": {"c": 2, "d": 3}}},
    }
    await api.create(entity)
    patch = {"cfg": {"type": "Property", "value": {"b": {"c": NULL, "e": 5}, "f": [1]}}}
    response = await api.request(
        "PATCH", f"/ngsi-ld/v1/entities/{entity_id}", patch, content_type="application/merge-patch+json"
    )
    assert response.status == 204, await response.text()
    body = await api.get_json(entity_id)
    assert body["cfg"]["value"] == {"a": 1, "b": {"d": 3, "e": 5}, "f": [1]}


async def test_merge_entity_observed_at_parameter_fills_observed_at(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    response = await api.request(
        "PATCH",
        f"/ngsi-ld/v1/entities/{entity_id}",
        {"currentLevel": 1.1},
        params={"observedAt": "2026-11-22T03:00:00Z"},
    )
    assert response.status == 204
    body = await api.get_json(entity_id)
    assert body["currentLevel"]["observedAt"] == "2026-11-22T03:00:00Z"
    assert body["currentLevel"]["value"] == 1.1


async def test_merge_of_a_missing_entity_is_404(api: Api) -> None:
    await api.create(gauge(new_id()))
    response = await api.request("PATCH", f"/ngsi-ld/v1/entities/{new_id()}", {"x": 1})
    await problem(response, 404, "ResourceNotFound")


async def test_delete_entity_returns_204_then_404(api: Api) -> None:
    entity_id = new_id()
    await api.create(gauge(entity_id))
    assert (await api.request("DELETE", f"/ngsi-ld/v1/entities/{entity_id}")).status == 204
    await problem(await api.get(entity_id), 404, "ResourceNotFound")
    await problem(await api.request("DELETE", f"/ngsi-ld/v1/entities/{entity_id}"), 404, "ResourceNotFound")


async def test_the_reference_entities_of_the_three_services_are_accepted(api: Api) -> None:
    for name in (
        "FloodMonitoring_kasuga-001.jsonld",
        "WaterObserved_kasuga-001.jsonld",
        "Vehicle_plow-017.jsonld",
        "Device_ble-tag.jsonld",
        "DeviceMeasurement_ble-sighting.jsonld",
    ):
        entity = fixture_json(name)
        response = await api.create(entity)
        assert response.status == 201, (name, await response.text())
        context = entity["@context"]
        body = await api.get_json(
            entity["id"],
            headers={"Link": f'<{context[0]}>; rel="http://www.w3.org/ns/json-ld#context"'},
        )
        expected = {k for k in entity if k != "@context"}
        assert set(body) == expected, name


SHORTEST_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z$")


async def test_date_times_are_written_in_their_shortest_iso_8601_form(api: Api) -> None:
    """Clause 4.6.3 (DateTime in ISO 8601, UTC) as annex C's examples write it: whole seconds carry
    no '.000' (issue 13 item 14); an offset time is stored in UTC."""
    entity_id = new_id()
    entity = gauge(entity_id)
    entity["currentLevel"]["observedAt"] = "2026-11-22T10:00:00.000+09:00"
    entity["alertLevel"]["observedAt"] = "2026-11-22T01:00:00.250Z"
    assert (await api.create(entity)).status == 201
    body = await api.get_json(entity_id, params={"options": "sysAttrs"})
    assert body["currentLevel"]["observedAt"] == "2026-11-22T01:00:00Z"
    assert body["alertLevel"]["observedAt"] == "2026-11-22T01:00:00.250Z"
    for stamp in (body["createdAt"], body["modifiedAt"], body["currentLevel"]["createdAt"]):
        assert SHORTEST_TIME.match(stamp), stamp
        assert not stamp.endswith((".000Z", "000000Z")), stamp
