"""pick / omit / attrs: their syntax, their combinations and where they apply (clause 4.21 of V1.9.1,
GET /entities/{id} 6.5.3.1, GET /entities 6.4.3.2, temporal retrieval and query 6.19.3.1, 6.18.3.2);
issue 13 item 3."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, new_id, problem
from tests.integration.helpers import body_of

ENTITIES = "/ngsi-ld/v1/entities"
TEMPORAL = "/ngsi-ld/v1/temporal/entities"


def plow(entity_id: str) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "Snowplow",
        "speed": {
            "type": "Property",
            "value": 32.5,
            "observedAt": "2026-11-22T05:00:00Z",
            "accuracy": {"type": "Property", "value": 0.5},
            "source": {"type": "Property", "value": "gps"},
        },
        "heading": {"type": "Property", "value": 90, "observedAt": "2026-11-22T05:00:00Z"},
        "plowDown": {"type": "Property", "value": True, "observedAt": "2026-11-22T05:00:00Z"},
    }


async def created(api: Api) -> str:
    entity_id = new_id("Snowplow")
    response = await api.create(plow(entity_id))
    assert response.status == 201, await response.text()
    return entity_id


@pytest.mark.parametrize(
    "params",
    [
        {"pick": "speed", "omit": "heading"},
        {"pick": "speed", "attrs": "heading"},
        {"pick": "speed{accuracy"},
        {"pick": "speed}"},
        {"pick": "speed,,heading"},
        {"omit": "{accuracy}"},
        {"omit": "speed{accuracy}{source}"},
        {"pick": ""},
    ],
)
async def test_a_malformed_or_conflicting_projection_answers_400(api: Api, params: dict[str, str]) -> None:
    """Clause 4.21: pick excludes omit and attrs; names and braces must be well formed."""
    entity_id = await created(api)
    await problem(await api.get(entity_id, params=params), 400, "BadRequestData")
    response = await api.request("GET", ENTITIES, params={"type": "Snowplow", **params})
    await problem(response, 400, "BadRequestData")
    response = await api.request("GET", f"{TEMPORAL}/{entity_id}", params=params)
    await problem(response, 400, "BadRequestData")


async def test_pick_and_omit_with_braces_select_sub_attributes(api: Api) -> None:
    """Clause 4.21: braces project the members of an attribute."""
    entity_id = await created(api)
    picked = await api.get_json(entity_id, params={"pick": "id,speed{accuracy}"})
    assert set(picked) == {"id", "speed"}
    assert "accuracy" in picked["speed"]
    assert "source" not in picked["speed"]
    assert picked["speed"]["value"] == 32.5
    omitted = await api.get_json(entity_id, params={"omit": "heading,speed{source}"})
    assert "heading" not in omitted
    assert "accuracy" in omitted["speed"]
    assert "source" not in omitted["speed"]


@pytest.mark.parametrize(
    "params", [{"attrs": "ghost"}, {"pick": "ghost"}, {"omit": "id,type,speed,heading,plowDown"}]
)
async def test_a_retrieval_whose_selection_leaves_nothing_answers_404(
    api: Api, params: dict[str, str]
) -> None:
    """Clause 5.7.1: an entity with none of the attributes asked for is not found."""
    entity_id = await created(api)
    await problem(await api.get(entity_id, params=params), 404, "ResourceNotFound")


async def test_a_retrieval_keeping_something_answers_200(api: Api) -> None:
    """Clause 5.7.1: attrs naming one existing attribute, or pick=id, keep the entity."""
    entity_id = await created(api)
    assert set(await api.get_json(entity_id, params={"attrs": "speed,ghost"})) == {"id", "type", "speed"}
    assert await api.get_json(entity_id, params={"pick": "id"}) == {"id": entity_id}


async def test_pick_and_omit_apply_on_temporal_retrieval_and_query(api: Api) -> None:
    """Clauses 6.19.3.1 and 6.18.3.2 with 4.21: the temporal representation is projected too."""
    entity_id = await created(api)
    response = await api.request(
        "PATCH",
        f"{ENTITIES}/{entity_id}/attrs",
        {"speed": {"value": 40, "observedAt": "2026-11-22T05:10:00Z"}},
    )
    assert response.status == 204, await response.text()
    path = f"{TEMPORAL}/{entity_id}"
    picked = await body_of(await api.request("GET", path, params={"pick": "id,speed"}))
    assert set(picked) == {"id", "speed"}
    assert [i["value"] for i in picked["speed"]] == [32.5, 40]
    omitted = await body_of(await api.request("GET", path, params={"omit": "speed,plowDown"}))
    assert "speed" not in omitted
    assert "plowDown" not in omitted
    assert "heading" in omitted
    response = await api.request("GET", TEMPORAL, params={"type": "Snowplow", "pick": "id,heading"})
    assert response.status == 200, await response.text()
    assert [set(item) for item in await body_of(response)] == [{"id", "heading"}]
    response = await api.request("GET", path, params={"pick": "ghost"})
    await problem(response, 404, "ResourceNotFound")


async def test_pick_and_omit_in_a_posted_query_object(api: Api) -> None:
    """Table 5.2.23-1: a Query object's pick and omit (arrays of projection strings) apply as in the URL."""
    entity_id = await created(api)
    post = "/ngsi-ld/v1/entityOperations/query"
    query: dict[str, Any] = {
        "type": "Query",
        "entities": [{"type": "Snowplow"}],
        "pick": ["id", "speed{source}"],
    }
    [picked] = await body_of(await api.request("POST", post, query))
    assert set(picked) == {"id", "speed"}
    assert "source" in picked["speed"]
    assert "accuracy" not in picked["speed"]
    query = {"type": "Query", "entities": [{"type": "Snowplow"}], "omit": ["heading"]}
    [omitted] = await body_of(await api.request("POST", post, query))
    assert "heading" not in omitted
    assert omitted["id"] == entity_id
    query = {"type": "Query", "entities": [{"type": "Snowplow"}], "pick": []}
    await problem(await api.request("POST", post, query), 400, "BadRequestData")
    temporal = {
        "type": "Query",
        "entities": [{"type": "Snowplow"}],
        "pick": ["id", "heading"],
        "temporalQ": {},
    }
    response = await api.request("POST", "/ngsi-ld/v1/temporal/entityOperations/query", temporal)
    assert [set(item) for item in await body_of(response)] == [{"id", "heading"}]
