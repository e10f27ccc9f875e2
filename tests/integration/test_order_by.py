"""orderBy on Query Entities (GET /entities 6.4.3.2 and POST /entityOperations/query 6.23.3.1).

The NGSI-LD Entity Ordering Language of clause 4.23 (V1.9.1).
Terms name, name;asc, name;desc, dist-asc/dist-desc with orderFrom; the id breaks ties.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, new_id, problem
from tests.integration.helpers import body_of, thing

ENTITIES = "/ngsi-ld/v1/entities"


async def gauges(api: Api, kind: str) -> dict[float | None, str]:
    """Four entities of ``kind`` with levels 2, 10, 1 and none; their ids by level."""
    ids: dict[float | None, str] = {}
    for value in (2.0, 10.0, 1.0, None):
        entity_id = new_id(kind)
        entity = thing(entity_id, kind) if value is None else thing(entity_id, kind, level=value)
        assert (await api.create(entity)).status == 201
        ids[value] = entity_id
    return ids


async def ordered(api: Api, kind: str, order: str, **extra: str) -> list[str]:
    response = await api.request("GET", ENTITIES, params={"type": kind, "orderBy": order, **extra})
    body = await body_of(response)
    assert response.status == 200, body
    return [item["id"] for item in body]


async def test_order_by_an_attribute_ascending_and_descending(api: Api) -> None:
    """Numbers in numeric order (10 after 2), the entity without the attribute last either way."""
    ids = await gauges(api, "Gauge")
    assert await ordered(api, "Gauge", "level") == [ids[1.0], ids[2.0], ids[10.0], ids[None]]
    assert await ordered(api, "Gauge", "level;asc") == [ids[1.0], ids[2.0], ids[10.0], ids[None]]
    assert await ordered(api, "Gauge", "level;desc") == [ids[10.0], ids[2.0], ids[1.0], ids[None]]
    assert await ordered(api, "Gauge", "!level") == [ids[10.0], ids[2.0], ids[1.0], ids[None]]


async def test_order_by_pages_without_overlap(api: Api) -> None:
    """Paging (6.3.10) over an ordered query visits each entity once."""
    ids = await gauges(api, "Gauge")
    first = await ordered(api, "Gauge", "level;desc", limit="2")
    second = await ordered(api, "Gauge", "level;desc", limit="2", offset="2")
    assert first + second == [ids[10.0], ids[2.0], ids[1.0], ids[None]]


async def test_order_by_id_and_modified_at(api: Api) -> None:
    ids = await gauges(api, "Gauge")
    assert await ordered(api, "Gauge", "id;desc") == sorted(ids.values(), reverse=True)
    assert await ordered(api, "Gauge", "modifiedAt") == list(ids.values())


async def test_order_by_in_a_posted_query(api: Api) -> None:
    """POST /entityOperations/query takes orderBy in the Query object."""
    ids = await gauges(api, "Gauge")
    query: dict[str, Any] = {"type": "Query", "entities": [{"type": "Gauge"}], "orderBy": "level;desc"}
    response = await api.request("POST", "/ngsi-ld/v1/entityOperations/query", query)
    body = await body_of(response)
    assert response.status == 200, body
    assert [item["id"] for item in body] == [ids[10.0], ids[2.0], ids[1.0], ids[None]]


@pytest.mark.parametrize("order", ["level;up", "!level;desc", "", "le vel", "a,b,c,d,e", "id[x]", "a]b"])
async def test_a_malformed_order_by_answers_400(api: Api, order: str) -> None:
    await gauges(api, "Gauge")
    response = await api.request("GET", ENTITIES, params={"type": "Gauge", "orderBy": order})
    await problem(response, 400, "BadRequestData")


async def test_order_by_on_a_temporal_query_uses_the_newest_value_in_the_window(api: Api) -> None:
    """GET /temporal/entities (6.18.3.2) takes orderBy too: an attribute orders by its newest value."""
    ids = await gauges(api, "Gauge")
    response = await api.request(
        "PATCH", f"{ENTITIES}/{ids[1.0]}/attrs", {"level": {"type": "Property", "value": 20.0}}
    )
    assert response.status == 204, await response.text()
    response = await api.request(
        "GET", "/ngsi-ld/v1/temporal/entities", params={"type": "Gauge", "orderBy": "level;desc"}
    )
    body = await body_of(response)
    assert response.status == 200, body
    # The gauge without a level has no history, so no temporal evolution to list.
    assert [item["id"] for item in body] == [ids[1.0], ids[10.0], ids[2.0]]
    response = await api.request(
        "GET", "/ngsi-ld/v1/temporal/entities", params={"type": "Gauge", "orderBy": "id;desc"}
    )
    with_history = [i for v, i in ids.items() if v is not None]
    assert [item["id"] for item in await body_of(response)] == sorted(with_history, reverse=True)


async def test_mixed_types_compare_as_clause_4_23_2_lists_them(api: Api) -> None:
    """Clause 4.23.2: numbers before strings before objects before arrays before booleans; then missing."""
    values: list[Any] = [True, [1], {"k": 1}, "b", "A", 3, None]
    ids: list[str] = []
    for value in values:
        entity_id = new_id("Mixed")
        entity = (
            thing(entity_id, "Mixed")
            if value is None
            else thing(entity_id, "Mixed", v={"type": "Property", "value": value})
        )
        assert (await api.create(entity)).status == 201
        ids.append(entity_id)
    number, string_b, string_a = ids[5], ids[3], ids[4]
    expected = [number, string_a, string_b, ids[2], ids[1], ids[0], ids[6]]
    assert await ordered(api, "Mixed", "v") == expected


async def test_order_by_a_path_into_the_value_and_a_metadata_member(api: Api) -> None:
    """Clause 4.23.3 examples 4 and 5: address[city] and name.observedAt."""
    early, late = new_id("Site"), new_id("Site")
    for entity_id, city, stamp in (
        (early, "Takamatsu", "2026-11-22T01:00:00Z"),
        (late, "Ayagawa", "2026-11-22T03:00:00Z"),
    ):
        entity = thing(
            entity_id,
            "Site",
            address={"type": "Property", "value": {"city": city}, "observedAt": stamp},
        )
        assert (await api.create(entity)).status == 201
    assert await ordered(api, "Site", "address[city]") == [late, early]
    assert await ordered(api, "Site", "address.observedAt;desc") == [late, early]


async def test_order_by_distance_from_order_from(api: Api) -> None:
    """Clause 4.23.3 examples 8 and 9: dist-asc / dist-desc from orderFrom, entities without it last."""
    ids = []
    for lon in (134.2, 134.05, 135.0):
        entity_id = new_id("Plow")
        location = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 34.34]}}
        assert (await api.create(thing(entity_id, "Plow", location=location))).status == 201
        ids.append(entity_id)
    nowhere = new_id("Plow")
    assert (await api.create(thing(nowhere, "Plow", speed=1))).status == 201
    origin = {"orderFrom": "[134.0466,34.3401]"}
    assert await ordered(api, "Plow", "location;dist-asc", **origin) == [ids[1], ids[0], ids[2], nowhere]
    assert await ordered(api, "Plow", "location;dist-desc", **origin) == [ids[2], ids[0], ids[1], nowhere]
    response = await api.request("GET", ENTITIES, params={"type": "Plow", "orderBy": "location;dist-asc"})
    await problem(response, 400, "BadRequestData")
