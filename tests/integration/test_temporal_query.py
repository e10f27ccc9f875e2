"""GET /temporal/entities[/{id}] and POST /temporal/entityOperations/query: each parameter (clause 4.11, 6.18-6.24)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.config import Settings
from tests.conftest import Api, new_id, problem
from tests.integration.helpers import body_of

TEMPORAL = "/ngsi-ld/v1/temporal/entities"
DAY = "2026-11-20"
# A gauge read four times, ten minutes apart: 1, 2, 4, 3.
READINGS = [(0, 1.0), (10, 2.0), (20, 4.0), (30, 3.0)]


def at(minute: int) -> str:
    return f"{DAY}T{minute // 60:02d}:{minute % 60:02d}:00Z"


def level(value: float, minute: int) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at(minute)}


async def read_gauge(
    api: Api, kind: str = "FloodMonitoring", readings: list[tuple[int, float]] = READINGS
) -> str:
    """A gauge created with the first reading and patched with the others; returns its id."""
    gauge = new_id(kind)
    (first_minute, first), *rest = readings
    entity = {"id": gauge, "type": kind, "currentLevel": level(first, first_minute)}
    assert (await api.create(entity)).status == 201
    for minute, value in rest:
        response = await api.request(
            "PATCH", f"/ngsi-ld/v1/entities/{gauge}/attrs", {"currentLevel": level(value, minute)}
        )
        assert response.status == 204, await response.text()
    return gauge


async def get(api: Api, path: str, status: int = 200, **params: str) -> Any:
    response = await api.request("GET", path, params=params)
    body = await body_of(response)
    assert response.status == status, body
    return body


def series(body: dict[str, Any], attr: str = "currentLevel") -> list[float]:
    return [instance["value"] for instance in body.get(attr, [])]


async def test_retrieve_lists_every_instance_in_time_order_with_its_instance_id(api: Api) -> None:
    gauge = await read_gauge(api)
    body = await get(api, f"{TEMPORAL}/{gauge}")
    assert body["id"] == gauge
    assert body["type"] == "FloodMonitoring"
    assert series(body) == [1.0, 2.0, 4.0, 3.0]
    assert [i["observedAt"] for i in body["currentLevel"]] == [at(m) for m, _ in READINGS]
    ids = [i["instanceId"] for i in body["currentLevel"]]
    assert len(set(ids)) == 4
    assert all(i.startswith("urn:ngsi-ld:") for i in ids)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"timerel": "before", "timeAt": at(20)}, [1.0, 2.0]),
        ({"timerel": "after", "timeAt": at(10)}, [4.0, 3.0]),
        ({"timerel": "between", "timeAt": at(10), "endTimeAt": at(30)}, [2.0, 4.0]),
        ({"lastN": "2"}, [4.0, 3.0]),
        ({"lastN": "1", "timerel": "before", "timeAt": at(30)}, [4.0]),
        ({"lastN": "10"}, [1.0, 2.0, 4.0, 3.0]),
        ({"timerel": "after", "timeAt": at(30)}, []),
    ],
)
async def test_timerel_time_at_end_time_at_and_last_n_select_the_instances(
    api: Api, params: dict[str, str], expected: list[float]
) -> None:
    gauge = await read_gauge(api)
    assert series(await get(api, f"{TEMPORAL}/{gauge}", 200, **params)) == expected


async def test_timeproperty_modified_at_selects_by_write_time_and_sys_attrs_shows_it(api: Api) -> None:
    gauge = await read_gauge(api)
    body = await get(api, f"{TEMPORAL}/{gauge}", options="sysAttrs")
    written = [i["modifiedAt"] for i in body["currentLevel"]]
    assert written == sorted(written)
    later = await get(
        api, f"{TEMPORAL}/{gauge}", timeproperty="modifiedAt", timerel="after", timeAt=written[1]
    )
    assert series(later) == [4.0, 3.0]
    none = await get(api, f"{TEMPORAL}/{gauge}", timeproperty="createdAt", timerel="before", timeAt=at(0))
    assert "currentLevel" not in none


async def test_attrs_picks_attributes_and_temporal_values_gives_value_time_pairs(api: Api) -> None:
    gauge = await read_gauge(api)
    patch = {"alertLevel": {"type": "Property", "value": 1.4}}
    assert (await api.request("POST", f"/ngsi-ld/v1/entities/{gauge}/attrs", patch)).status == 204
    body = await get(api, f"{TEMPORAL}/{gauge}", attrs="currentLevel", options="temporalValues")
    assert "alertLevel" not in body
    assert body["currentLevel"] == {
        "type": "Property",
        "values": [[v, at(m)] for m, v in READINGS],
    }
    both = await get(api, f"{TEMPORAL}/{gauge}", format="temporalValues")
    assert both["alertLevel"]["values"][0][0] == 1.4


async def test_concise_drops_the_instance_type(api: Api) -> None:
    gauge = await read_gauge(api)
    body = await get(api, f"{TEMPORAL}/{gauge}", options="concise")
    assert [i["value"] for i in body["currentLevel"]] == [1.0, 2.0, 4.0, 3.0]
    assert all("type" not in i for i in body["currentLevel"])


async def test_json_ld_answers_carry_the_context_and_json_answers_a_link(api: Api) -> None:
    gauge = await read_gauge(api)
    response = await api.request("GET", f"{TEMPORAL}/{gauge}", headers={"Accept": "application/ld+json"})
    assert response.status == 200
    assert "@context" in await body_of(response)
    response = await api.request("GET", f"{TEMPORAL}/{gauge}")
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in response.headers["Link"]


async def test_query_selects_by_type_id_pattern_and_q_on_the_current_state(api: Api) -> None:
    low = await read_gauge(api, readings=[(0, 1.0), (10, 1.5)])
    high = await read_gauge(api, readings=[(0, 1.0), (10, 3.5)])
    plow = await read_gauge(api, kind="Vehicle")
    by_type = await get(api, TEMPORAL, type="FloodMonitoring")
    assert sorted(e["id"] for e in by_type) == sorted([low, high])
    by_q = await get(api, TEMPORAL, type="FloodMonitoring", q="currentLevel>2")
    assert [e["id"] for e in by_q] == [high]
    assert series(by_q[0]) == [1.0, 3.5]
    by_pattern = await get(api, TEMPORAL, idPattern="^urn:ngsi-ld:Vehicle:.*")
    assert [e["id"] for e in by_pattern] == [plow]
    by_id = await get(api, TEMPORAL, id=f"{low},{plow}")
    assert sorted(e["id"] for e in by_id) == sorted([low, plow])


async def test_query_keeps_only_entities_with_instances_in_the_window(api: Api) -> None:
    early = await read_gauge(api, readings=[(0, 1.0)])
    late = await read_gauge(api, readings=[(50, 2.0)])
    body = await get(api, TEMPORAL, type="FloodMonitoring", timerel="after", timeAt=at(30))
    assert [e["id"] for e in body] == [late]
    assert early != late


async def test_query_with_geo_q_selects_by_the_current_location(api: Api) -> None:
    near, far = new_id("Vehicle"), new_id("Vehicle")
    for entity_id, lon in ((near, 134.05), (far, 135.5)):
        entity = {
            "id": entity_id,
            "type": "Vehicle",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 34.34]}},
        }
        assert (await api.create(entity)).status == 201
    body = await get(
        api,
        TEMPORAL,
        type="Vehicle",
        georel="near;maxDistance==5000",
        geometry="Point",
        coordinates="[134.0466,34.3401]",
    )
    assert [e["id"] for e in body] == [near]


async def test_entities_are_paged_with_limit_offset_and_counted(api: Api) -> None:
    ids = sorted([await read_gauge(api, readings=[(0, 1.0)]) for _ in range(3)])
    response = await api.request(
        "GET", TEMPORAL, params={"type": "FloodMonitoring", "limit": "2", "count": "true"}
    )
    body = await body_of(response)
    assert [e["id"] for e in body] == ids[:2]
    assert response.headers["NGSILD-Results-Count"] == "3"
    assert 'rel="next"' in response.headers["Link"]
    rest = await get(api, TEMPORAL, type="FloodMonitoring", limit="2", offset="2")
    assert [e["id"] for e in rest] == ids[2:]


async def test_post_query_takes_a_query_object_with_temporal_q(api: Api) -> None:
    gauge = await read_gauge(api)
    query = {
        "type": "Query",
        "entities": [{"type": "FloodMonitoring"}],
        "attrs": ["currentLevel"],
        "temporalQ": {"timerel": "between", "timeAt": at(0), "endTimeAt": at(20), "lastN": 1},
    }
    response = await api.request("POST", "/ngsi-ld/v1/temporal/entityOperations/query", query)
    body = await body_of(response)
    assert response.status == 200, body
    assert [(e["id"], series(e)) for e in body] == [(gauge, [2.0])]


async def test_a_snowplow_track_comes_back_as_one_geojson_line_string(api: Api) -> None:
    plow = new_id("Vehicle")
    points = [[134.040, 34.340], [134.045, 34.341], [134.050, 34.343]]
    for n, point in enumerate(points):
        location = {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": point},
            "observedAt": at(n),
        }
        body = {
            "id": plow,
            "type": "Vehicle",
            "location": location,
            "speed": {"type": "Property", "value": 20 + n},
        }
        response = await api.request("POST", "/ngsi-ld/v1/entityOperations/upsert", [body])
        assert response.status == (201 if n == 0 else 204), await response.text()
    response = await api.request(
        "GET",
        f"{TEMPORAL}/{plow}",
        headers={"Accept": "application/geo+json"},
        params={"timerel": "between", "timeAt": f"{DAY}T00:00:00Z", "endTimeAt": f"{DAY}T23:59:59Z"},
    )
    feature = await body_of(response)
    assert response.status == 200, feature
    assert response.content_type == "application/geo+json"
    assert feature["type"] == "Feature"
    assert feature["id"] == plow
    assert feature["geometry"] == {"type": "LineString", "coordinates": points}
    assert feature["properties"]["coordTimes"] == [at(n) for n in range(3)]


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({}, 400, "BadRequestData"),
        ({"type": "FloodMonitoring", "timerel": "during", "timeAt": at(0)}, 400, "BadRequestData"),
        ({"type": "FloodMonitoring", "options": "bogus"}, 400, "InvalidRequest"),
        ({"type": "FloodMonitoring", "options": "aggregatedValues"}, 400, "BadRequestData"),
        ({"type": "FloodMonitoring", "lastN": "0"}, 400, "BadRequestData"),
    ],
)
async def test_a_wrong_temporal_query_answers_400(
    api: Api, params: dict[str, str], status: int, error: str
) -> None:
    await read_gauge(api)
    await problem(await api.request("GET", TEMPORAL, params=params), status, error)


async def test_retrieving_an_entity_without_history_answers_404(api: Api) -> None:
    await read_gauge(api)
    await problem(await api.request("GET", f"{TEMPORAL}/{new_id()}"), 404, "ResourceNotFound")


@pytest.fixture(scope="module")
async def small_pages(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """A broker that answers at most 2 instances per attribute, to see 206 Partial Content."""
    server = TestServer(create_app(settings.replace(temporal_max_instances=2)), host="127.0.0.1")
    async with TestClient(server) as test_client:
        yield test_client


async def test_more_instances_than_a_response_holds_answer_206_with_content_range_forward(
    api: Api, small_pages: TestClient[Any, Any]
) -> None:
    gauge = await read_gauge(api)
    paged = Api(small_pages, api.tenant)
    response = await paged.request("GET", f"{TEMPORAL}/{gauge}")
    assert response.status == 206
    assert series(await body_of(response)) == [1.0, 2.0]
    assert response.headers["Content-Range"] == f"date-time {at(0)}-{at(10)}/*"
    following = await get(paged, f"{TEMPORAL}/{gauge}", timerel="after", timeAt=at(10))
    assert series(following) == [4.0, 3.0]


async def test_last_n_beyond_a_response_pages_backwards_from_the_newest(
    api: Api, small_pages: TestClient[Any, Any]
) -> None:
    gauge = await read_gauge(api)
    paged = Api(small_pages, api.tenant)
    response = await paged.request("GET", f"{TEMPORAL}/{gauge}", params={"lastN": "3"})
    assert response.status == 206
    assert series(await body_of(response)) == [4.0, 3.0]
    assert response.headers["Content-Range"] == f"date-time {at(30)}-{at(20)}/3"


async def test_last_n_reaches_back_past_the_recent_days_for_streams_that_need_it(api: Api) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old, fresh = new_id("FloodMonitoring"), new_id("FloodMonitoring")
    stamps = {
        old: [now - timedelta(days=30), now - timedelta(days=10), now],
        fresh: [now - timedelta(hours=n) for n in (3, 2, 1)],
    }
    for gauge, times in stamps.items():
        for n, moment in enumerate(times):
            body = {
                "id": gauge,
                "type": "FloodMonitoring",
                "currentLevel": {"type": "Property", "value": float(n), "observedAt": moment.isoformat()},
            }
            response = await api.request(
                "POST", "/ngsi-ld/v1/entityOperations/upsert", [body], params={"options": "update"}
            )
            assert response.status == (201 if n == 0 else 204), await response.text()
    body = await get(api, TEMPORAL, id=f"{old},{fresh}", lastN="2")
    assert {e["id"]: series(e) for e in body} == {old: [1.0, 2.0], fresh: [1.0, 2.0]}
    body = await get(
        api,
        TEMPORAL,
        id=f"{old},{fresh}",
        lastN="3",
        timerel="after",
        timeAt=(now - timedelta(days=20)).isoformat(),
    )
    assert {e["id"]: series(e) for e in body} == {old: [1.0, 2.0], fresh: [0.0, 1.0, 2.0]}
