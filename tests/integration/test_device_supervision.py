"""Issue 11, supervision of the device side: each long-running part, killed, restarts and says so.

Each test serves a broker app of its own whose Supervisor backs off on a ManualClock, raises
inside one part (the pipeline's batch loop, the MQTT connection keeper, the command dispatcher,
the housekeeping, the provisioning upkeep), and asserts that /ready answers 503 naming that part while it waits for its
restart, that /health keeps answering, and that once the clock moves past the back-off the part
runs again, /ready answers 200 and a device message is stored through it (ETSI GS CIM 009
V1.9.1 clause 5.6.3, Append Entity Attributes, is what the message becomes).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from paho.mqtt.enums import CallbackAPIVersion

from adapters import commands, pipeline
from adapters import mqtt as device_mqtt
from adapters.deadletters import DeadLetters
from adapters.http import PIPELINE
from adapters.keys import DEVICES
from adapters.provisioning import registry as provisioning
from adapters.wiring import COMMANDS, HOUSEKEEPING, MQTT
from broker.api.keys import SUPERVISOR
from broker.app import create_app
from broker.config import Settings
from tests.clock import ManualClock
from tests.conftest import Api, eventually, forget_mqtt_session
from tests.integration.test_delivery import MQTT_HOST, MQTT_PORT
from tests.integration.test_device_ingest import mqtt_send, provision

Client = TestClient[Any, Any]
FAULT = "RuntimeError: fault injected by the test"


@dataclass
class Broker:
    """The app under test, its hand-driven clock and a tenant with one provisioned sensor."""

    client: Client
    clock: ManualClock
    api: Api
    apikey: str
    entity_id: str

    async def ready(self) -> tuple[int, dict[str, Any]]:
        response = await self.client.get("/ready")
        body: dict[str, Any] = await response.json()
        return response.status, body

    async def down_is(self, part: str, reason: str) -> None:
        """/ready answers 503 naming ``part`` with ``reason`` (and /health still answers 200)."""

        async def check() -> bool:
            status, body = await self.ready()
            return status == 503 and body.get("down", {}).get(part) == reason

        await eventually(check, what=f"/ready naming {part}")
        assert (await self.client.get("/health")).status == 200
        assert self.client.app[SUPERVISOR].report()[part]["lastError"] == FAULT

    async def restarted(self, part: str) -> None:
        """Move the clock past the first back-off; the part runs again and /ready is 200."""
        await self.clock.advance(0.5)

        async def check() -> bool:
            state = self.client.app[SUPERVISOR].report()[part]
            return (
                bool(state["running"])
                and state["restarts"] == 1
                and await self.ready()
                == (
                    200,
                    {"status": "ready", "database": "ok"},
                )
            )

        await eventually(check, what=f"{part} running again and /ready 200")

    async def stored(self, value: int) -> None:
        """The sensor's entity holds ``value`` (read from the shared database through this app)."""

        async def check() -> bool:
            response = await self.api.get(self.entity_id)
            return response.status == 200 and (await response.json())["n"]["value"] == value

        await eventually(check, what=f"n = {value} stored")


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Broker]:
    """A broker app of its own, started, with a tenant and a provisioned sensor."""
    client_id = f"ngsi-test-sup-{uuid.uuid4().hex[:8]}"
    clock = ManualClock()
    # A small pool and an MQTT session of its own: this app runs next to the session's.
    app = create_app(replace(settings, db_pool_min=1, db_pool_max=6, mqtt_client_id=client_id), clock=clock)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            api = Api(client, f"test-{uuid.uuid4().hex[:12]}")
            apikey = f"sup{secrets.token_hex(4)}"
            entity_id = f"urn:ngsi-ld:Sensor:{secrets.token_hex(4)}"
            await provision(
                api,
                {"device_id": "s1", "entity_name": entity_id, "entity_type": "Sensor", "apikey": apikey},
                groups=[{"apikey": apikey, "entity_type": "Sensor", "resource": "/iot/json"}],
            )
            ingest = app[MQTT]
            await eventually(lambda: ingest.connected, what="the app's MQTT client connected")
            yield Broker(client, clock, api, apikey, entity_id)
    finally:
        await asyncio.to_thread(forget_mqtt_session, settings.mqtt_url, client_id)


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[Broker]:
    async with serve(settings) as served:
        yield served


def fail_once(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``original``, raising RuntimeError on its first call."""
    calls = 0

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("fault injected by the test")
        return await original(*args, **kwargs)

    return wrapper


async def test_a_fault_in_the_pipeline_loop_restarts_it_and_the_message_it_held_is_stored(
    broker: Broker,
) -> None:
    pipe = broker.client.app[PIPELINE]
    pipe._stage = fail_once(pipe._stage)

    posted = asyncio.ensure_future(broker.api.request("POST", f"/iot/json?k={broker.apikey}&i=s1", {"n": 1}))

    await broker.down_is(pipeline.PART, f"restarting after: {FAULT}")
    assert not posted.done()
    await broker.restarted(pipeline.PART)
    response = await posted
    assert response.status == 200, await response.text()
    await broker.stored(1)
    response = await broker.api.request("POST", f"/iot/json?k={broker.apikey}&i=s1", {"n": 2})
    assert response.status == 200, await response.text()
    await broker.stored(2)


async def test_a_fault_in_the_mqtt_connection_keeper_restarts_it_and_messages_flow_again(
    broker: Broker,
) -> None:
    ingest = broker.client.app[MQTT]
    ingest._paho.connect = fail_once(ingest._paho.connect)
    before = ingest.acknowledged

    # Mosquitto drops the app's connection when another client takes its id over (kept session).
    await asyncio.to_thread(take_over, ingest._paho.client._client_id.decode())

    # Down and disconnected: the connection probe says the more useful of the two.
    where = ingest._paho.broker.where
    await broker.down_is(device_mqtt.PART, f"not connected to MQTT {where} (connection lost)")
    await broker.restarted(device_mqtt.PART)
    await mqtt_send(f"/json/{broker.apikey}/s1/attrs", b'{"n": 3}')
    await broker.stored(3)
    await eventually(lambda: ingest.acknowledged > before, what="the message acknowledged by this app")


def take_over(client_id: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop(timeout=1.0)
    client.disconnect()


async def test_a_fault_in_the_command_dispatcher_restarts_it(broker: Broker) -> None:
    dispatcher = broker.client.app[COMMANDS]
    dispatch = dispatcher.dispatch
    calls = 0

    async def counted() -> int:
        nonlocal calls
        calls += 1
        sent: int = await dispatch()
        return sent

    dispatcher.dispatch = fail_once(counted)
    dispatcher.wake()

    await broker.down_is(commands.PART, f"restarting after: {FAULT}")
    await broker.restarted(commands.PART)
    await eventually(lambda: calls >= 1, what="a dispatch after the restart")
    response = await broker.api.request("POST", f"/iot/json?k={broker.apikey}&i=s1", {"n": 4})
    assert response.status == 200, await response.text()
    await broker.stored(4)


async def test_a_fault_in_the_housekeeping_restarts_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The housekeeping runs at start, then hourly: the fault is in place before the app starts.
    monkeypatch.setattr(DeadLetters, "forget_before", fail_once(DeadLetters.forget_before))
    async with serve(settings) as broker:
        await broker.down_is(HOUSEKEEPING, f"restarting after: {FAULT}")
        await broker.restarted(HOUSEKEEPING)
        response = await broker.api.request("POST", f"/iot/json?k={broker.apikey}&i=s1", {"n": 5})
        assert response.status == 200, await response.text()
        await broker.stored(5)


async def test_a_fault_in_the_provisioning_upkeep_restarts_it_and_autoprovisioned_devices_are_stored(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = broker.client.app[DEVICES]
    monkeypatch.setattr(registry, "persist_pending", fail_once(registry.persist_pending))

    # The upkeep stores autoprovisioned devices every flush interval of the app's clock.
    await eventually(lambda: broker.clock.sleepers > 0, what="the upkeep waiting for its flush")
    await broker.clock.advance(0.5)
    await broker.down_is(provisioning.PART, f"restarting after: {FAULT}")
    await broker.restarted(provisioning.PART)

    # A device the group does not list yet is made on the fly, then stored by the restarted upkeep.
    response = await broker.api.request("POST", f"/iot/json?k={broker.apikey}&i=auto-1", {"n": 6})
    assert response.status == 200, await response.text()
    headers = {"fiware-service": broker.api.tenant, "fiware-servicepath": "/"}

    async def stored() -> bool:
        await broker.clock.advance(0.5)
        found = await broker.api.request("GET", "/iot/devices/auto-1", headers=headers)
        return found.status == 200

    await eventually(stored, what="the autoprovisioned device stored")
