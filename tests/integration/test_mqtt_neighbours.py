"""Living next to an IoT Agent or another hub on the same Mosquitto (issue 13 item 16).

Each test runs a hub of its own (its own MQTT session and shared-subscription group) against the
real Mosquitto: a family switched off is not subscribed to, so its messages stay with the other
members of the group; a topic prefix gives the hub topics of its own; an IoT Agent message for an
apikey no tenant here has is another agent's: acknowledged and counted, not dead-lettered.
Tests that store run under a prefix of their own, so the session's app (subscribed to the usual
topics) does not store or dead-letter their messages a second time.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.config import Settings
from tests.conftest import Api, database_url, eventually, forget_mqtt_session
from tests.integration.test_delivery import MqttListener
from tests.integration.test_device_ingest import entity_when, mqtt_send, provision

pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def hub(settings: Settings, **changes: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """A broker app with its own MQTT session and share group, once it is subscribed."""
    client_id = f"ngsi-test-hub-{uuid.uuid4().hex[:10]}"
    changes.setdefault("mqtt_share_group", f"g{uuid.uuid4().hex[:8]}")
    app = create_app(settings.replace(mqtt_client_id=client_id, **changes))
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await eventually(lambda: _mqtt(client), within=10.0, what="the hub subscribed")
            yield client
    finally:
        await asyncio.to_thread(forget_mqtt_session, settings.mqtt_url, client_id)


async def devices(client: TestClient[Any, Any]) -> dict[str, Any]:
    """The hub's device counters (/health devices)."""
    response = await client.get("/health")
    body: dict[str, Any] = await response.json()
    return body["devices"]  # type: ignore[no-any-return]


async def _mqtt(client: TestClient[Any, Any]) -> bool:
    mqtt = (await devices(client)).get("mqtt")
    return bool(mqtt and mqtt["connected"])


async def letters_at(origin: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url())
    try:
        return await conn.fetch("SELECT tenant, reason FROM dead_letters WHERE origin = $1", origin)
    finally:
        await conn.close()


async def test_a_family_switched_off_is_not_consumed_and_stays_for_the_other_subscriber(
    settings: Settings,
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}"
    # The test is the other member of the hub's group, for the IoT Agent topics: were the hub
    # subscribed to them too, Mosquitto would hand it every other message.
    async with (
        hub(settings, mqtt_share_group=group, mqtt_families=("tts", "chirpstack")) as client,
        MqttListener(f"$share/{group}//json/+/+/attrs") as json_agent,
        MqttListener(f"$share/{group}//ul/+/+/attrs") as ul_agent,
    ):
        apikey = f"agent{secrets.token_hex(4)}"
        for n in range(4):
            await mqtt_send(f"/json/{apikey}/d{n}/attrs", b'{"t": 1}')
            await mqtt_send(f"/ul/{apikey}/d{n}/attrs", "t|1")
        await json_agent.wait(4, within=10.0)
        await ul_agent.wait(4, within=10.0)
        # A family left on is consumed (an unknown device: a dead letter with its origin).
        tts = f"v3/app-{secrets.token_hex(3)}@ttn/devices/wl-{secrets.token_hex(3)}/up"
        await mqtt_send(tts, b"{not json")

        async def consumed() -> bool:
            received: int = (await devices(client))["mqtt"]["received"]
            return received >= 1

        await eventually(consumed, within=10.0, what="the TTS message consumed")
        assert (await devices(client))["mqtt"]["received"] == 1
        assert len(json_agent.messages) == 4
        assert len(ul_agent.messages) == 4


async def test_a_topic_prefix_is_subscribed_to_and_stripped_and_the_usual_topics_are_left_alone(
    settings: Settings,
) -> None:
    prefix = f"hub{secrets.token_hex(3)}/city"
    async with hub(settings, mqtt_topic_prefix=prefix) as client:
        api = Api(client, f"t{secrets.token_hex(4)}")
        apikey = f"key{secrets.token_hex(4)}"
        entity_id = f"urn:ngsi-ld:Thermometer:{secrets.token_hex(4)}"
        await provision(
            api,
            {"device_id": "th01", "entity_name": entity_id, "entity_type": "Thermometer"},
            groups=[{"apikey": apikey, "entity_type": "Thermometer", "resource": "/iot/json"}],
        )

        # The usual topic is not this hub's. The session's app, if running, takes it: of another
        # device, so that app's verdict cannot land on th01's entity after this hub's (it did once).
        await mqtt_send(f"/json/{apikey}/th99/attrs", b'{"t": 5.0}')
        await mqtt_send(f"{prefix}/json/{apikey}/th01/attrs", b'{"t": 21.5}')
        entity = await entity_when(api, entity_id, lambda e: e["t"]["value"] == 21.5)
        assert entity["t"]["value"] == 21.5
        assert (await devices(client))["mqtt"]["received"] == 1

        # A TTS topic under the prefix reaches the TTS parser, its dead letter under the usual topic.
        tts = f"v3/app-{secrets.token_hex(3)}@ttn/devices/wl-{secrets.token_hex(3)}/up"
        await mqtt_send(f"{prefix}/{tts}", b"{not json")
        letters = await eventually(lambda: letters_at(tts), within=10.0, what="the TTS dead letter")
        assert "not JSON" in letters[0]["reason"]
        # The legacy IoT Agent topic of an apikey named v3 stays an IoT Agent topic (a foreign one).
        await mqtt_send(f"{prefix}/v3/th01/attrs", b'{"t": 1}')

        async def foreign() -> bool:
            counted: int = (await devices(client))["foreign"]
            return counted == 1

        await eventually(foreign, within=10.0, what="the v3 apikey's message counted as foreign")


async def test_a_foreign_apikey_is_acknowledged_and_counted_without_a_dead_letter(settings: Settings) -> None:
    prefix = f"hub{secrets.token_hex(3)}"
    async with hub(settings, mqtt_topic_prefix=prefix) as client:
        api = Api(client, f"t{secrets.token_hex(4)}")
        apikey, foreign = f"key{secrets.token_hex(4)}", f"other{secrets.token_hex(4)}"
        entity_id = f"urn:ngsi-ld:Thermometer:{secrets.token_hex(4)}"
        await provision(
            api,
            {"device_id": "th01", "entity_name": entity_id, "entity_type": "Thermometer"},
            groups=[
                {
                    "apikey": apikey,
                    "entity_type": "Thermometer",
                    "resource": "/iot/json",
                    "autoprovision": False,
                }
            ],
        )

        await mqtt_send(f"{prefix}/json/{foreign}/th01/attrs", b'{"t": 9.9}')
        await mqtt_send(f"{prefix}/ul/{foreign}/th01/attrs", "t|9.9")
        await mqtt_send(f"{prefix}/json/{apikey}/th01/attrs", b'{"t": 21.5}')
        await entity_when(api, entity_id, lambda e: e["t"]["value"] == 21.5)
        # A known apikey's unknown device is still a dead letter, in the apikey's tenant.
        await mqtt_send(f"{prefix}/json/{apikey}/nobody/attrs", b'{"t": 1}')
        letters = await eventually(
            lambda: letters_at(f"/json/{apikey}/nobody/attrs"),
            within=10.0,
            what="the unknown device's letter",
        )
        assert "unknown device" in letters[0]["reason"]

        counters = await devices(client)
        assert counters["foreign"] == 2
        assert counters["mqtt"]["acknowledged"] == counters["mqtt"]["received"] == 4
        assert await letters_at(f"/json/{foreign}/th01/attrs") == []
        assert await letters_at(f"/ul/{foreign}/th01/attrs") == []

        # Over HTTP someone sent it to us: a refusal with a dead letter, as before.
        response = await api.request("POST", f"/iot/json?k={foreign}&i=th01", {"t": 1})
        assert response.status == 400
        assert len(await letters_at(f"/iot/json?k={foreign}&i=th01")) == 1
        assert (await devices(client))["foreign"] == 2
