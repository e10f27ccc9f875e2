"""Temporal provision (clauses 5.6.11-5.6.16, HTTP 6.18-6.22): history written and amended directly."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, new_id, problem
from tests.integration.helpers import body_of

TEMPORAL = "/ngsi-ld/v1/temporal/entities"


def temporal_gauge(gauge: str, *values: tuple[str, float]) -> dict[str, Any]:
    return {
        "id": gauge,
        "type": "FloodMonitoring",
        "currentLevel": [{"type": "Property", "value": v, "observedAt": t} for t, v in values],
    }


async def history(api: Api, gauge: str, **params: str) -> dict[str, Any]:
    response = await api.request("GET", f"{TEMPORAL}/{gauge}", params=params)
    body = await body_of(response)
    assert response.status == 200, body
    return body  # type: ignore[no-any-return]


def values(body: dict[str, Any], attr: str = "currentLevel") -> list[Any]:
    return [i["value"] for i in body.get(attr, [])]


async def test_create_answers_201_then_204_and_appends_instances_without_a_current_entity(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    first = temporal_gauge(gauge, ("2026-11-01T00:00:00Z", 1.0), ("2026-11-01T00:10:00Z", 1.2))
    response = await api.request("POST", TEMPORAL, first)
    assert response.status == 201, await response.text()
    assert response.headers["Location"] == f"{TEMPORAL}/{gauge}"
    again = temporal_gauge(gauge, ("2026-11-01T00:20:00Z", 1.1))
    assert (await api.request("POST", TEMPORAL, again)).status == 204
    assert values(await history(api, gauge)) == [1.0, 1.2, 1.1]
    # The temporal representation is its own resource: no current entity was made.
    assert (await api.get(gauge)).status == 404


async def test_add_attributes_needs_an_existing_temporal_entity(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    assert (
        await api.request("POST", TEMPORAL, temporal_gauge(gauge, ("2026-11-01T00:00:00Z", 1.0)))
    ).status == 201
    added = {"alertLevel": [{"type": "Property", "value": 1.4, "observedAt": "2026-11-01T00:00:00Z"}]}
    assert (await api.request("POST", f"{TEMPORAL}/{gauge}/attrs", added)).status == 204
    assert values(await history(api, gauge), "alertLevel") == [1.4]
    missing = await api.request("POST", f"{TEMPORAL}/{new_id()}/attrs", added)
    await problem(missing, 404, "ResourceNotFound")


async def test_an_instance_is_modified_and_deleted_by_its_instance_id(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    body = temporal_gauge(gauge, ("2026-11-01T00:00:00Z", 1.0), ("2026-11-01T00:10:00Z", 9.9))
    assert (await api.request("POST", TEMPORAL, body)).status == 201
    wrong = (await history(api, gauge))["currentLevel"][1]["instanceId"]
    fix = {"currentLevel": {"type": "Property", "value": 1.3, "observedAt": "2026-11-01T00:12:00Z"}}
    path = f"{TEMPORAL}/{gauge}/attrs/currentLevel/{wrong}"
    assert (await api.request("PATCH", path, fix)).status == 204
    fixed = await history(api, gauge)
    assert values(fixed) == [1.0, 1.3]
    assert fixed["currentLevel"][1]["instanceId"] == wrong
    assert fixed["currentLevel"][1]["observedAt"] == "2026-11-01T00:12:00Z"
    assert (await api.request("DELETE", path)).status == 204
    assert values(await history(api, gauge)) == [1.0]
    await problem(await api.request("DELETE", path), 404, "ResourceNotFound")
    await problem(await api.request("PATCH", path, fix), 404, "ResourceNotFound")


async def test_deleting_an_attribute_or_the_entity_removes_its_history(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    body = {
        **temporal_gauge(gauge, ("2026-11-01T00:00:00Z", 1.0)),
        "alertLevel": {"type": "Property", "value": 1.4, "observedAt": "2026-11-01T00:00:00Z"},
    }
    assert (await api.request("POST", TEMPORAL, body)).status == 201
    assert (await api.request("DELETE", f"{TEMPORAL}/{gauge}/attrs/alertLevel")).status == 204
    assert "alertLevel" not in await history(api, gauge)
    await problem(
        await api.request("DELETE", f"{TEMPORAL}/{gauge}/attrs/alertLevel"), 404, "ResourceNotFound"
    )
    assert (await api.request("DELETE", f"{TEMPORAL}/{gauge}")).status == 204
    await problem(await api.request("GET", f"{TEMPORAL}/{gauge}"), 404, "ResourceNotFound")
    await problem(await api.request("DELETE", f"{TEMPORAL}/{gauge}"), 404, "ResourceNotFound")


async def test_a_bad_temporal_entity_is_refused_and_stores_nothing(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    bad = {
        "id": gauge,
        "type": "FloodMonitoring",
        "currentLevel": [
            {"type": "Property", "value": 1.0, "observedAt": "2026-11-01T00:00:00Z"},
            {"type": "Property", "observedAt": "2026-11-01T00:10:00Z"},
        ],
    }
    await problem(await api.request("POST", TEMPORAL, bad), 400, "BadRequestData")
    assert (await api.request("POST", TEMPORAL, temporal_gauge(new_id(), ("x", 1.0)))).status == 400
    assert (await api.request("GET", f"{TEMPORAL}/{gauge}")).status == 404
