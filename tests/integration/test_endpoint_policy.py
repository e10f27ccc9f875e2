"""SSRF: notification endpoints may not reach the internal network or the broker itself (issue 12 item 7).

Refused at creation and update (400 naming the rule and the setting) and again at delivery,
with the default settings (private addresses off). No packet leaves this machine: names
resolve through a stub resolver, refused addresses are never connected to, and the only
connections made go to receivers and the Mosquitto on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from broker.api.keys import POOL
from broker.app import create_app
from broker.config import Settings
from broker.netguard import Listener
from broker.notify.endpoints import REFUSED, WITHHELD, notify_policy
from broker.store.migrate import migrate
from broker.store.pool import create_pool
from tests.conftest import Api, database_url, eventually, problem
from tests.dns import StubDns
from tests.integration.test_delivery import MQTT_HOST, MQTT_PORT, MqttListener, Receiver, mqtt_topic, serving
from tests.integration.test_subscriptions_api import SUBSCRIPTIONS, create, path, read, sub_id, subscription
from tests.integration.test_worker import Space

INTERNAL_URIS = [
    "http://127.0.0.1:9/notify",
    "http://localhost:8080/notify",
    "http://10.0.0.1/notify",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/notify",
    "http://[::ffff:192.168.0.1]/notify",
    "https://0.0.0.0/notify",
    "http://2130706433:9/notify",  # 127.0.0.1 written as one number: resolved, then checked
    "http://0x7f.1:9/notify",
    "mqtt://127.0.0.1:9/json/key/dev/attrs",  # not the MQTT_URL port: that one is "the broker's own"
    "mqtts://user:pw@10.1.1.1/t",
]


@pytest.fixture(scope="module")
async def strict(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The broker with the default address policy: private addresses off, no allow-list."""
    defaults = settings.replace(notify_allow_private=False, notify_allow=(), mqtt_ingest=False)
    async with TestClient(TestServer(create_app(defaults), host="127.0.0.1")) as client:
        yield client


@pytest.fixture
def strict_api(strict: TestClient[Any, Any], tenant: str) -> Api:
    return Api(strict, tenant)


def to(uri: str, **members: Any) -> dict[str, Any]:
    body = subscription(sub_id(), **members)
    body["notification"]["endpoint"]["uri"] = uri
    return body


@pytest.mark.parametrize("uri", INTERNAL_URIS)
async def test_creating_a_subscription_to_an_internal_address_answers_400_and_stores_nothing(
    strict_api: Api, uri: str
) -> None:
    body = to(uri)
    failed = await problem(await strict_api.request("POST", SUBSCRIPTIONS, body), 400, "BadRequestData")
    assert "NGSI_NOTIFY_ALLOW_PRIVATE=true" in failed["detail"]
    assert "non-public address" in failed["detail"]
    response = await strict_api.request("GET", path(body["id"]))
    assert response.status == 404


async def test_a_public_endpoint_is_accepted(strict_api: Api) -> None:
    # Paused, and for a type nothing writes: created and checked, never delivered to.
    body = to("http://93.184.216.34/notify", isActive=False, entities=[{"type": "NeverWritten"}])
    assert await create(strict_api, body) == body["id"]


async def test_changing_a_subscriptions_endpoint_to_an_internal_address_answers_400_and_changes_nothing(
    strict_api: Api,
) -> None:
    body = to("http://93.184.216.34/notify", isActive=False, entities=[{"type": "NeverWritten"}])
    await create(strict_api, body)
    fragment = {"notification": {"endpoint": {"uri": "http://192.168.1.20:8080/hook"}}}
    failed = await problem(
        await strict_api.request("PATCH", path(body["id"]), fragment), 400, "BadRequestData"
    )
    assert "192.168.1.20" in failed["detail"]
    assert (await read(strict_api, body["id"]))["notification"]["endpoint"][
        "uri"
    ] == "http://93.184.216.34/notify"


async def test_the_brokers_own_device_api_is_refused_by_name_too(strict_api: Api) -> None:
    """A subscription must not post one tenant's notifications into the device pipeline with another's apikey."""
    uri = "http://localhost:1026/iot/json?k=other-tenants-key&i=dev"
    failed = await problem(await strict_api.request("POST", SUBSCRIPTIONS, to(uri)), 400, "BadRequestData")
    assert "own listener at 127.0.0.1:1026" in failed["detail"]


async def test_the_brokers_own_mqtt_broker_is_refused_even_with_private_addresses_allowed(api: Api) -> None:
    """The tests' settings allow private addresses; the MQTT broker of MQTT_URL stays out of reach."""
    uri = f"mqtt://{MQTT_HOST}:{MQTT_PORT}/json/someone-elses-key/dev/attrs"
    failed = await problem(await api.request("POST", SUBSCRIPTIONS, to(uri)), 400, "BadRequestData")
    assert "own listener" in failed["detail"]
    assert "NGSI_NOTIFY_ALLOW" in failed["detail"]


# --- secrets ---------------------------------------------------------------------------------------


async def test_endpoint_secrets_are_shown_redacted_stored_whole_and_kept_by_a_patch_sending_them_back(
    api: Api,
) -> None:
    uri = "http://plow:s3cret@127.0.0.1:9/hook?token=t0k&page=1"
    body = to(uri, isActive=False)
    body["notification"]["endpoint"]["receiverInfo"] = [
        {"key": "Authorization", "value": "Bearer xyz"},
        {"key": "X-Town", "value": "Kasuga"},
    ]
    await create(api, body)
    shown = (await read(api, body["id"]))["notification"]["endpoint"]
    assert shown["uri"] == "http://plow:***@127.0.0.1:9/hook?token=***&page=1"
    assert shown["receiverInfo"] == [
        {"key": "Authorization", "value": "***"},
        {"key": "X-Town", "value": "Kasuga"},
    ]
    listed = await api.request("GET", SUBSCRIPTIONS)
    assert "s3cret" not in await listed.text()
    assert "Bearer xyz" not in await listed.text()

    response = await api.request("PATCH", path(body["id"]), {"notification": {"endpoint": shown}})
    assert response.status == 204, await response.text()
    stored = await api.client.app[POOL].fetchval(
        "SELECT body FROM subscriptions WHERE tenant = $1 AND id = $2", api.tenant, body["id"]
    )
    assert stored["notification"]["endpoint"]["uri"] == uri
    assert stored["notification"]["endpoint"]["receiverInfo"][0]["value"] == "Bearer xyz"


# --- delivery ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url(), min_size=2, max_size=10, connect_timeout=10)
    await migrate(created)
    yield created
    await created.close()


@pytest.fixture
async def space(pool: asyncpg.Pool, tenant: str) -> AsyncIterator[Space]:
    await pool.execute("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
    created = Space(pool, tenant)
    yield created
    await created.stop()
    await pool.execute("DELETE FROM subscriptions WHERE tenant = $1", tenant)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as recorder:
        yield recorder


async def test_a_name_that_resolves_internally_by_delivery_time_is_refused_as_a_failed_attempt(
    space: Space,
) -> None:
    """DNS can change after creation: every connection is checked, and nothing is connected to."""
    dns = StubDns({"hooks.example": ["10.0.0.7"]})
    subscription = await space.subscribe("http://hooks.example/notify")
    await space.start(policy=notify_policy(), dns=dns)
    await space.queue(subscription, "urn:ngsi-ld:Thing:r")
    await eventually(lambda: space.failed(subscription))
    state = await space.state(subscription)
    assert state["last_error_reason"] == REFUSED
    assert (state["times_failed"], state["times_sent"]) == (1, 1)
    assert await space.pending(subscription) == 1  # kept: retried with back-off
    assert dns.asked == ["hooks.example"]


async def test_an_internal_address_literal_is_refused_at_delivery_without_connecting(
    space: Space, receiver: Receiver
) -> None:
    subscription = await space.subscribe(receiver.url("inside"))  # 127.0.0.1: a subscription made before
    await space.start(policy=notify_policy(), dns=StubDns({}))
    await space.queue(subscription, "urn:ngsi-ld:Thing:r")
    await eventually(lambda: space.failed(subscription))
    assert (await space.state(subscription))["last_error_reason"] == REFUSED
    assert receiver.requests == []


async def test_an_allow_listed_receiver_is_delivered_to_at_the_address_that_was_checked(
    space: Space, receiver: Receiver
) -> None:
    assert receiver.server is not None
    dns = StubDns({"receiver.lan": ["127.0.0.1"]})
    subscription = await space.subscribe(f"http://receiver.lan:{receiver.server.port}/lan")
    await space.start(policy=notify_policy(allow=["receiver.lan"]), dns=dns)
    await space.queue(subscription, "urn:ngsi-ld:Thing:r")
    (request,) = await receiver.wait("lan", 1)
    assert request.headers["Host"] == f"receiver.lan:{receiver.server.port}"
    await eventually(lambda: space.delivered(subscription))


async def test_a_failure_at_an_allow_listed_private_receiver_is_reported_without_details(
    space: Space, receiver: Receiver
) -> None:
    """lastErrorReason must not tell a client what answers at an internal address."""
    assert receiver.server is not None
    receiver.plan["lan"] = [404]
    subscription = await space.subscribe(f"http://receiver.lan:{receiver.server.port}/lan")
    await space.start(
        policy=notify_policy(allow=["127.0.0.0/8"]), dns=StubDns({"receiver.lan": ["127.0.0.1"]})
    )
    await space.queue(subscription, "urn:ngsi-ld:Thing:r")
    await receiver.wait("lan", 1)
    await eventually(lambda: space.failed(subscription))
    assert (await space.state(subscription))["last_error_reason"] == WITHHELD


async def test_an_mqtt_endpoint_is_connected_to_the_checked_address_not_to_a_second_lookup(
    space: Space,
) -> None:
    """The stub answers 127.0.0.3, where nothing listens; the system's own look-up of localhost would
    have found the Mosquitto on 127.0.0.1. The attempt fails: paho connected where it was told."""
    subscription = await space.subscribe(f"mqtt://localhost:{MQTT_PORT}/t")
    dns = StubDns({"localhost": ["127.0.0.3"]})
    await space.start(policy=notify_policy(allow_private=True), dns=dns)
    await space.queue(subscription, "urn:ngsi-ld:Thing:q")
    await eventually(lambda: space.failed(subscription))
    assert (await space.state(subscription))["last_error_reason"].startswith("MQTT connect failed")
    assert dns.asked == ["localhost"]


async def test_an_allow_listed_mqtt_broker_named_by_the_stub_gets_the_notification(space: Space) -> None:
    topic = mqtt_topic()
    subscription = await space.subscribe(f"mqtt://mq.lan:{MQTT_PORT}/{topic}")
    dns = StubDns({"mq.lan": [MQTT_HOST]})
    async with MqttListener(topic) as listener:
        await space.start(policy=notify_policy(allow=["mq.lan"]), dns=dns)
        (queued,) = await space.queue(subscription, "urn:ngsi-ld:Thing:m")
        (message,) = await listener.wait(1)
    assert message.topic == topic
    await eventually(lambda: space.delivered(subscription))
    assert queued


async def test_the_brokers_own_mqtt_broker_is_refused_at_delivery(space: Space) -> None:
    subscription = await space.subscribe(f"mqtt://{MQTT_HOST}:{MQTT_PORT}/json/k/dev/attrs")
    policy = notify_policy(allow_private=True, own=[Listener(MQTT_HOST, MQTT_PORT)])
    await space.start(policy=policy, dns=StubDns({}))
    await space.queue(subscription, "urn:ngsi-ld:Thing:q")
    await eventually(lambda: space.failed(subscription))
    assert (await space.state(subscription))["last_error_reason"] == REFUSED
