"""5.6.21 Purge Entities (HTTP binding DELETE /ngsi-ld/v1/entities, 6.4.3.3): the entities a query
selects are deleted, within NGSI_MAX_PURGE; issue 13."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.config import Settings
from tests.conftest import Api, new_id, problem
from tests.integration.helpers import assert_absent, thing

ENTITIES = "/ngsi-ld/v1/entities"


async def test_a_purge_by_type_and_q_deletes_what_they_select_and_nothing_else(api: Api) -> None:
    low, high, other = new_id("Gauge"), new_id("Gauge"), new_id("Pump")
    for entity in (
        thing(low, "Gauge", level=1),
        thing(high, "Gauge", level=9),
        thing(other, "Pump", level=1),
    ):
        assert (await api.create(entity)).status == 201
    response = await api.request("DELETE", ENTITIES, params={"type": "Gauge", "q": "level<5"})
    assert response.status == 204, await response.text()
    await assert_absent(api, low)
    assert (await api.get(high)).status == 200
    assert (await api.get(other)).status == 200


async def test_a_purge_is_recorded_in_the_history_like_a_delete(api: Api) -> None:
    """The purge goes through the write path: the temporal evolution shows the deletion (clause 5.6.6)."""
    gauge = new_id("Gauge")
    assert (await api.create(thing(gauge, "Gauge", level=1))).status == 201
    assert (await api.request("DELETE", ENTITIES, params={"id": gauge})).status == 204
    response = await api.request(
        "GET", f"/ngsi-ld/v1/temporal/entities/{gauge}", params={"timeproperty": "deletedAt"}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert [i["value"] for i in body["level"]] == ["urn:ngsi-ld:null"]


async def test_a_purge_without_any_restriction_answers_400_and_deletes_nothing(api: Api) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    await problem(await api.request("DELETE", ENTITIES), 400, "BadRequestData")
    await problem(await api.request("DELETE", ENTITIES, params={"local": "true"}), 400, "BadRequestData")
    assert (await api.get(entity_id)).status == 200


@pytest.fixture
async def small_purge(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    server = TestServer(create_app(settings.replace(max_purge=2, mqtt_ingest=False)), host="127.0.0.1")
    async with TestClient(server) as client:
        yield client


async def test_a_purge_selecting_more_than_the_limit_answers_403_and_deletes_nothing(
    small_purge: TestClient[Any, Any], tenant: str
) -> None:
    api = Api(small_purge, tenant)
    ids = [new_id("Gauge") for _ in range(3)]
    for entity_id in ids:
        assert (await api.create(thing(entity_id, "Gauge", level=1))).status == 201
    await problem(await api.request("DELETE", ENTITIES, params={"type": "Gauge"}), 403, "TooManyResults")
    for entity_id in ids:
        assert (await api.get(entity_id)).status == 200
    response = await api.request("DELETE", ENTITIES, params={"id": ",".join(ids[:2])})
    assert response.status == 204, await response.text()
    await assert_absent(api, ids[0])
    assert (await api.get(ids[2])).status == 200
