"""Adapter mode (issue 14 item 5): device changes reach an external NGSI-LD broker, in order, none lost.

A second instance of this broker, on a loopback port of its own and with a tenant of its own (the
same database: the source's tenant is mapped to another name there), stands in for Orion-LD. The source broker forwards with NGSI_FORWARD_URL pointing at it; the target is
stopped and started again while device measurements flow.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from broker.api.forwarding import DEAD_LETTERS
from broker.app import create_app
from broker.config import Settings
from broker.store.history import row_id_of
from tests.conftest import Api, eventually
from tests.integration.helpers import ERRORS

TEMPORAL = "/ngsi-ld/v1/temporal/entities/"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def target_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.replace(mqtt_ingest=False, **changes)


@asynccontextmanager
async def serving(settings: Settings, port: int | None = None) -> AsyncIterator[TestClient[Any, Any]]:
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    async with TestClient(server) as client:
        yield client


async def provision_thermometer(api: Api, apikey: str, entity_id: str) -> None:
    headers = {"fiware-service": api.tenant, "fiware-servicepath": "/"}
    group = {"apikey": apikey, "entity_type": "Thermometer", "resource": "/iot/json"}
    response = await api.request("POST", "/iot/services", {"services": [group]}, headers=headers)
    assert response.status == 201, await response.text()
    device = {
        "device_id": "th01",
        "entity_name": entity_id,
        "entity_type": "Thermometer",
        "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}],
    }
    response = await api.request("POST", "/iot/devices", {"devices": [device]}, headers=headers)
    assert response.status == 201, await response.text()


async def measure(api: Api, apikey: str, body: dict[str, Any]) -> None:
    response = await api.request("POST", f"/iot/json?k={apikey}&i=th01", body)
    assert response.status == 200, await response.text()


async def forwarding_status(api: Api) -> dict[str, Any]:
    response = await api.client.get("/health")
    assert response.status == 200
    body: dict[str, Any] = (await response.json())["forwarding"]
    return body


async def value_at(hub: Api, entity_id: str, attr: str = "temperature") -> Any:
    response = await hub.get(entity_id)
    if response.status != 200:
        return None
    return (await response.json(content_type=None)).get(attr, {}).get("value")


async def history_in_arrival_order(hub: Api, entity_id: str, attr: str = "temperature") -> list[Any]:
    """The target's instances of ``attr``, ordered as the target stored them (history row ids)."""
    response = await hub.request("GET", TEMPORAL + entity_id, params={"attrs": attr})
    assert response.status == 200, await response.text()
    instances = (await response.json(content_type=None))[attr]
    instances = instances if isinstance(instances, list) else [instances]
    instances.sort(key=lambda i: row_id_of(i["instanceId"]) or 0)
    return [i["value"] for i in instances]


def without_repeats(values: list[Any]) -> list[Any]:
    """``values`` with each run of one repeated value kept once."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


@pytest.fixture
def names() -> tuple[str, str]:
    """A tenant here and the target's tenant it maps to (NGSI_FORWARD_TENANT_MAP)."""
    tenant = f"test-{secrets.token_hex(6)}"
    return tenant, f"{tenant}-hub"


def source_settings(settings: Settings, port: int, tenant: str, hub: str, **changes: Any) -> Settings:
    return settings.replace(
        mqtt_ingest=False,
        forward_url=f"http://127.0.0.1:{port}",
        forward_allow_private=True,
        forward_tenant_map=((tenant, hub),),
        forward_backoff_max=0.5,
        **changes,
    )


async def test_device_measurements_reach_the_target_across_its_restart_in_order(
    settings: Settings, names: tuple[str, str]
) -> None:
    tenant, hub_tenant = names
    port = free_port()
    apikey = f"fw{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Thermometer:{secrets.token_hex(4)}"
    api_made = f"urn:ngsi-ld:Thermometer:{secrets.token_hex(4)}"
    sent: list[int] = []
    async with serving(source_settings(settings, port, tenant, hub_tenant)) as source:
        api = Api(source, tenant)
        await provision_thermometer(api, apikey, entity_id)
        async with serving(target_settings(settings), port) as target:
            hub = Api(target, hub_tenant)
            for value in range(10):
                await measure(api, apikey, {"t": value})
                sent.append(value)
            await eventually(lambda: value_at(hub, entity_id), what="the first values at the target")
            await eventually(
                partial(_value_is, hub, entity_id, "temperature", 9), what="value 9 at the target"
            )
        # The target is down: measurements keep being accepted, and wait.
        for value in range(10, 30):
            await measure(api, apikey, {"t": value})
            sent.append(value)
        # An API change: not from a device, so not forwarded with NGSI_FORWARD_SCOPE=devices.
        response = await api.create({"id": api_made, "type": "Thermometer", "temperature": {"value": -1}})
        assert response.status == 201, await response.text()
        status = await eventually(
            lambda: _down_with_backlog(api), what="/health showing the outage and the backlog"
        )
        assert status["lastError"]
        ready = await source.get("/ready")
        assert ready.status == 200, await ready.text()  # the target being down is not ours to be
        async with serving(target_settings(settings), port) as target:
            hub = Api(target, hub_tenant)
            for value in range(30, 40):
                await measure(api, apikey, {"t": value})
                sent.append(value)
            await eventually(
                partial(_value_is, hub, entity_id, "temperature", 39), what="value 39 at the target"
            )
            status = await eventually(lambda: _drained(api), what="an empty backlog")
            assert status["reachable"] is True
            # At least once: a batch whose answer was lost when the target stopped comes again,
            # next to itself. Nothing is missing and nothing is out of order.
            assert without_repeats(await history_in_arrival_order(hub, entity_id)) == sent
            assert (await hub.get(api_made)).status == 404


async def test_a_change_the_target_refuses_is_a_dead_letter_and_the_next_one_still_goes(
    settings: Settings, names: tuple[str, str]
) -> None:
    tenant, hub_tenant = names
    port = free_port()
    apikey = f"fw{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Thermometer:{secrets.token_hex(4)}"
    # The target takes less nesting than the source: a deep measurement is a 400 there.
    async with (
        serving(source_settings(settings, port, tenant, hub_tenant)) as source,
        serving(target_settings(settings, max_json_depth=5), port) as target,
    ):
        api, hub = Api(source, tenant), Api(target, hub_tenant)
        await provision_thermometer(api, apikey, entity_id)
        await measure(api, apikey, {"t": 1})
        await eventually(partial(_value_is, hub, entity_id, "temperature", 1), what="value 1 at the target")
        before = await forwarding_status(api)
        await measure(api, apikey, {"t": 2, "deep": {"a": {"b": {"c": {"d": 1}}}}})
        await measure(api, apikey, {"t": 3})
        await eventually(partial(_value_is, hub, entity_id, "temperature", 3), what="value 3 at the target")
        stored = await api.get_json(entity_id)
        assert stored["deep"]["value"] == {"a": {"b": {"c": {"d": 1}}}}  # ours has it
        assert (await hub.get_json(entity_id)).get("deep") is None  # the target refused it
        assert await history_in_arrival_order(hub, entity_id) == [1, 3]
        status = await eventually(lambda: _drained(api), what="an empty backlog")
        assert status["refused"] == before["refused"] + 1
        assert status["deadLetters"] >= before["deadLetters"] + 1
        response = await api.request("GET", DEAD_LETTERS)
        assert response.status == 200, await response.text()
        letters = await response.json()
        assert [(d["entityId"], d["operation"], d["status"]) for d in letters] == [(entity_id, "upsert", 400)]
        assert "nest" in letters[0]["reason"]
        assert letters[0]["data"]["deep"]["value"] == {"a": {"b": {"c": {"d": 1}}}}
        assert await (await Api(source, hub_tenant).request("GET", DEAD_LETTERS)).json() == []
        for bad, status in (({"limit": "x"}, 400), ({"limit": "100000"}, 403)):
            response = await api.request("GET", DEAD_LETTERS, params=bad)
            assert response.status == status, await response.text()
            assert (await response.json(content_type=None))["type"].startswith(ERRORS)
        response = await api.request("GET", DEAD_LETTERS, params={"offset": "1"})
        assert await response.json() == []


async def _down_with_backlog(api: Api) -> dict[str, Any] | None:
    status = await forwarding_status(api)
    return status if not status["reachable"] and status["backlog"] > 0 else None


async def _drained(api: Api) -> dict[str, Any] | None:
    status = await forwarding_status(api)
    return status if status["backlog"] == 0 else None


async def test_two_processes_forwarding_at_once_keep_each_entitys_order(
    settings: Settings, names: tuple[str, str]
) -> None:
    tenant, hub_tenant = names
    port = free_port()
    ids = [f"urn:ngsi-ld:Counter:{secrets.token_hex(4)}" for _ in range(5)]
    every = source_settings(settings, port, tenant, hub_tenant, forward_scope="all", forward_batch=2)
    async with (
        serving(target_settings(settings), port) as target,
        serving(every) as first,
        serving(every) as second,
    ):
        hub = Api(target, hub_tenant)
        sources = [Api(first, tenant), Api(second, tenant)]
        for n in range(30):
            body = [{"id": i, "type": "Counter", "n": {"type": "Property", "value": n}} for i in ids]
            response = await sources[n % 2].request(
                "POST", "/ngsi-ld/v1/entityOperations/upsert", body, params={"options": "update"}
            )
            assert response.status in (201, 204), await response.text()
        doomed = ids[0]
        response = await sources[0].request("DELETE", f"/ngsi-ld/v1/entities/{doomed}")
        assert response.status == 204, await response.text()
        for entity_id in ids[1:]:
            await eventually(partial(_value_is, hub, entity_id, "n", 29), what=f"{entity_id} at 29")
        await eventually(lambda: _status_is(hub, doomed, 404), what="the deletion forwarded")
        for entity_id in ids[1:]:
            values = await history_in_arrival_order(hub, entity_id, "n")
            assert without_repeats(values) == list(range(30)), entity_id
        both = [await forwarding_status(api) for api in sources]
        assert all(status["forwarded"] > 0 for status in both), both  # both processes took part


async def _value_is(api: Api, entity_id: str, attr: str, wanted: Any) -> bool:
    return bool(await value_at(api, entity_id, attr) == wanted)


async def _status_is(api: Api, entity_id: str, status: int) -> bool:
    return (await api.get(entity_id)).status == status


async def test_changes_queued_while_the_target_is_down_survive_a_restart_of_this_broker(
    settings: Settings, names: tuple[str, str]
) -> None:
    tenant, hub_tenant = names
    port = free_port()
    apikey = f"fw{secrets.token_hex(4)}"
    entity_id = f"urn:ngsi-ld:Thermometer:{secrets.token_hex(4)}"
    forwarding_settings = source_settings(settings, port, tenant, hub_tenant)
    async with serving(forwarding_settings) as source:
        api = Api(source, tenant)
        await provision_thermometer(api, apikey, entity_id)
        for value in range(5):
            await measure(api, apikey, {"t": value})
        await eventually(lambda: _down_with_backlog(api), what="the changes waiting for the target")
    # This broker is gone (its forwarder with it); the target comes up; this broker starts again.
    async with (
        serving(target_settings(settings), port) as target,
        serving(forwarding_settings) as source,
    ):
        hub = Api(target, hub_tenant)
        await eventually(partial(_value_is, hub, entity_id, "temperature", 4), what="value 4 at the target")
        assert without_repeats(await history_in_arrival_order(hub, entity_id)) == list(range(5))
