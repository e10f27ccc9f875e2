"""entity_geometries follows every write: moved GeoProperties updated in place, removed ones gone, new ones added."""

from __future__ import annotations

import asyncpg

from tests.conftest import Api, database_url, new_id

LOCATION = "https://uri.etsi.org/ngsi-ld/location"
AREA = "https://uri.etsi.org/ngsi-ld/default-context/area"


def point(lon: float, lat: float) -> dict[str, object]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


async def geometry_rows(tenant: str, entity_id: str) -> dict[tuple[str, str], str]:
    conn = await asyncpg.connect(database_url())
    try:
        rows = await conn.fetch(
            "SELECT attr, dataset_id, ST_AsText(geom) AS wkt FROM entity_geometries"
            " WHERE tenant = $1 AND entity_id = $2",
            tenant,
            entity_id,
        )
    finally:
        await conn.close()
    return {(row["attr"], row["dataset_id"]): row["wkt"] for row in rows}


async def test_a_moved_location_is_the_only_geometry_row_of_a_plow_after_each_update(api: Api) -> None:
    plow = new_id("Vehicle")
    assert (await api.create({"id": plow, "type": "Vehicle", "location": point(134.0, 34.3)})).status == 201

    for lon in (134.01, 134.02):
        response = await api.request(
            "PATCH", f"/ngsi-ld/v1/entities/{plow}/attrs", {"location": point(lon, 34.3)}
        )
        assert response.status == 204, await response.text()

    assert await geometry_rows(api.tenant, plow) == {(LOCATION, ""): "POINT(134.02 34.3)"}


async def test_removed_geoproperty_instances_leave_no_row_and_new_ones_get_one(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    body = {
        "id": gauge,
        "type": "FloodMonitoring",
        "location": point(134.0, 34.3),
        "area": [point(134.1, 34.1), {**point(134.2, 34.2), "datasetId": "urn:ngsi-ld:Dataset:b"}],
    }
    assert (await api.create(body)).status == 201

    response = await api.request(
        "DELETE", f"/ngsi-ld/v1/entities/{gauge}/attrs/area?datasetId=urn:ngsi-ld:Dataset:b"
    )
    assert response.status == 204, await response.text()
    response = await api.request(
        "POST",
        f"/ngsi-ld/v1/entities/{gauge}/attrs",
        {"area": {**point(134.3, 34.3), "datasetId": "urn:ngsi-ld:Dataset:c"}},
    )
    assert response.status == 204, await response.text()

    assert await geometry_rows(api.tenant, gauge) == {
        (LOCATION, ""): "POINT(134 34.3)",
        (AREA, ""): "POINT(134.1 34.1)",
        (AREA, "urn:ngsi-ld:Dataset:c"): "POINT(134.3 34.3)",
    }


async def test_an_update_that_leaves_the_geometry_alone_keeps_its_row(api: Api) -> None:
    gauge = new_id("FloodMonitoring")
    body = {"id": gauge, "type": "FloodMonitoring", "location": point(134.0, 34.3), "currentLevel": 0.5}
    assert (await api.create(body)).status == 201

    response = await api.request("PATCH", f"/ngsi-ld/v1/entities/{gauge}/attrs", {"currentLevel": 0.7})
    assert response.status == 204, await response.text()

    assert await geometry_rows(api.tenant, gauge) == {(LOCATION, ""): "POINT(134 34.3)"}
