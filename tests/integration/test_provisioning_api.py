"""The IoT Agent provisioning API on the real store: /iot/services, /iot/groups, /iot/devices."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from adapters.keys import DEVICES
from adapters.provisioning.api import add_routes, provisioning_context
from broker.app import create_app
from broker.config import Settings
from tests.conftest import problem

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[Client]:
    """The broker with the provisioning routes, as broker.app would wire them."""
    # A small pool: these apps live next to the session's, on a server other test runs share.
    app = create_app(replace(settings, db_pool_min=1, db_pool_max=6))
    if provisioning_context not in app.cleanup_ctx:  # until broker.app wires the device side
        app.cleanup_ctx.append(provisioning_context)
        add_routes(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


class Iota:
    """A provisioning client for one fiware-service (tenant) and service path."""

    def __init__(self, client: Client, service: str, path: str = "/") -> None:
        self.client = client
        self.service = service
        self.path = path

    async def call(self, method: str, url: str, body: Any = None, **params: str) -> ClientResponse:
        headers = {"Fiware-Service": self.service, "Fiware-ServicePath": self.path}
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        response = await self.client.request(method, url, data=data, headers=headers, params=params)
        await response.read()
        return response

    async def json(self, method: str, url: str, body: Any = None, status: int = 200, **params: str) -> Any:
        response = await self.call(method, url, body, **params)
        assert response.status == status, await response.text()
        return await response.json() if response.content_length else None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def iota(client: Client) -> Iota:
    return Iota(client, unique("town"))


def gauge_group(apikey: str, **extra: Any) -> dict[str, Any]:
    return {
        "apikey": apikey,
        "resource": "/iot/json",
        "entity_type": "FloodMonitoring",
        "attributes": [
            {
                "object_id": "d",
                "name": "measuredDistance",
                "type": "Number",
                "metadata": {"unitCode": {"type": "Text", "value": "MTR"}},
            }
        ],
        "static_attributes": [{"name": "location", "type": "geo:point", "value": "34.34, 134.04"}],
        "model": "FloodMonitoring",
        "model_params": {"referenceLevel": 3.2, "alertLevel": 2.0},
        **extra,
    }


async def test_a_posted_service_group_is_listed_in_ngsi_ld_terms(iota: Iota) -> None:
    apikey = unique("key")
    response = await iota.call("POST", "/iot/services", {"services": [gauge_group(apikey)]})
    assert response.status == 201, await response.text()

    listed = await iota.json("GET", "/iot/services")

    assert listed["count"] == 1
    group = listed["services"][0]
    assert (group["apikey"], group["service"], group["subservice"]) == ("key-***", iota.service, "/")
    assert group["attributes"] == [
        {"object_id": "d", "name": "measuredDistance", "type": "Number", "unitCode": "MTR"}
    ]
    assert group["static_attributes"] == [
        {
            "name": "location",
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [134.04, 34.34]},
        }
    ]
    assert group["model_params"] == {"referenceLevel": 3.2, "alertLevel": 2.0}
    assert group["autoprovision"] is True


async def test_groups_are_also_served_at_iot_groups(iota: Iota) -> None:
    apikey = unique("key")
    await iota.json("POST", "/iot/groups", {"groups": [gauge_group(apikey)]}, status=201)

    listed = await iota.json("GET", "/iot/groups")

    assert [g["apikey"] for g in listed["groups"]] == ["key-***"]


async def test_listed_apikeys_are_cut_to_a_prefix_unless_the_request_names_the_group_by_its_apikey(
    iota: Iota,
) -> None:
    """Issue 12 item 7: GET /iot/services does not hand out the keys gateways send with."""
    long_key, short_key = unique("key"), "k" + uuid.uuid4().hex[:6]
    groups = [gauge_group(long_key), gauge_group(short_key, resource="/iot/d")]
    await iota.json("POST", "/iot/services", {"services": groups}, status=201)

    listed = await iota.json("GET", "/iot/services")
    assert sorted(g["apikey"] for g in listed["services"]) == ["***", "key-***"]
    assert long_key not in orjson.dumps(listed).decode()

    named = await iota.json("GET", "/iot/services", apikey=long_key)
    assert (named["count"], [g["apikey"] for g in named["services"]]) == (1, [long_key])
    other = await iota.json("GET", "/iot/services", apikey=long_key, resource="/iot/d")
    assert other == {"count": 0, "services": []}


async def test_an_apikey_another_tenant_holds_answers_409_on_another_resource_too(
    iota: Iota, client: Client
) -> None:
    """Issue 12 item 7: an apikey is unique across tenants (a gateway names only its apikey)."""
    taken = unique("key")
    await iota.json("POST", "/iot/services", {"services": [gauge_group(taken)]}, status=201)
    other_town = Iota(client, unique("town"))

    group = await other_town.call(
        "POST", "/iot/services", {"services": [gauge_group(taken, resource="/iot/d")]}
    )
    assert (await problem(group, 409, "AlreadyExists"))["name"] == "DUPLICATE_GROUP"
    device = {"device_id": "intercept", "apikey": taken, "entity_type": "FloodMonitoring"}
    response = await other_town.call("POST", "/iot/devices", {"devices": [device]})
    body = await problem(response, 409, "AlreadyExists")
    assert body["name"] == "DUPLICATE_GROUP"
    assert iota.service not in body["detail"]  # who holds it is not told
    assert (await other_town.json("GET", "/iot/services"))["count"] == 0
    assert (await other_town.json("GET", "/iot/devices"))["count"] == 0


async def test_one_tenant_uses_its_apikey_on_several_resources_and_devices(iota: Iota) -> None:
    apikey = unique("key")
    groups = [gauge_group(apikey), gauge_group(apikey, resource="/iot/d")]
    await iota.json("POST", "/iot/services", {"services": groups}, status=201)
    device = {"device_id": "own", "apikey": apikey, "entity_type": "FloodMonitoring"}
    await iota.json("POST", "/iot/devices", {"devices": [device]}, status=201)
    assert (await iota.json("GET", "/iot/services"))["count"] == 2


async def test_an_apikey_is_free_for_another_tenant_once_its_holder_removed_every_use(
    iota: Iota, client: Client
) -> None:
    apikey = unique("key")
    await iota.json("POST", "/iot/services", {"services": [gauge_group(apikey)]}, status=201)
    device = {"device_id": "d1", "apikey": apikey, "entity_type": "FloodMonitoring"}
    await iota.json("POST", "/iot/devices", {"devices": [device]}, status=201)
    other_town = Iota(client, unique("town"))
    await iota.json("DELETE", "/iot/services", resource="/iot/json", apikey=apikey, status=204)
    # Its device still uses the apikey.
    still = await other_town.call("POST", "/iot/services", {"services": [gauge_group(apikey)]})
    await problem(still, 409, "AlreadyExists")

    await iota.json("DELETE", "/iot/devices/d1", status=204)
    await other_town.json("POST", "/iot/services", {"services": [gauge_group(apikey)]}, status=201)


async def test_a_taken_apikey_answers_409_duplicate_group_and_stores_none_of_the_request(
    iota: Iota, client: Client
) -> None:
    taken, fresh = unique("key"), unique("key")
    await iota.json("POST", "/iot/services", {"services": [gauge_group(taken)]}, status=201)
    other_town = Iota(client, unique("town"))

    response = await other_town.call(
        "POST", "/iot/services", {"services": [gauge_group(fresh), gauge_group(taken)]}
    )

    body = await problem(response, 409, "AlreadyExists")
    assert body["name"] == "DUPLICATE_GROUP"
    assert (await other_town.json("GET", "/iot/services"))["count"] == 0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"colour": "red"}, "unknown field"),
        ({"attributes": {"name": "x"}}, "array of objects"),
        ({"explicitAttrs": "yes"}, "true or false"),
        ({"codec": "zip"}, "codec"),
        ({"codec": "layout"}, "non-empty layout"),
        ({"layout": [{"name": "level", "offset": 0, "length": 3}]}, "length 1, 2, 4 or 8"),
        ({"entityNameExp": "id + sn"}, "entityNameExp"),
        ({"protocol": "coap"}, "protocol"),
        ({"attributes": [{"name": "t", "expression": "t * 2"}]}, "expression is not supported"),
        ({"static_attributes": [{"name": "location", "type": "geo:point", "value": "north"}]}, "geo:point"),
        ({"apikey": ""}, "apikey"),
        ({"apikey": "k" * 3000}, "longer than 256"),
        ({"resource": "/r" * 200}, "resource"),
    ],
)
async def test_a_group_with_a_wrong_field_answers_400_and_stores_nothing(
    iota: Iota, change: dict[str, Any], words: str
) -> None:
    response = await iota.call(
        "POST", "/iot/services", {"services": [{**gauge_group(unique("key")), **change}]}
    )

    body = await problem(response, 400, "BadRequestData")
    assert words in body["detail"]
    assert body["name"] == "WRONG_SYNTAX"
    assert (await iota.json("GET", "/iot/services"))["count"] == 0


async def test_a_body_that_is_not_json_answers_400(iota: Iota) -> None:
    response = await iota.client.post(
        "/iot/services",
        data=b"{services",
        headers={"Fiware-Service": iota.service, "Content-Type": "application/json"},
    )

    await problem(response, 400, "InvalidRequest")


async def test_put_changes_the_fields_given_and_delete_removes_the_group(iota: Iota) -> None:
    apikey = unique("key")
    await iota.json("POST", "/iot/services", {"services": [gauge_group(apikey)]}, status=201)

    put = await iota.call(
        "PUT", "/iot/services", {"entity_type": "WaterObserved"}, resource="/iot/json", apikey=apikey
    )
    assert put.status == 204, await put.text()
    group = (await iota.json("GET", "/iot/services"))["services"][0]
    assert group["entity_type"] == "WaterObserved"
    assert group["model"] == "FloodMonitoring"

    deleted = await iota.call("DELETE", "/iot/services", resource="/iot/json", apikey=apikey)
    assert deleted.status == 204
    assert (await iota.json("GET", "/iot/services"))["count"] == 0
    again = await iota.call("DELETE", "/iot/services", resource="/iot/json", apikey=apikey)
    assert (await problem(again, 404, "ResourceNotFound"))["name"] == "DEVICE_GROUP_NOT_FOUND"


async def test_a_device_lives_through_create_read_update_delete(iota: Iota) -> None:
    device = {
        "device_id": "gauge-7",
        "entity_type": "FloodMonitoring",
        "protocol": "IoTA-JSON",
        "timezone": "Asia/Tokyo",
    }
    await iota.json("POST", "/iot/devices", {"devices": [device]}, status=201)

    read = await iota.json("GET", "/iot/devices/gauge-7")
    assert read["entity_name"] == "urn:ngsi-ld:FloodMonitoring:gauge-7"
    assert (read["protocol"], read["timezone"], read["service"]) == ("iota-json", "Asia/Tokyo", iota.service)

    put = await iota.call("PUT", "/iot/devices/gauge-7", {"model_params": {"dangerLevel": 1.0}})
    assert put.status == 204, await put.text()
    read = await iota.json("GET", "/iot/devices/gauge-7")
    assert read["model_params"] == {"dangerLevel": 1.0}
    assert read["entity_name"] == "urn:ngsi-ld:FloodMonitoring:gauge-7"

    assert (await iota.call("DELETE", "/iot/devices/gauge-7")).status == 204
    gone = await iota.call("GET", "/iot/devices/gauge-7")
    assert (await problem(gone, 404, "ResourceNotFound"))["name"] == "DEVICE_NOT_FOUND"


async def test_devices_are_listed_with_their_count_and_paged(iota: Iota) -> None:
    devices = [{"device_id": f"plow-{n:03}", "entity_type": "Vehicle"} for n in range(5)]
    await iota.json("POST", "/iot/devices", {"devices": devices}, status=201)

    page = await iota.json("GET", "/iot/devices", limit="2", offset="3")

    assert page["count"] == 5
    assert [d["device_id"] for d in page["devices"]] == ["plow-003", "plow-004"]


async def test_a_device_id_posted_twice_answers_409_duplicate_device_id(iota: Iota) -> None:
    await iota.json("POST", "/iot/devices", {"devices": [{"device_id": "tag-1"}]}, status=201)

    response = await iota.call(
        "POST", "/iot/devices", {"devices": [{"device_id": "tag-2"}, {"device_id": "tag-1"}]}
    )

    assert (await problem(response, 409, "AlreadyExists"))["name"] == "DUPLICATE_DEVICE_ID"
    assert (await iota.json("GET", "/iot/devices"))["count"] == 1


async def test_a_dev_eui_is_provisioned_once_across_tenants(iota: Iota, client: Client) -> None:
    dev_eui = uuid.uuid4().hex[:16]
    lorawan = {"lorawan": {"application_server": {"provider": "TTN"}, "dev_eui": dev_eui.upper()}}
    await iota.json(
        "POST", "/iot/devices", {"devices": [{"device_id": "g1", "internal_attributes": lorawan}]}, status=201
    )
    read = await iota.json("GET", "/iot/devices/g1")
    assert read["dev_eui"] == dev_eui

    other = Iota(client, unique("town"))
    response = await other.call(
        "POST", "/iot/devices", {"devices": [{"device_id": "g1", "dev_eui": dev_eui}]}
    )

    assert (await problem(response, 409, "AlreadyExists"))["name"] == "DUPLICATE_DEVICE_ID"


async def test_a_device_with_a_wrong_field_answers_400_and_stores_nothing(iota: Iota) -> None:
    devices = [{"device_id": "ok-1"}, {"device_id": "bad-1", "dev_eui": "not-hex"}]

    response = await iota.call("POST", "/iot/devices", {"devices": devices})

    assert "dev_eui" in (await problem(response, 400, "BadRequestData"))["detail"]
    assert (await iota.json("GET", "/iot/devices"))["count"] == 0


async def test_tenants_and_service_paths_keep_devices_apart(iota: Iota, client: Client) -> None:
    north = Iota(client, iota.service, "/north")
    await north.json("POST", "/iot/devices", {"devices": [{"device_id": "d1"}]}, status=201)
    await iota.json("POST", "/iot/devices", {"devices": [{"device_id": "d2"}]}, status=201)
    stranger = Iota(client, unique("town"), "/north")

    assert [d["device_id"] for d in (await north.json("GET", "/iot/devices"))["devices"]] == ["d1"]
    assert [d["device_id"] for d in (await iota.json("GET", "/iot/devices"))["devices"]] == ["d2"]
    assert (await stranger.json("GET", "/iot/devices"))["count"] == 0
    await problem(await stranger.call("GET", "/iot/devices/d1"), 404, "ResourceNotFound")
    every = Iota(client, iota.service, "/*")
    assert (await every.json("GET", "/iot/devices"))["count"] == 2


async def test_a_service_path_that_is_not_one_answers_400(iota: Iota, client: Client) -> None:
    bad = Iota(client, iota.service, "north")

    response = await bad.call("POST", "/iot/devices", {"devices": [{"device_id": "d1"}]})

    assert "fiware-servicepath" in (await problem(response, 400, "BadRequestData"))["detail"]


async def test_entity_names_become_urns_and_uris_are_kept(iota: Iota) -> None:
    devices = [
        {"device_id": "t1", "entity_type": "Thermometer", "entity_name": "Thermometer:t1"},
        {"device_id": "t2", "entity_type": "Thermometer", "entity_name": "room-2"},
        {"device_id": "t3", "entity_type": "Thermometer", "entity_name": "urn:ngsi-ld:Device:kasuga-3"},
    ]
    await iota.json("POST", "/iot/devices", {"devices": devices}, status=201)

    listed = (await iota.json("GET", "/iot/devices"))["devices"]

    assert [d["entity_name"] for d in listed] == [
        "urn:ngsi-ld:Thermometer:t1",
        "urn:ngsi-ld:Thermometer:room-2",
        "urn:ngsi-ld:Device:kasuga-3",
    ]


async def test_a_provisioned_device_is_found_at_once_with_its_group_defaults(
    iota: Iota, client: Client
) -> None:
    apikey = unique("key")
    group = gauge_group(apikey, entityNameExp="'urn:ngsi-ld:FloodMonitoring:' + service + '-' + id")
    await iota.json("POST", "/iot/services", {"services": [group]}, status=201)
    device = {
        "device_id": "kasuga",
        "apikey": apikey,
        "model_params": {"dangerLevel": 1.2},
        "explicitAttrs": True,
    }
    await iota.json("POST", "/iot/devices", {"devices": [device]}, status=201)

    config = client.app[DEVICES].by_apikey_device(apikey, "kasuga")

    assert config is not None
    assert config.entity_name == f"urn:ngsi-ld:FloodMonitoring:{iota.service}-kasuga"
    assert (config.tenant, config.entity_type, config.model) == (
        iota.service,
        "FloodMonitoring",
        "FloodMonitoring",
    )
    assert config.model_params == {"referenceLevel": 3.2, "alertLevel": 2.0, "dangerLevel": 1.2}
    assert config.explicit_attrs
    assert config.provisioned
    mapping = config.attribute("d")
    assert mapping is not None
    assert (mapping.name, mapping.type, mapping.unit_code, mapping.source_type) == (
        "measuredDistance",
        "Property",
        "MTR",
        "Number",
    )


async def test_deleting_a_group_with_device_true_deletes_its_devices_too(iota: Iota) -> None:
    kept_key, gone_key = unique("key"), unique("key")
    await iota.json(
        "POST", "/iot/services", {"services": [gauge_group(kept_key), gauge_group(gone_key)]}, status=201
    )
    devices = [{"device_id": "a", "apikey": gone_key}, {"device_id": "b", "apikey": kept_key}]
    await iota.json("POST", "/iot/devices", {"devices": devices}, status=201)

    response = await iota.call(
        "DELETE", "/iot/services", resource="/iot/json", apikey=gone_key, device="true"
    )

    assert response.status == 204
    assert [d["device_id"] for d in (await iota.json("GET", "/iot/devices"))["devices"]] == ["b"]


async def test_a_sigfox_device_is_read_by_its_id_in_either_case(iota: Iota) -> None:
    sigfox_id = uuid.uuid4().hex[:8]
    await iota.json(
        "POST", "/iot/devices", {"devices": [{"device_id": sigfox_id, "protocol": "sigfox"}]}, status=201
    )

    upper = await iota.json("GET", f"/iot/devices/{sigfox_id.upper()}")
    lower = await iota.json("GET", f"/iot/devices/{sigfox_id.lower()}")

    assert upper == lower
    assert upper["device_id"] == sigfox_id.upper()


@pytest.mark.parametrize(
    "body",
    [
        {"services": [{"apikey": "k-nul", "description": "a\u0000b"}]},
        {"services": [{"apikey": "k-nul", "model_params": {"alertLevel": "\u0000"}}]},
        {"services": [{"apikey": "k-\u0000"}]},
    ],
)
async def test_a_nul_character_anywhere_in_the_body_answers_400(iota: Iota, body: dict[str, Any]) -> None:
    response = await iota.call("POST", "/iot/services", body)

    await problem(response, 400, "BadRequestData")
    assert (await iota.json("GET", "/iot/services"))["count"] == 0


async def test_a_body_nested_deeper_than_the_json_depth_limit_answers_400_and_stores_nothing(
    iota: Iota,
) -> None:
    # orjson reads it, but it could not be written back (jsonb, logs): refused at the edge, as on
    # every other route (issue 11, defect 7).
    nested = "[" * 300 + "]" * 300
    raw = f'{{"services": [{{"apikey": "k-deep", "internal_attributes": {nested}}}]}}'.encode()
    headers = {"Fiware-Service": iota.service, "Fiware-ServicePath": iota.path}
    headers["Content-Type"] = "application/json"
    response = await iota.client.post("/iot/services", data=raw, headers=headers)

    body = await problem(response, 400, "BadRequestData")
    assert "NGSI_MAX_JSON_DEPTH" in body["detail"]
    assert body["name"] == "WRONG_SYNTAX"
    assert (await iota.json("GET", "/iot/services"))["count"] == 0
