"""Temporal queries evaluated on the history (issue 13 item 7): q and geoQ over the instances of the
window (clause 5.7.4), the datasetId filter (4.5.5), and 206 pagination cutting per attribute
(6.3.10) while every entity of the page keeps its instances."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.config import Settings
from tests.conftest import Api, new_id
from tests.integration.helpers import body_of

TEMPORAL = "/ngsi-ld/v1/temporal/entities"


def at(minute: int) -> str:
    return f"2026-11-20T00:{minute:02d}:00Z"


async def provision(api: Api, entity: dict[str, Any]) -> None:
    response = await api.request("POST", TEMPORAL, entity)
    assert response.status == 201, await response.text()


def point(lon: float, minute: int) -> dict[str, Any]:
    return {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [lon, 34.34]},
        "observedAt": at(minute),
    }


async def ids(api: Api, **params: str) -> list[str]:
    response = await api.request("GET", TEMPORAL, params=params)
    body = await body_of(response)
    assert response.status == 200, body
    return [item["id"] for item in body]


async def test_q_finds_entities_created_only_through_the_temporal_api(api: Api) -> None:
    high, low = new_id("Gauge"), new_id("Gauge")
    for entity_id, values in ((high, (1.0, 3.5)), (low, (1.0, 1.2))):
        levels = [{"type": "Property", "value": v, "observedAt": at(10 * n)} for n, v in enumerate(values)]
        await provision(api, {"id": entity_id, "type": "Gauge", "level": levels})
    assert await ids(api, type="Gauge", q="level>3") == [high]
    assert sorted(await ids(api, type="Gauge", q="level<1.1")) == sorted([high, low])
    # Within a window that ends before the flood reading, the high gauge no longer matches.
    assert await ids(api, type="Gauge", q="level>3", timerel="before", timeAt=at(5)) == []


async def test_geo_q_matches_a_position_the_entity_had_in_the_window(api: Api) -> None:
    plow = new_id("Snowplow")
    await provision(api, {"id": plow, "type": "Snowplow", "location": [point(135.5, 0), point(134.05, 10)]})
    near = {"georel": "near;maxDistance==5000", "geometry": "Point", "coordinates": "[134.0466,34.3401]"}
    assert await ids(api, type="Snowplow", **near) == [plow]
    assert await ids(api, type="Snowplow", timerel="before", timeAt=at(5), **near) == []


async def test_the_dataset_id_parameter_keeps_only_those_instances(api: Api) -> None:
    gauge = new_id("Gauge")
    levels = [
        {"type": "Property", "value": 1.0, "observedAt": at(0)},
        {"type": "Property", "value": 2.0, "observedAt": at(0), "datasetId": "urn:ngsi-ld:Dataset:radar"},
    ]
    await provision(api, {"id": gauge, "type": "Gauge", "level": levels})
    path = f"{TEMPORAL}/{gauge}"
    radar = await body_of(await api.request("GET", path, params={"datasetId": "urn:ngsi-ld:Dataset:radar"}))
    assert [i["value"] for i in radar["level"]] == [2.0]
    default = await body_of(await api.request("GET", path, params={"datasetId": "@none"}))
    assert [i["value"] for i in default["level"]] == [1.0]


@pytest.fixture(scope="module")
async def small_pages(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    server = TestServer(
        create_app(settings.replace(temporal_max_instances=2, mqtt_ingest=False)), host="127.0.0.1"
    )
    async with TestClient(server) as test_client:
        yield test_client


async def test_a_cut_page_keeps_every_entity_and_cuts_each_attribute_at_the_limit(
    api: Api, small_pages: TestClient[Any, Any]
) -> None:
    """Clause 6.3.10: each attribute holds at most the limit; an entity whose instances all come
    after another's cut keeps them; Content-Range ends where every attribute is complete."""
    busy, late = new_id("Gauge"), new_id("Gauge")
    readings = [{"type": "Property", "value": float(n), "observedAt": at(n)} for n in range(4)]
    await provision(api, {"id": busy, "type": "Gauge", "level": readings})
    await provision(
        api, {"id": late, "type": "Gauge", "level": {"type": "Property", "value": 9.0, "observedAt": at(30)}}
    )
    response = await Api(small_pages, api.tenant).request("GET", TEMPORAL, params={"type": "Gauge"})
    body = await body_of(response)
    assert response.status == 206, body
    by_id = {item["id"]: [i["value"] for i in item["level"]] for item in body}
    assert by_id == {busy: [0.0, 1.0], late: [9.0]}
    assert response.headers["Content-Range"] == f"date-time {at(0)}-{at(1)}/*"
