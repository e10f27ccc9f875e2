"""Sharing grants between tenants and open data on the real server (issue 12, items 3 and 5).

Tenant A (the fixture's) shares river levels with tenant B in full and snowplow positions without
the driver; B sees exactly that: other types are absent (not 403), other attributes left out,
filters on hidden attributes refused, writes refused, and a revoked grant stops at once. A grant
to everyone is open data: readable without a key, and nothing else is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from broker.auth.model import Role
from tests.integration.auth_helpers import ENTITIES, Secured, refused

A_ENTITIES = {
    "river": {
        "type": "WaterObserved",
        "waterLevel": {"type": "Property", "value": 2.4},
        "gauge": {"type": "Property", "value": "north"},
    },
    "plow": {
        "type": "Vehicle",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.0, 34.3]}},
        "driver": {"type": "Property", "value": "Sato"},
    },
    "thing": {"type": "Thing", "n": {"type": "Property", "value": 1}},
}


@dataclass
class Towns:
    secured: Secured
    ids: dict[str, str]
    b_reader: str
    a_header: dict[str, str]

    async def grant(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.secured.call("POST", "/admin/grants", self.secured.keys[Role.ADMIN], body)
        assert response.status == 201, await response.text()
        grant: dict[str, Any] = await response.json()
        return grant

    async def as_b(self, method: str, path: str, body: Any = None) -> Any:
        return await self.secured.call(method, path, self.b_reader, body, **self.a_header)


@pytest.fixture
async def towns(secured: Secured) -> Towns:
    suffix = uuid.uuid4().hex[:8]
    ids = {name: f"urn:ngsi-ld:{e['type']}:{name}-{suffix}" for name, e in A_ENTITIES.items()}
    for name, entity in A_ENTITIES.items():
        created = await secured.call("POST", ENTITIES, secured.keys[Role.WRITER], {"id": ids[name], **entity})
        assert created.status == 201, await created.text()
    _, b_reader = await secured.ring.create(f"{secured.tenant}-b", [Role.READER], "town B")
    return Towns(secured, ids, b_reader, {"NGSILD-Tenant": secured.tenant})


async def entity_ids(response: Any) -> set[str]:
    assert response.status == 200, await response.text()
    return {e["id"] for e in await response.json()}


async def test_without_a_grant_another_town_reads_nothing(towns: Towns) -> None:
    await refused(await towns.as_b("GET", f"{ENTITIES}?type=WaterObserved"), 403)
    await refused(await towns.as_b("GET", f"{ENTITIES}/{towns.ids['river']}"), 403)


async def test_a_grant_shows_its_types_and_attributes_and_nothing_else(towns: Towns) -> None:
    b = f"{towns.secured.tenant}-b"
    await towns.grant({"to": b, "types": ["WaterObserved"]})
    await towns.grant({"to": b, "types": ["Vehicle"], "attrs": ["location"]})

    assert await entity_ids(await towns.as_b("GET", f"{ENTITIES}?type=WaterObserved")) == {towns.ids["river"]}
    # Not granted: absent, not forbidden.
    assert await entity_ids(await towns.as_b("GET", f"{ENTITIES}?type=Thing")) == set()
    response = await towns.as_b("GET", f"{ENTITIES}/{towns.ids['thing']}")
    assert response.status == 404
    river = await (await towns.as_b("GET", f"{ENTITIES}/{towns.ids['river']}")).json()
    assert river["waterLevel"]["value"] == 2.4
    assert river["gauge"]["value"] == "north"
    plow = await (await towns.as_b("GET", f"{ENTITIES}/{towns.ids['plow']}")).json()
    assert "location" in plow
    assert "driver" not in plow
    listed = await (await towns.as_b("GET", f"{ENTITIES}?type=Vehicle")).json()
    assert [set(e) - {"id", "type"} for e in listed] == [{"location"}]
    query = {"type": "Query", "entities": [{"type": "Vehicle"}]}
    posted = await (await towns.as_b("POST", "/ngsi-ld/v1/entityOperations/query", query)).json()
    assert [set(e) - {"id", "type"} for e in posted] == [{"location"}]
    # A filter, selection or ordering on a hidden attribute would tell its values: such a query
    # reaches only the types on which it is granted (here WaterObserved), never the plows.
    for hidden in ('q=driver=="Sato"', "attrs=driver", "orderBy=driver"):
        assert await entity_ids(await towns.as_b("GET", f"{ENTITIES}?type=Vehicle&{hidden}")) == set()
    assert await entity_ids(await towns.as_b("GET", f"{ENTITIES}?type=Vehicle&q=location")) == {
        towns.ids["plow"]
    }


async def test_a_grant_never_lets_the_grantee_write_or_reach_other_routes(towns: Towns) -> None:
    await towns.grant({"to": f"{towns.secured.tenant}-b", "types": ["WaterObserved"]})
    _, b_writer = await towns.secured.ring.create(f"{towns.secured.tenant}-b", [Role.WRITER], "B writer")
    patch = {"waterLevel": {"type": "Property", "value": 9.9}}
    path = f"{ENTITIES}/{towns.ids['river']}/attrs"
    await refused(await towns.secured.call("PATCH", path, b_writer, patch, **towns.a_header), 403)
    await refused(await towns.as_b("GET", "/ngsi-ld/v1/types"), 403)
    await refused(await towns.as_b("GET", f"/ngsi-ld/v1/temporal/entities/{towns.ids['river']}"), 403)
    river = await (await towns.as_b("GET", f"{ENTITIES}/{towns.ids['river']}")).json()
    assert river["waterLevel"]["value"] == 2.4


async def test_a_revoked_grant_stops_at_once(towns: Towns) -> None:
    grant = await towns.grant({"to": f"{towns.secured.tenant}-b", "types": ["WaterObserved"]})
    assert (await towns.as_b("GET", f"{ENTITIES}/{towns.ids['river']}")).status == 200
    admin = towns.secured.keys[Role.ADMIN]
    assert (await towns.secured.call("DELETE", f"/admin/grants/{grant['id']}", admin)).status == 204
    await refused(await towns.as_b("GET", f"{ENTITIES}/{towns.ids['river']}"), 403)
    listed = await (await towns.secured.call("GET", "/admin/grants", admin)).json()
    assert [g["revokedAt"] is not None for g in listed if g["id"] == grant["id"]] == [True]


async def test_open_data_is_readable_without_a_key_and_nothing_else_is(towns: Towns) -> None:
    await towns.grant({"to": "*", "types": ["WaterObserved"], "attrs": ["waterLevel"]})
    anonymous = towns.secured.call
    found = await anonymous("GET", f"{ENTITIES}?type=WaterObserved", None, **towns.a_header)
    assert await entity_ids(found) == {towns.ids["river"]}
    river = await (await anonymous("GET", f"{ENTITIES}/{towns.ids['river']}", None, **towns.a_header)).json()
    assert set(river) == {"id", "type", "waterLevel"}
    # No granted type shows the gauge's name: a filter on it is refused outright.
    filtered = await anonymous(
        "GET", f'{ENTITIES}?type=WaterObserved&q=gauge=="north"', None, **towns.a_header
    )
    await refused(filtered, 403)
    level = await anonymous("GET", f"{ENTITIES}?type=WaterObserved&q=waterLevel>2", None, **towns.a_header)
    assert await entity_ids(level) == {towns.ids["river"]}
    assert (await anonymous("GET", f"{ENTITIES}/{towns.ids['plow']}", None, **towns.a_header)).status == 404
    entity = {"id": f"urn:ngsi-ld:Thing:anon-{uuid.uuid4().hex[:6]}", "type": "Thing"}
    await refused(await anonymous("POST", ENTITIES, None, entity, **towns.a_header), 401)
    await refused(await anonymous("GET", "/ngsi-ld/v1/types", None, **towns.a_header), 401)
    # Another tenant's reader sees the open data too.
    assert await entity_ids(await towns.as_b("GET", f"{ENTITIES}?type=WaterObserved")) == {towns.ids["river"]}


async def test_bad_grants_answer_400_and_only_admins_make_them(towns: Towns) -> None:
    admin, reader = towns.secured.keys[Role.ADMIN], towns.secured.keys[Role.READER]
    bodies: list[Any] = [
        {"types": ["WaterObserved"]},
        {"to": "town b!", "types": ["WaterObserved"]},
        {"to": towns.secured.tenant, "types": ["WaterObserved"]},
        {"to": "other", "types": []},
        {"to": "other", "types": "WaterObserved"},
        {"to": "other", "types": ["WaterObserved"], "attrs": [1]},
        {"to": "other", "types": ["WaterObserved"], "subscribe": "yes"},
        [],
    ]
    for body in bodies:
        response = await towns.secured.call("POST", "/admin/grants", admin, body)
        assert response.status == 400, (body, await response.text())
    await refused(await towns.secured.call("POST", "/admin/grants", reader, {"to": "o", "types": ["T"]}), 403)
    assert await (await towns.secured.call("GET", "/admin/grants", admin)).json() == []
