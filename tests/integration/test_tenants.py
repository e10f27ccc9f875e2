"""Tenants (clause 6.3.14): NGSILD-Tenant, its Fiware-Service alias, creation by write, NonexistentTenant."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Api, new_id, problem
from tests.integration.helpers import (
    assert_absent,
    batch,
    body_of,
    default_tenant_get,
    ensure_tenant,
    thing,
    value_of,
)


def other_tenant(client: TestClient[Any, Any]) -> Api:
    return Api(client, f"test-{uuid.uuid4().hex[:12]}")


async def test_an_entity_created_in_one_tenant_is_invisible_in_another(
    api: Api, client: TestClient[Any, Any]
) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    other = other_tenant(client)
    await ensure_tenant(other)
    await assert_absent(other, entity_id)
    assert value_of(await api.get_json(entity_id), "level") == 1


async def test_the_same_id_can_exist_independently_in_two_tenants(
    api: Api, client: TestClient[Any, Any]
) -> None:
    entity_id = new_id()
    other = other_tenant(client)
    assert (await api.create(thing(entity_id, level=1))).status == 201
    assert (await other.create(thing(entity_id, level=2))).status == 201
    assert value_of(await api.get_json(entity_id), "level") == 1
    assert value_of(await other.get_json(entity_id), "level") == 2
    assert (await api.request("DELETE", f"/ngsi-ld/v1/entities/{entity_id}")).status == 204
    assert value_of(await other.get_json(entity_id), "level") == 2


async def test_an_entity_created_in_a_tenant_is_invisible_in_the_default_tenant(
    api: Api, client: TestClient[Any, Any]
) -> None:
    entity_id = new_id()
    assert (await api.create(thing(entity_id, level=1))).status == 201
    response = await default_tenant_get(client, entity_id)
    await problem(response, 404, "ResourceNotFound")


async def test_an_entity_of_the_default_tenant_is_invisible_in_a_named_tenant(
    api: Api, client: TestClient[Any, Any]
) -> None:
    entity_id = new_id()
    created = await client.post(
        "/ngsi-ld/v1/entities", json=thing(entity_id, level=1), headers={"Content-Type": "application/json"}
    )
    assert created.status == 201, await created.text()
    assert (await default_tenant_get(client, entity_id)).status == 200
    await ensure_tenant(api)
    await assert_absent(api, entity_id)
    deleted = await client.delete(f"/ngsi-ld/v1/entities/{entity_id}")
    assert deleted.status == 204


async def test_reading_from_a_tenant_that_never_had_a_write_answers_404_nonexistent_tenant(api: Api) -> None:
    await problem(await api.get(new_id()), 404, "NonexistentTenant")
    query = await api.request("GET", "/ngsi-ld/v1/entities", params={"type": "Thing"})
    await problem(query, 404, "NonexistentTenant")


async def test_fiware_service_is_an_alias_of_ngsild_tenant(client: TestClient[Any, Any], tenant: str) -> None:
    entity_id = new_id()
    created = await client.post(
        "/ngsi-ld/v1/entities",
        json=thing(entity_id, level=3),
        headers={"Fiware-Service": tenant, "Content-Type": "application/json"},
    )
    assert created.status == 201, await created.text()
    via_ngsild = Api(client, tenant)
    assert value_of(await via_ngsild.get_json(entity_id), "level") == 3
    via_fiware = await client.get(f"/ngsi-ld/v1/entities/{entity_id}", headers={"Fiware-Service": tenant})
    assert via_fiware.status == 200, await via_fiware.text()
    assert value_of(await via_fiware.json(), "level") == 3
    assert (await default_tenant_get(client, entity_id)).status == 404


async def test_an_invalid_tenant_name_answers_400_and_creates_nothing(client: TestClient[Any, Any]) -> None:
    entity_id = new_id()
    for name in ("bad tenant", "bad/tenant", "-leading-dash", "x" * 200, "täst"):
        bad = Api(client, name)
        response = await bad.create(thing(entity_id, level=1))
        await problem(response, 400, "BadRequestData")
    fine = Api(client, f"test-{uuid.uuid4().hex[:12]}")
    await ensure_tenant(fine)
    await assert_absent(fine, entity_id)


async def test_an_invalid_tenant_name_answers_400_on_reads_too(client: TestClient[Any, Any]) -> None:
    await problem(await Api(client, "bad tenant").get(new_id()), 400, "BadRequestData")


async def test_a_batch_upsert_creates_the_tenant(api: Api) -> None:
    await problem(await api.get(new_id()), 404, "NonexistentTenant")
    entity_id = new_id()
    response = await batch(api, "upsert", [thing(entity_id, level=1)])
    assert response.status == 201, await response.text()
    assert value_of(await api.get_json(entity_id), "level") == 1
    await assert_absent(api, new_id())


async def test_a_batch_create_creates_the_tenant(api: Api) -> None:
    entity_id = new_id()
    response = await batch(api, "create", [thing(entity_id, level=1)])
    assert response.status == 201, await response.text()
    assert value_of(await api.get_json(entity_id), "level") == 1


async def test_updates_and_deletes_on_a_nonexistent_tenant_answer_404_nonexistent_tenant(api: Api) -> None:
    entity_id = new_id()
    path = f"/ngsi-ld/v1/entities/{entity_id}"
    await problem(await api.request("PATCH", path, {"level": 2}), 404, "NonexistentTenant")
    await problem(await api.request("DELETE", path), 404, "NonexistentTenant")
    await problem(await api.request("PATCH", f"{path}/attrs", {"level": 2}), 404, "NonexistentTenant")
    await problem(await api.request("POST", f"{path}/attrs", {"level": 2}), 404, "NonexistentTenant")
    await problem(await api.request("DELETE", f"{path}/attrs/level"), 404, "NonexistentTenant")
    await problem(await api.request("PUT", path, thing(entity_id, level=2)), 404, "NonexistentTenant")
    # None of these created the tenant.
    await problem(await api.get(entity_id), 404, "NonexistentTenant")


async def test_batch_update_merge_and_delete_on_a_nonexistent_tenant_answer_404_nonexistent_tenant(
    api: Api,
) -> None:
    entity_id = new_id()
    await problem(await batch(api, "update", [thing(entity_id, level=1)]), 404, "NonexistentTenant")
    await problem(await batch(api, "merge", [thing(entity_id, level=1)]), 404, "NonexistentTenant")
    await problem(await batch(api, "delete", [entity_id]), 404, "NonexistentTenant")
    await problem(await api.get(entity_id), 404, "NonexistentTenant")


async def test_the_response_echoes_the_ngsild_tenant_header(api: Api) -> None:
    entity_id = new_id()
    created = await api.create(thing(entity_id, level=1))
    assert created.status == 201
    assert created.headers["NGSILD-Tenant"] == api.tenant
    read = await api.get(entity_id)
    assert read.status == 200
    assert read.headers["NGSILD-Tenant"] == api.tenant
    upserted = await batch(api, "upsert", [thing(new_id(), level=1)])
    assert upserted.status == 201
    assert upserted.headers["NGSILD-Tenant"] == api.tenant
    deleted = await api.request("DELETE", f"/ngsi-ld/v1/entities/{entity_id}")
    assert deleted.status == 204
    assert deleted.headers["NGSILD-Tenant"] == api.tenant


async def test_a_tenant_only_sees_its_own_entities_in_a_query(api: Api, client: TestClient[Any, Any]) -> None:
    other = other_tenant(client)
    mine, theirs = new_id(), new_id()
    assert (await api.create(thing(mine, level=1))).status == 201
    assert (await other.create(thing(theirs, level=1))).status == 201
    response = await api.request("GET", "/ngsi-ld/v1/entities", params={"type": "Thing"})
    assert response.status == 200, await response.text()
    assert [e["id"] for e in await body_of(response)] == [mine]
