"""Linked entity retrieval: join=inline|flat and joinLevel (clause 4.5.23 of V1.9.1) on Retrieve Entity
(6.5.3.1), Query Entities (6.4.3.2) and the POST query (6.23.3.1); depth bounded by NGSI_MAX_JOIN_LEVEL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, new_id, problem
from tests.integration.helpers import body_of

ENTITIES = "/ngsi-ld/v1/entities"


def rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


async def chain(api: Api) -> tuple[str, str, str]:
    """A gauge measured by a device installed at a site (gauge -> device -> site), and a link to nowhere."""
    gauge, device, site = new_id("Gauge"), new_id("Device"), new_id("Site")
    entities = [
        {"id": site, "type": "Site", "name": {"type": "Property", "value": "Kasuga bridge"}},
        {
            "id": device,
            "type": "Device",
            "battery": {"type": "Property", "value": 3.1},
            "installedAt": rel(site),
        },
        {
            "id": gauge,
            "type": "Gauge",
            "level": {"type": "Property", "value": 1.2},
            "refDevice": rel(device),
            "refGhost": rel("urn:ngsi-ld:Device:none"),
        },
    ]
    for entity in entities:
        response = await api.create(entity)
        assert response.status == 201, await response.text()
    return gauge, device, site


async def test_retrieve_with_join_inline_embeds_the_linked_entity(api: Api) -> None:
    gauge, device, _site = await chain(api)
    body = await api.get_json(gauge, params={"join": "inline"})
    linked = body["refDevice"]["entity"]
    assert linked["id"] == device
    assert linked["battery"]["value"] == 3.1
    assert "entity" not in linked["installedAt"]
    assert "entity" not in body["refGhost"]


async def test_join_level_two_follows_the_links_of_the_linked_entity(api: Api) -> None:
    gauge, _device, site = await chain(api)
    body = await api.get_json(gauge, params={"join": "inline", "joinLevel": "2"})
    assert body["refDevice"]["entity"]["installedAt"]["entity"]["id"] == site


async def test_join_inline_in_key_values_puts_the_entity_in_place_of_its_id(api: Api) -> None:
    gauge, device, _ = await chain(api)
    body = await api.get_json(gauge, params={"join": "inline", "options": "keyValues"})
    assert body["refDevice"]["id"] == device
    assert body["refDevice"]["battery"] == 3.1
    assert body["refGhost"] == "urn:ngsi-ld:Device:none"


async def test_retrieve_with_join_flat_answers_the_entity_and_its_linked_ones(api: Api) -> None:
    gauge, device, site = await chain(api)
    body = await api.get_json(gauge, params={"join": "flat", "joinLevel": "2"})
    assert [item["id"] for item in body] == [gauge, device, site]
    assert "entity" not in body[0]["refDevice"]


async def test_query_and_post_query_join_each_entity_of_the_page(api: Api) -> None:
    gauge, device, _ = await chain(api)
    response = await api.request("GET", ENTITIES, params={"type": "Gauge", "join": "inline"})
    [found] = await body_of(response)
    assert found["refDevice"]["entity"]["id"] == device
    query = {"type": "Query", "entities": [{"type": "Gauge"}], "join": "flat"}
    response = await api.request("POST", "/ngsi-ld/v1/entityOperations/query", query)
    assert [item["id"] for item in await body_of(response)] == [gauge, device]


async def test_a_cycle_is_not_followed_back(api: Api) -> None:
    a, b = new_id("Node"), new_id("Node")
    assert (await api.create({"id": a, "type": "Node", "next": rel(b)})).status == 201
    assert (await api.create({"id": b, "type": "Node", "next": rel(a)})).status == 201
    body = await api.get_json(a, params={"join": "inline", "joinLevel": "3"})
    assert body["next"]["entity"]["id"] == b
    assert "entity" not in body["next"]["entity"]["next"]
    flat = await api.get_json(a, params={"join": "flat", "joinLevel": "3"})
    assert [item["id"] for item in flat] == [a, b]


@pytest.mark.parametrize(
    "params",
    [
        {"join": "deep"},
        {"join": "inline", "joinLevel": "0"},
        {"join": "inline", "joinLevel": "4"},
        {"joinLevel": "1"},
    ],
)
async def test_a_wrong_join_answers_400(api: Api, params: dict[str, str]) -> None:
    """joinLevel above NGSI_MAX_JOIN_LEVEL (3 by default) is refused."""
    gauge, _, _ = await chain(api)
    await problem(await api.get(gauge, params=params), 400, "BadRequestData")
    response = await api.request("GET", ENTITIES, params={"type": "Gauge", **params})
    await problem(response, 400, "BadRequestData")
