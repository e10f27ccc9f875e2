from __future__ import annotations

from tests.conftest import Api, fixture_json


async def test_a_reference_flood_gauge_is_created_and_read_back_compacted(api: Api) -> None:
    gauge = fixture_json("FloodMonitoring_kasuga-001.jsonld")
    response = await api.create(gauge)
    assert response.status == 201, await response.text()
    assert response.headers["Location"] == f"/ngsi-ld/v1/entities/{gauge['id']}"
    body = await api.get_json(gauge["id"], headers={"Accept": "application/ld+json"})
    assert body["id"] == gauge["id"]
    assert body["location"] == gauge["location"]
