"""Every committed attribute change is historised in its write transaction, and nothing else is."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from broker.api.keys import WRITER
from broker.ingest import Operation
from broker.model import ops
from broker.model.entity import Entity
from tests.conftest import Api, new_id
from tests.integration.helpers import batch, body_of

TEMPORAL = "/ngsi-ld/v1/temporal/entities"


def reading(entity_id: str, value: float, minute: int) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "FloodMonitoring",
        "currentLevel": {
            "type": "Property",
            "value": value,
            "observedAt": f"2026-11-20T{minute // 60:02d}:{minute % 60:02d}:00Z",
        },
    }


async def history_of(api: Api, entity_id: str, **params: str) -> dict[str, Any]:
    response = await api.request("GET", f"{TEMPORAL}/{entity_id}", params=params)
    body = await body_of(response)
    assert response.status == 200, body
    return body  # type: ignore[no-any-return]


def values(body: dict[str, Any], attr: str = "currentLevel") -> list[Any]:
    return [instance["value"] for instance in body.get(attr, [])]


async def test_a_batch_with_a_hundred_readings_of_one_gauge_historises_each_reading(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    backlog = [reading(gauge, n / 10, n) for n in range(100)]
    response = await batch(api, "upsert", backlog, params={"options": "update"})
    assert response.status == 201, await response.text()
    body = await history_of(api, gauge)
    assert values(body) == [n / 10 for n in range(100)]
    assert len({i["instanceId"] for i in body["currentLevel"]}) == 100


async def test_a_failed_operation_adds_no_history_while_the_others_of_its_batch_do(api: Api) -> None:
    good, bad = new_id("FloodMonitoring"), new_id("FloodMonitoring")
    assert (await api.create(reading(good, 1.0, 0))).status == 201
    assert (await api.create(reading(bad, 5.0, 0))).status == 201
    # The update of 'bad' names an attribute twice with the same datasetId: that operation fails.
    broken = {**reading(bad, 6.0, 10), "currentLevel": [reading(bad, 6.0, 10)["currentLevel"]] * 2}
    response = await batch(api, "update", [reading(good, 2.0, 10), broken])
    assert response.status == 207, await response.text()
    assert values(await history_of(api, good)) == [1.0, 2.0]
    assert values(await history_of(api, bad)) == [5.0]


async def test_a_rejected_request_adds_no_history(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    assert (await api.create(reading(gauge, 1.0, 0))).status == 201
    response = await api.request(
        "PATCH", f"/ngsi-ld/v1/entities/{gauge}/attrs/currentLevel", {"type": "Property"}
    )
    assert response.status == 400
    assert values(await history_of(api, gauge)) == [1.0]


async def test_a_write_that_changes_no_value_adds_no_history(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    assert (await api.create(reading(gauge, 1.0, 0))).status == 201
    same = {"currentLevel": reading(gauge, 1.0, 0)["currentLevel"]}
    response = await api.request("PATCH", f"/ngsi-ld/v1/entities/{gauge}/attrs", same)
    assert response.status == 204
    assert values(await history_of(api, gauge)) == [1.0]


async def test_deleting_an_attribute_and_then_the_entity_leaves_deletion_markers(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    entity = {**reading(gauge, 1.0, 0), "alertLevel": {"type": "Property", "value": 1.4}}
    assert (await api.create(entity)).status == 201
    assert (await api.request("DELETE", f"/ngsi-ld/v1/entities/{gauge}/attrs/alertLevel")).status == 204
    assert (await api.request("DELETE", f"/ngsi-ld/v1/entities/{gauge}")).status == 204
    body = await history_of(api, gauge, timeproperty="deletedAt")
    assert [i["value"] for i in body["alertLevel"]] == ["urn:ngsi-ld:null"]
    assert [i["value"] for i in body["currentLevel"]] == ["urn:ngsi-ld:null"]
    assert body["alertLevel"][0]["deletedAt"] <= body["currentLevel"][0]["deletedAt"]
    # The readings themselves stay: history outlives the entity.
    assert values(await history_of(api, gauge)) == [1.0]


async def test_device_writes_through_the_writer_are_historised_once_even_when_redelivered(
    client: TestClient[Any, Any], api: Api
) -> None:
    gauge = new_id("FloodMonitoring")
    writer = client.app[WRITER]
    level = "https://uri.etsi.org/ngsi-ld/default-context/currentLevel"

    def measure(value: float) -> Operation:
        fragment = Entity(id=gauge, types=["https://uri.etsi.org/ngsi-ld/default-context/FloodMonitoring"])
        fragment.attrs[level] = [{"type": "Property", "value": value}]
        return Operation(
            gauge,
            lambda cur, now: ops.upsert(cur, fragment, now, replace_existing=False),
            once=("gauge-7", f"frame-{value}"),
        )

    await writer.apply(api.tenant, [measure(1.0), measure(2.0)], may_create_tenant=True)
    results = await writer.apply(api.tenant, [measure(2.0), measure(3.0)], may_create_tenant=True)
    assert [r.duplicate for r in results] == [True, False]
    assert values(await history_of(api, gauge)) == [1.0, 2.0, 3.0]


async def test_a_type_added_to_an_entity_reaches_its_history_streams(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    assert (await api.create(reading(gauge, 1.0, 0))).status == 201
    extra = {"type": "WaterObserved", "currentLevel": reading(gauge, 2.0, 10)["currentLevel"]}
    response = await api.request("POST", f"/ngsi-ld/v1/entities/{gauge}/attrs", extra)
    assert response.status == 204, await response.text()
    found = await api.request("GET", TEMPORAL, params={"type": "WaterObserved"})
    body = await body_of(found)
    assert [e["id"] for e in body] == [gauge]
    assert sorted(body[0]["type"]) == ["FloodMonitoring", "WaterObserved"]
    assert values(body[0]) == [1.0, 2.0]
