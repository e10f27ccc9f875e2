"""Query Entities over HTTP (clause 5.7.2): selection, paging, counting, representations, POST query."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import Api, new_id, problem

ENTITIES = "/ngsi-ld/v1/entities"
TAKAMATSU = [134.0466, 34.3401]


def gauge(
    entity_id: str, level: float, lon: float = 134.05, lat: float = 34.34, **extra: Any
) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "FloodMonitoring",
        "currentLevel": {"type": "Property", "value": level, "unitCode": "MTR"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        **extra,
    }


def plow(entity_id: str, speed: float) -> dict[str, Any]:
    return {"id": entity_id, "type": "Vehicle", "speed": {"type": "Property", "value": speed}}


async def load(api: Api, *entities: dict[str, Any]) -> None:
    response = await api.request("POST", "/ngsi-ld/v1/entityOperations/create", list(entities))
    assert response.status == 201, await response.text()


async def ids_of(api: Api, params: dict[str, str], **kwargs: Any) -> list[str]:
    response = await api.request("GET", ENTITIES, params=params, **kwargs)
    assert response.status == 200, await response.text()
    return [e["id"] for e in await response.json(content_type=None)]


async def test_query_by_type_returns_only_that_type_in_id_order(api: Api) -> None:
    gauges = sorted(new_id("FloodMonitoring") for _ in range(3))
    await load(api, *(gauge(g, 1.0) for g in gauges), plow(new_id("Vehicle"), 20))
    assert await ids_of(api, {"type": "FloodMonitoring"}) == gauges


async def test_type_expressions_combine_with_or_and_and(api: Api) -> None:
    both = new_id()
    g, v = new_id(), new_id()
    await load(api, gauge(g, 1), plow(v, 1), {"id": both, "type": ["FloodMonitoring", "Vehicle"], "x": 1})
    assert set(await ids_of(api, {"type": "FloodMonitoring,Vehicle"})) == {g, v, both}
    assert set(await ids_of(api, {"type": "FloodMonitoring|Vehicle"})) == {g, v, both}
    assert await ids_of(api, {"type": "FloodMonitoring;Vehicle"}) == [both]
    assert set(await ids_of(api, {"type": "(FloodMonitoring;Vehicle)|Vehicle"})) == {v, both}
    await problem(
        await api.request("GET", ENTITIES, params={"type": "(FloodMonitoring"}), 400, "BadRequestData"
    )


async def test_query_by_id_list_and_id_pattern(api: Api) -> None:
    a, b = "urn:ngsi-ld:FloodMonitoring:kasuga-001", "urn:ngsi-ld:FloodMonitoring:shin-002"
    await load(api, gauge(a, 1), gauge(b, 2))
    assert await ids_of(api, {"id": f"{a},{b}", "type": "FloodMonitoring"}) == [a, b]
    assert await ids_of(api, {"idPattern": ".*kasuga.*"}) == [a]
    await problem(
        await api.request("GET", ENTITIES, params={"idPattern": "(unclosed"}), 400, "BadRequestData"
    )


async def test_attrs_selects_entities_that_have_one_of_them_and_projects(api: Api) -> None:
    g, v = new_id(), new_id()
    await load(api, gauge(g, 1), plow(v, 3))
    response = await api.request("GET", ENTITIES, params={"attrs": "speed"})
    body = await response.json()
    assert [e["id"] for e in body] == [v]
    assert set(body[0]) == {"id", "type", "speed"}


async def test_a_query_without_any_restriction_is_rejected(api: Api) -> None:
    await load(api, plow(new_id(), 1))
    await problem(await api.request("GET", ENTITIES), 400, "BadRequestData")


async def test_pages_follow_link_next_and_prev_and_count_gives_the_total(api: Api) -> None:
    ids = sorted(new_id() for _ in range(7))
    await load(api, *(plow(i, n) for n, i in enumerate(ids)))
    response = await api.request("GET", ENTITIES, params={"type": "Vehicle", "limit": "3", "count": "true"})
    assert response.headers["NGSILD-Results-Count"] == "7"
    assert [e["id"] for e in await response.json()] == ids[:3]
    seen: list[str] = []
    url: str | None = f"{ENTITIES}?type=Vehicle&limit=3"
    while url is not None:
        page = await api.request("GET", url)
        seen += [e["id"] for e in await page.json()]
        links = page.headers.get("Link", "")
        found = re.search(r'<([^>]*)>; rel="next"', links)
        url = found.group(1) if found else None
        if url is not None:
            assert 'rel="prev"' in links or "offset=3" in url
    assert seen == ids
    last = await api.request("GET", ENTITIES, params={"type": "Vehicle", "limit": "3", "offset": "6"})
    assert 'rel="prev"' in last.headers["Link"]
    assert 'rel="next"' not in last.headers["Link"]


async def test_limit_zero_with_count_returns_only_the_count(api: Api) -> None:
    await load(api, plow(new_id(), 1), plow(new_id(), 2))
    response = await api.request("GET", ENTITIES, params={"type": "Vehicle", "limit": "0", "count": "true"})
    assert response.status == 200
    assert await response.json() == []
    assert response.headers["NGSILD-Results-Count"] == "2"
    await problem(
        await api.request("GET", ENTITIES, params={"type": "Vehicle", "limit": "0"}), 400, "BadRequestData"
    )


@pytest.mark.parametrize("limit", ["-1", "abc", "1.5"])
async def test_invalid_limits_are_rejected(api: Api, limit: str) -> None:
    await load(api, plow(new_id(), 1))
    await problem(
        await api.request("GET", ENTITIES, params={"type": "Vehicle", "limit": limit}), 400, "BadRequestData"
    )


async def test_a_limit_over_the_maximum_page_is_too_many_results(api: Api) -> None:
    await load(api, plow(new_id(), 1))
    response = await api.request("GET", ENTITIES, params={"type": "Vehicle", "limit": "100000"})
    await problem(response, 403, "TooManyResults")


async def test_q_geo_and_scope_queries_are_wired(api: Api) -> None:
    low, high, far = new_id(), new_id(), new_id()
    await load(
        api,
        gauge(low, 0.5, scope="/Kagawa/Takamatsu"),
        gauge(high, 1.8, scope="/Kagawa/Takamatsu"),
        gauge(far, 2.5, lon=135.5, lat=34.7, scope="/Osaka"),
    )
    assert set(await ids_of(api, {"type": "FloodMonitoring", "q": "currentLevel>1.4"})) == {high, far}
    near = {
        "type": "FloodMonitoring",
        "georel": "near;maxDistance==5000",
        "geometry": "Point",
        "coordinates": "[134.05,34.34]",
    }
    assert set(await ids_of(api, near)) == {low, high}
    assert set(await ids_of(api, {"type": "FloodMonitoring", "scopeQ": "/Kagawa/#"})) == {low, high}
    combined = {**near, "q": "currentLevel>1.4", "scopeQ": "/Kagawa/#"}
    assert await ids_of(api, combined) == [high]


async def test_bad_q_is_400(api: Api) -> None:
    await load(api, plow(new_id(), 1))
    await problem(
        await api.request("GET", ENTITIES, params={"type": "Vehicle", "q": "speed>>"}), 400, "BadRequestData"
    )


async def test_geojson_feature_collection_of_a_query(api: Api) -> None:
    g = new_id()
    await load(api, gauge(g, 1.0))
    response = await api.request(
        "GET", ENTITIES, params={"type": "FloodMonitoring"}, headers={"Accept": "application/geo+json"}
    )
    assert response.status == 200
    body = await response.json(content_type=None)
    assert body["type"] == "FeatureCollection"
    assert body["features"][0]["geometry"] == {"type": "Point", "coordinates": [134.05, 34.34]}


async def test_key_values_of_a_query(api: Api) -> None:
    g = new_id()
    await load(api, gauge(g, 1.25))
    response = await api.request("GET", ENTITIES, params={"type": "FloodMonitoring", "options": "keyValues"})
    [entity] = await response.json()
    assert entity["currentLevel"] == 1.25


async def test_post_query_selects_like_get(api: Api) -> None:
    low, high, v = new_id(), new_id(), new_id()
    await load(api, gauge(low, 0.2), gauge(high, 3.0), plow(v, 9))
    query = {
        "type": "Query",
        "entities": [{"type": "FloodMonitoring"}, {"id": v}],
        "q": "currentLevel>1|speed>5",
        "attrs": ["currentLevel", "speed"],
    }
    response = await api.request(
        "POST", "/ngsi-ld/v1/entityOperations/query", query, params={"count": "true"}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert {e["id"] for e in body} == {high, v}
    assert response.headers["NGSILD-Results-Count"] == "2"
    geo_query = {
        "type": "Query",
        "entities": [{"type": "FloodMonitoring"}],
        "geoQ": {"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": [134.05, 34.34]},
    }
    response = await api.request("POST", "/ngsi-ld/v1/entityOperations/query", geo_query)
    assert {e["id"] for e in await response.json()} == {low, high}


async def test_post_query_rejects_a_body_that_is_not_a_query(api: Api) -> None:
    await load(api, plow(new_id(), 1))
    response = await api.request("POST", "/ngsi-ld/v1/entityOperations/query", {"type": "Nope"})
    await problem(response, 400, "BadRequestData")


async def test_types_lists_the_tenants_entity_types_with_details(api: Api) -> None:
    await load(api, gauge(new_id(), 1), gauge(new_id(), 2), plow(new_id(), 3))
    response = await api.request("GET", "/ngsi-ld/v1/types")
    body = await response.json()
    assert body["type"] == "EntityTypeList"
    assert body["typeList"] == ["FloodMonitoring", "Vehicle"]
    details = await (await api.request("GET", "/ngsi-ld/v1/types", params={"details": "true"})).json()
    by_name = {d["typeName"]: d for d in details}
    assert sorted(by_name["FloodMonitoring"]["attributeNames"]) == ["currentLevel", "location"]
    info = await (await api.request("GET", "/ngsi-ld/v1/types/FloodMonitoring")).json()
    assert info["entityCount"] == 2
    kinds = {a["attributeName"]: a["attributeTypes"] for a in info["attributeDetails"]}
    assert kinds == {"currentLevel": ["Property"], "location": ["GeoProperty"]}
    await problem(await api.request("GET", "/ngsi-ld/v1/types/Nothing"), 404, "ResourceNotFound")


async def test_attributes_lists_names_counts_kinds_and_types(api: Api) -> None:
    await load(api, gauge(new_id(), 1), plow(new_id(), 3), plow(new_id(), 4))
    body = await (await api.request("GET", "/ngsi-ld/v1/attributes")).json()
    assert body["attributeList"] == ["currentLevel", "location", "speed"]
    speed = await (await api.request("GET", "/ngsi-ld/v1/attributes/speed")).json()
    assert speed["attributeCount"] == 2
    assert speed["attributeTypes"] == ["Property"]
    assert speed["typeNames"] == ["Vehicle"]
    await problem(await api.request("GET", "/ngsi-ld/v1/attributes/nothing"), 404, "ResourceNotFound")


async def test_a_moved_entity_is_found_at_its_new_place_and_not_at_the_old(api: Api) -> None:
    plow_id = new_id("Vehicle")
    await load(
        api,
        {
            **plow(plow_id, 10),
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.0, 34.3]}},
        },
    )
    speed_only = await api.request("PATCH", f"{ENTITIES}/{plow_id}/attrs", {"speed": 12})
    assert speed_only.status == 204
    moved = {"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.2, 34.2]}}}
    assert (await api.request("PATCH", f"{ENTITIES}/{plow_id}/attrs", moved)).status == 204

    def near(lon: float, lat: float) -> dict[str, str]:
        return {
            "type": "Vehicle",
            "georel": "near;maxDistance==100",
            "geometry": "Point",
            "coordinates": f"[{lon},{lat}]",
        }

    assert await ids_of(api, near(134.2, 34.2)) == [plow_id]
    assert await ids_of(api, near(134.0, 34.3)) == []
    other = {
        "type": "Vehicle",
        "georel": "intersects",
        "geometry": "Point",
        "coordinates": "[134.2,34.2]",
        "geoproperty": "location",
    }
    assert await ids_of(api, other) == [plow_id]
