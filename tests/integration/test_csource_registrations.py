"""Context source registrations over HTTP (clauses 5.9.2-5.9.4, 5.10.1-5.10.2, binding 6.8-6.9)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from broker.api.keys import POOL, REGISTRATIONS
from broker.federation.parse import expand_body
from broker.jsonld.context import TermMap
from broker.store.registrations import insert, lock_tenant
from tests.conftest import Api, eventually, new_id, problem
from tests.integration.helpers import body_of, ensure_tenant, host_context, with_link

REGISTRATIONS_PATH = "/ngsi-ld/v1/csourceRegistrations"
EX = "https://example.org/city#"
TERMS = {"Shelter": EX + "Shelter", "capacity": EX + "capacity", "ward": EX + "ward"}


def registration(registration_id: str | None = None, **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Shelter"}], "propertyNames": ["capacity"]}],
        "endpoint": "http://127.0.0.1:9/ward",
    }
    if registration_id is not None:
        body["id"] = registration_id
    body.update(members)
    return {key: value for key, value in body.items() if value is not None}


def reg_id() -> str:
    return new_id("ContextSourceRegistration")


def path(registration_id: str) -> str:
    return f"{REGISTRATIONS_PATH}/{quote(registration_id, safe=':')}"


async def create(api: Api, body: dict[str, Any], **kwargs: Any) -> str:
    response = await api.request("POST", REGISTRATIONS_PATH, body, **kwargs)
    assert response.status == 201, await response.text()
    return response.headers["Location"].removeprefix(REGISTRATIONS_PATH + "/")


async def read(api: Api, registration_id: str, **kwargs: Any) -> dict[str, Any]:
    response = await api.request("GET", path(registration_id), **kwargs)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await body_of(response)
    return body


async def listed(api: Api, params: dict[str, str] | None = None, **kwargs: Any) -> list[str]:
    response = await api.request("GET", REGISTRATIONS_PATH, params=params, **kwargs)
    assert response.status == 200, await response.text()
    return [r["id"] for r in await body_of(response)]


@pytest.fixture
async def link(api: Api) -> dict[str, str]:
    """A Link to the example vocabulary, in the api's tenant (which it creates)."""
    await ensure_tenant(api)
    return with_link(await host_context(api, TERMS))


async def test_a_registration_is_stored_expanded_and_read_back_in_each_readers_context(
    api: Api, link: dict[str, str]
) -> None:
    registration_id = await create(
        api, registration(registrationName="ward 1 shelters", capacityMax=400), headers=link
    )
    assert registration_id.startswith("urn:ngsi-ld:ContextSourceRegistration:")
    mine = await read(api, registration_id, headers=link)
    assert mine["information"] == [{"entities": [{"type": "Shelter"}], "propertyNames": ["capacity"]}]
    assert mine["registrationName"] == "ward 1 shelters"
    assert mine["mode"] == "inclusive"
    assert mine["operations"] == ["federationOps"]
    assert mine["capacityMax"] == 400
    # Without the Link, the core context compacts nothing of the example vocabulary.
    plain = await read(api, registration_id)
    assert plain["information"][0]["entities"][0]["type"] == EX + "Shelter"
    assert plain["information"][0]["propertyNames"] == [EX + "capacity"]
    assert plain["capacityMax"] == 400  # the default vocabulary, in either context
    timed = await read(api, registration_id, params={"options": "sysAttrs"})
    assert {"createdAt", "modifiedAt"} <= set(timed)
    assert "createdAt" not in plain


async def test_a_registration_with_its_own_id_and_every_member_is_accepted(
    api: Api, link: dict[str, str]
) -> None:
    registration_id = reg_id()
    full = registration(
        registration_id,
        description="shelters of the ward",
        mode="redirect",
        operations=["retrieveOps", "updateOps", "createEntity"],
        contextSourceInfo=[{"key": "Authorization", "value": "Bearer x"}],
        scope=["/Tokyo/Shibuya"],
        location={"type": "Point", "coordinates": [139.70, 35.66]},
        operationSpace={"type": "Point", "coordinates": [139.70, 35.66]},
        management={"timeout": 2000, "cooldown": 10000, "localOnly": True},
        expiresAt=(datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        observationInterval={"startAt": "2026-01-01T00:00:00Z"},
        tenant="ward1",
    )
    assert await create(api, full, headers=link) == registration_id
    body = await read(api, registration_id, headers=link)
    assert body["operations"] == ["retrieveOps", "updateOps", "createEntity"]
    assert body["management"] == {"timeout": 2000, "cooldown": 10000, "localOnly": True}
    assert body["location"] == {"type": "Point", "coordinates": [139.70, 35.66]}


BAD = [
    pytest.param({"information": None}, "information is required", id="no-information"),
    pytest.param({"endpoint": None}, "endpoint is required", id="no-endpoint"),
    pytest.param({"endpoint": "ftp://ward.example/"}, "http or https", id="endpoint-scheme"),
    pytest.param({"type": "Registration"}, "ContextSourceRegistration", id="type"),
    pytest.param({"mode": "sometimes"}, "mode", id="mode"),
    pytest.param({"operations": ["teleport"]}, "operation", id="operation"),
    pytest.param({"information": []}, "non-empty array", id="empty-information"),
    pytest.param({"information": [{}]}, "needs entities", id="empty-info"),
    pytest.param({"information": [{"entities": [{"id": "urn:x:1"}]}]}, "type is required", id="no-type"),
    pytest.param(
        {"information": [{"entities": [{"type": "Shelter", "id": "urn:x:1", "idPattern": ".*"}]}]},
        "both id and idPattern",
        id="id-and-pattern",
    ),
    pytest.param({"information": [{"propertyNames": []}]}, "non-empty array", id="no-names"),
    pytest.param({"mode": "exclusive"}, "entity id", id="exclusive-without-id"),
    pytest.param({"expiresAt": "2001-01-01T00:00:00Z"}, "not in the future", id="expired"),
    pytest.param({"management": {"timeout": 0}}, "timeout", id="timeout"),
    pytest.param({"location": {"type": "Point", "coordinates": "x"}}, "location", id="location"),
    pytest.param({"contextSourceInfo": [{"key": "k"}]}, "value is required", id="csi"),
    pytest.param({"scope": "no-slash"}, "scope", id="scope"),
    pytest.param({"brand": None}, "null", id="null-property"),
]


@pytest.mark.parametrize(("members", "detail"), BAD)
async def test_a_bad_registration_is_400_and_nothing_is_stored(
    api: Api, link: dict[str, str], members: dict[str, Any], detail: str
) -> None:
    body = registration(reg_id())
    for member, value in members.items():
        if value is None and member != "brand":
            body.pop(member, None)
        else:
            body[member] = value
    problem_body = await problem(
        await api.request("POST", REGISTRATIONS_PATH, body, headers=link), 400, "BadRequestData"
    )
    assert detail in problem_body["detail"]
    assert await listed(api) == []


async def test_a_body_that_is_no_object_or_an_unknown_parameter_is_refused(api: Api) -> None:
    await ensure_tenant(api)
    await problem(await api.request("POST", REGISTRATIONS_PATH, [registration()]), 400, "BadRequestData")
    await problem(await api.request("POST", REGISTRATIONS_PATH, raw=b"{"), 400, "InvalidRequest")
    await problem(await api.request("GET", REGISTRATIONS_PATH, params={"bogus": "1"}), 400, "InvalidRequest")
    assert await listed(api) == []


async def test_a_taken_id_is_409_and_the_first_registration_stays(api: Api, link: dict[str, str]) -> None:
    registration_id = await create(api, registration(reg_id()), headers=link)
    again = registration(registration_id, endpoint="http://127.0.0.1:9/other")
    await problem(await api.request("POST", REGISTRATIONS_PATH, again, headers=link), 409, "AlreadyExists")
    assert (await read(api, registration_id))["endpoint"] == "http://127.0.0.1:9/ward"


def exclusive(entity_id: str, *names: str, mode: str = "exclusive") -> dict[str, Any]:
    info = {"entities": [{"id": entity_id, "type": "Shelter"}], "propertyNames": list(names)}
    return registration(reg_id(), mode=mode, information=[info])


async def test_an_exclusive_registration_holds_its_attributes_alone(api: Api, link: dict[str, str]) -> None:
    shelter = new_id("Shelter")
    await create(api, exclusive(shelter, "capacity"), headers=link)
    for rival in (exclusive(shelter, "capacity", mode="inclusive"), exclusive(shelter, "capacity")):
        answer = await api.request("POST", REGISTRATIONS_PATH, rival, headers=link)
        assert "4.3.6.3" in (await problem(answer, 409, "AlreadyExists"))["detail"]
    # A type-wide inclusive registration overlaps it as well.
    await problem(
        await api.request("POST", REGISTRATIONS_PATH, registration(), headers=link), 409, "AlreadyExists"
    )
    # Other attributes of the entity, and auxiliary sources, are not in the way.
    await create(api, exclusive(shelter, "ward", mode="inclusive"), headers=link)
    await create(api, exclusive(shelter, "capacity", mode="auxiliary"), headers=link)
    assert len(await listed(api)) == 3


async def test_an_exclusive_registration_may_not_take_what_another_provides(
    api: Api, link: dict[str, str]
) -> None:
    shelter = new_id("Shelter")
    inclusive_id = await create(api, registration(reg_id()), headers=link)
    answer = await api.request("POST", REGISTRATIONS_PATH, exclusive(shelter, "capacity"), headers=link)
    assert inclusive_id in (await problem(answer, 409, "AlreadyExists"))["detail"]
    # A PATCH making an existing registration exclusive is held to the same rule.
    other = await create(api, exclusive(shelter, "ward", mode="inclusive"), headers=link)
    answer = await api.request(
        "PATCH",
        path(other),
        {"information": exclusive(shelter, "capacity")["information"], "mode": "exclusive"},
        headers=link,
    )
    await problem(answer, 409, "AlreadyExists")
    assert (await read(api, other))["mode"] == "inclusive"


async def test_an_exclusive_registration_waits_for_a_rival_still_being_written(
    api: Api, link: dict[str, str]
) -> None:
    """The conflict check cannot miss a rival committing meanwhile: registration writes of a tenant
    take its lock, so the request waits for the rival's transaction and then sees it."""
    shelter = new_id("Shelter")
    rival = expand_body(exclusive(shelter, "capacity"), TermMap(terms=TERMS))
    async with api.client.app[POOL].acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await lock_tenant(conn, api.tenant)
        await insert(conn, api.tenant, rival["id"], rival, "exclusive", None)
        request = asyncio.ensure_future(
            api.request("POST", REGISTRATIONS_PATH, exclusive(shelter, "capacity"), headers=link)
        )

        async def waiting() -> bool:
            waits = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
            return bool(waits)

        await eventually(waiting, what="the request waiting for the tenant's registration lock")
        await transaction.commit()
        await problem(await request, 409, "AlreadyExists")
    assert await listed(api) == [rival["id"]]


async def test_query_selects_by_type_attrs_id_pattern_q_csf_and_geo(api: Api, link: dict[str, str]) -> None:
    near = reg_id()
    await create(
        api,
        registration(
            near,
            location={"type": "Point", "coordinates": [139.70, 35.66]},
            capacityMax=400,
            contextSourceInfo=[{"key": "ward", "value": "shibuya"}],
        ),
        headers=link,
    )
    shelter = new_id("Shelter")
    by_id = reg_id()
    info = [{"entities": [{"id": shelter, "type": "Shelter"}], "relationshipNames": ["ward"]}]
    await create(api, registration(by_id, information=info, capacityMax=50), headers=link)
    gauges = reg_id()
    await create(
        api,
        registration(gauges, information=[{"entities": [{"type": "Gauge", "idPattern": "urn:gauge:.*"}]}]),
        headers=link,
    )

    async def found(**params: str) -> set[str]:
        return set(await listed(api, params, headers=link))

    assert await found(type="Shelter") == {near, by_id}
    assert await found(type="Gauge") == {gauges}
    assert await found(type="Shelter", attrs="ward") == {by_id}
    assert await found(attrs="capacity") == {near, gauges}  # a registration naming no attributes has all
    assert await found(id=shelter) == {near, by_id}  # the type-wide one may hold it too
    assert await found(id="urn:gauge:7") == {near, gauges}
    assert await found(idPattern="urn:gauge:.*", type="Gauge") == {gauges}
    assert await found(q="capacityMax>100") == {near}
    assert await found(q="capacityMax==50") == {by_id}
    assert await found(csf='ward=="shibuya"') == {near}
    near_query = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[139.71,35.66]"}
    assert await found(**near_query) == {near}
    far = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[135.5,34.7]"}
    assert await found(**far) == set()


async def test_query_pages_and_counts_with_link_headers(api: Api, link: dict[str, str]) -> None:
    ids = sorted([await create(api, registration(reg_id()), headers=link) for _ in range(3)])
    response = await api.request("GET", REGISTRATIONS_PATH, params={"limit": "2", "count": "true"})
    assert response.status == 200
    assert response.headers["NGSILD-Results-Count"] == "3"
    assert [r["id"] for r in await body_of(response)] == ids[:2]
    assert 'rel="next"' in response.headers["Link"]
    assert await listed(api, {"limit": "2", "offset": "2"}) == ids[2:]


@pytest.mark.parametrize(
    "params",
    [
        {"georel": "near;maxDistance==10"},
        {"q": "capacity>"},
        {"type": "("},
        {"idPattern": "(?<=x)"},
        {"limit": "-1"},
        {
            "geoproperty": "observationSpace",
            "georel": "intersects",
            "geometry": "Point",
            "coordinates": "[1,2]",
        },
    ],
)
async def test_a_bad_query_is_400(api: Api, params: dict[str, str]) -> None:
    await ensure_tenant(api)
    await problem(await api.request("GET", REGISTRATIONS_PATH, params=params), 400, "BadRequestData")


async def test_a_q_beyond_the_simple_part_is_501(api: Api) -> None:
    await ensure_tenant(api)
    await problem(
        await api.request("GET", REGISTRATIONS_PATH, params={"q": "a.b==1"}), 501, "OperationNotSupported"
    )


async def test_patch_merges_the_fragment_and_keeps_the_rest(api: Api, link: dict[str, str]) -> None:
    registration_id = await create(api, registration(reg_id(), management={"timeout": 1000}), headers=link)
    fragment = {
        "endpoint": "http://127.0.0.1:9/moved",
        "registrationName": "moved",
        "management": {"cooldown": 5},
    }
    response = await api.request("PATCH", path(registration_id), fragment, headers=link)
    assert response.status == 204, await response.text()
    body = await read(api, registration_id, headers=link)
    assert body["endpoint"] == "http://127.0.0.1:9/moved"
    assert body["registrationName"] == "moved"
    assert body["management"] == {"timeout": 1000, "cooldown": 5}
    assert body["information"][0]["propertyNames"] == ["capacity"]
    removed = await api.request("PATCH", path(registration_id), {"registrationName": "urn:ngsi-ld:null"})
    assert removed.status == 204
    assert "registrationName" not in await read(api, registration_id)


@pytest.mark.parametrize(
    "fragment",
    [
        {},
        {"endpoint": "not a uri"},
        {"information": "none"},
        {"id": "urn:other:1"},
        {"mode": "exclusive"},
        {"expiresAt": "2001-01-01T00:00:00Z"},
    ],
)
async def test_a_bad_patch_is_400_and_changes_nothing(
    api: Api, link: dict[str, str], fragment: dict[str, Any]
) -> None:
    registration_id = await create(api, registration(reg_id()), headers=link)
    before = await read(api, registration_id, params={"options": "sysAttrs"})
    response = await api.request("PATCH", path(registration_id), fragment, headers=link)
    await problem(response, 400, "BadRequestData")
    assert await read(api, registration_id, params={"options": "sysAttrs"}) == before


async def test_unknown_registrations_are_404_and_delete_removes(api: Api, link: dict[str, str]) -> None:
    registration_id = await create(api, registration(reg_id()), headers=link)
    missing = reg_id()
    await problem(await api.request("GET", path(missing)), 404, "ResourceNotFound")
    await problem(
        await api.request("PATCH", path(missing), {"registrationName": "x"}), 404, "ResourceNotFound"
    )
    await problem(await api.request("DELETE", path(missing)), 404, "ResourceNotFound")
    await problem(await api.request("GET", path("not a uri")), 400, "BadRequestData")
    assert (await api.request("DELETE", path(registration_id))).status == 204
    await problem(await api.request("GET", path(registration_id)), 404, "ResourceNotFound")
    assert await listed(api) == []


async def test_tenants_do_not_see_each_others_registrations(api: Api, link: dict[str, str]) -> None:
    registration_id = await create(api, registration(reg_id()), headers=link)
    other = Api(api.client, api.tenant + "-b")
    await ensure_tenant(other)
    assert await listed(other) == []
    await problem(await other.request("GET", path(registration_id)), 404, "ResourceNotFound")
    await problem(await other.request("DELETE", path(registration_id)), 404, "ResourceNotFound")
    # The same id is free in the other tenant, and an exclusive rule stays within its tenant.
    await create(other, registration(registration_id))
    assert await listed(api) == [registration_id]


async def test_lookup_finds_the_registrations_for_an_entity_attribute_and_operation(
    api: Api, link: dict[str, str]
) -> None:
    shelter = new_id("Shelter")
    holder = await create(api, exclusive(shelter, "capacity"), headers=link)
    retrieving = await create(
        api,
        registration(reg_id(), operations=["retrieveOps"], information=[{"propertyNames": ["ward"]}]),
        headers=link,
    )
    lookup = api.client.app[REGISTRATIONS].lookup
    tenant = api.tenant
    assert [
        r.id for r in await lookup(tenant, shelter, [EX + "Shelter"], [EX + "capacity"], "updateAttrs")
    ] == []
    assert [
        r.id for r in await lookup(tenant, shelter, [EX + "Shelter"], [EX + "capacity"], "retrieveEntity")
    ] == [holder]
    found = await lookup(tenant, shelter, [EX + "Shelter"], None, "queryEntity")
    assert {r.id for r in found} == {holder, retrieving}
    assert [r.id for r in await lookup(tenant, shelter, None, [EX + "ward"], "queryEntity")] == [retrieving]
    assert await lookup(tenant + "-none", shelter, None, None, None) == []
