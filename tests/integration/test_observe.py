"""Issue 15 items 2 and 3 through the whole broker: /metrics against the actions taken, the request id
from a PATCH to the notification it causes, the access log without secrets, /metrics' permission."""

from __future__ import annotations

import io
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from broker import logs
from broker.app import create_app
from broker.auth.model import Role
from broker.config import Settings
from tests.conftest import Api, eventually, new_id
from tests.integration.auth_helpers import Secured, refused
from tests.integration.test_delivery import Receiver, serving
from tests.integration.test_device_faults import sensor
from tests.integration.test_notification_content import created, gauge, subscribe
from tests.integration.test_subscriptions_api import create, sub_id

Client = TestClient[Any, Any]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ENTITIES = "/ngsi-ld/v1/entities"


async def scrape(client: Client) -> Samples:
    """Every sample of /metrics, parsed by the Prometheus client's own parser."""
    response = await client.get("/metrics")
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def header(headers: dict[str, str], name: str) -> str | None:
    """A header of a received request, whatever case aiohttp gave its name."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as recorder:
        yield recorder


async def test_a_patch_raises_the_patch_counter_of_its_route_by_exactly_one(api: Api) -> None:
    entity_id = await created(api, gauge(new_id("Gauge")))
    route = {"method": "PATCH", "route": f"{ENTITIES}/{{entity_id}}/attrs"}
    before = await scrape(api.client)

    response = await api.request("PATCH", f"{ENTITIES}/{entity_id}/attrs", {"level": 2.0})
    assert response.status == 204, await response.text()

    after = await scrape(api.client)
    requests = "ngsi_http_requests_total"
    assert value(after, requests, **route, status="204") == value(before, requests, **route, status="204") + 1
    latency = "ngsi_http_request_duration_seconds_count"
    assert value(after, latency, **route) == value(before, latency, **route) + 1
    committed = "ngsi_write_transactions_total"
    assert value(after, committed, outcome="committed") >= value(before, committed, outcome="committed") + 1
    # The route's pattern is the label, never the raw path: no series names the entity.
    assert not any(entity_id in dict(labels).get("route", "") for _, labels in after)


async def test_a_refused_patch_is_counted_under_its_status_and_changes_nothing(api: Api) -> None:
    entity_id = await created(api, gauge(new_id("Gauge")))
    route = {"method": "PATCH", "route": f"{ENTITIES}/{{entity_id}}/attrs"}
    before = await scrape(api.client)

    response = await api.request("PATCH", f"{ENTITIES}/{entity_id}/attrs", raw=b"{not json")
    assert response.status == 400

    after = await scrape(api.client)
    name = "ngsi_http_requests_total"
    assert value(after, name, **route, status="400") == value(before, name, **route, status="400") + 1
    assert value(after, name, **route, status="204") == value(before, name, **route, status="204")
    assert (await api.get_json(entity_id))["level"]["value"] == 1.0


async def test_a_dead_lettered_device_message_raises_its_reasons_counter_by_one(api: Api) -> None:
    before = await scrape(api.client)
    path = f"/iot/json?k=nokey{secrets.token_hex(4)}&i=nobody"

    response = await api.request("POST", path, {"n": 1})
    assert response.status == 400, await response.text()

    after = await scrape(api.client)
    letters = {"adapter": "iota-json", "reason": "unknown_device"}
    assert value(after, "ngsi_dead_letters_total", **letters) == (
        value(before, "ngsi_dead_letters_total", **letters) + 1
    )
    rejected = {"adapter": "iota-json", "transport": "http", "outcome": "rejected"}
    assert value(after, "ngsi_device_messages_total", **rejected) == (
        value(before, "ngsi_device_messages_total", **rejected) + 1
    )
    other = {"adapter": "iota-json", "reason": "unreadable"}
    assert value(after, "ngsi_dead_letters_total", **other) == value(
        before, "ngsi_dead_letters_total", **other
    )


async def test_the_request_id_of_a_patch_is_returned_and_sent_with_the_notification_it_causes(
    api: Api, receiver: Receiver
) -> None:
    entity_id = await created(api, gauge(new_id("Gauge")))
    path = f"rid-{uuid.uuid4().hex[:8]}"
    await subscribe(api, receiver, path, watchedAttributes=["level"])
    request_id = f"flood-{uuid.uuid4().hex}"
    before = await scrape(api.client)

    response = await api.request(
        "PATCH", f"{ENTITIES}/{entity_id}/attrs", {"level": 3.5}, headers={"X-Request-Id": request_id}
    )

    assert response.status == 204, await response.text()
    assert response.headers["X-Request-Id"] == request_id

    def ours() -> bool:
        return any(header(r.headers, "X-Request-Id") == request_id for r in receiver.at(path))

    await eventually(ours, what="the notification carrying the PATCH's request id")
    (note,) = [r for r in receiver.at(path) if header(r.headers, "X-Request-Id") == request_id]
    assert note.body["data"][0]["level"]["value"] == 3.5
    assert "ngsi hub requestId" not in note.body["data"][0]  # the carrier member does not leak out

    async def counted() -> bool:
        after = await scrape(api.client)
        sent = "ngsi_notifications_total"
        latency = "ngsi_notification_latency_seconds_count"
        return value(after, sent, scheme="http", outcome="sent") > value(
            before, sent, scheme="http", outcome="sent"
        ) and value(after, latency, scheme="http") > value(before, latency, scheme="http")

    await eventually(counted, what="the delivery counted and timed")


async def test_an_unusable_request_id_is_replaced_by_a_new_one(api: Api) -> None:
    response = await api.request("GET", "/health", headers={"X-Request-Id": "a b<c>"})

    assert response.status == 200
    returned = response.headers["X-Request-Id"]
    assert returned != "a b<c>"
    assert len(returned) == 32
    assert int(returned, 16) >= 0


async def test_metrics_show_the_database_figures_and_this_process_pool(api: Api, settings: Settings) -> None:
    samples = await scrape(api.client)

    assert ("ngsi_outbox_rows", frozenset()) in samples
    assert ("ngsi_outbox_oldest_seconds", frozenset()) in samples
    assert value(samples, "ngsi_history_rows") >= 0
    assert value(samples, "ngsi_db_pool_connections", state="max") == settings.db_pool_max
    assert 1 <= value(samples, "ngsi_db_pool_connections", state="open") <= settings.db_pool_max


async def test_the_outbox_gauge_names_a_subscription_whose_receiver_fails(
    api: Api, receiver: Receiver
) -> None:
    path = f"down-{uuid.uuid4().hex[:8]}"
    receiver.plan[path] = [503] * 50
    entity_id = await created(api, gauge(new_id("Gauge")))
    subscription = await subscribe(api, receiver, path, watchedAttributes=["level"])

    response = await api.request("PATCH", f"{ENTITIES}/{entity_id}/attrs", {"level": 9.0})
    assert response.status == 204
    await receiver.wait(path, 1)

    async def queued() -> bool:
        samples = await scrape(api.client)
        labels = {"tenant": api.tenant, "subscription": subscription}
        return value(samples, "ngsi_outbox_subscription_rows", **labels) >= 1 and (
            value(samples, "ngsi_notifications_total", scheme="http", outcome="failed") >= 1
        )

    # The database figures are cached for a few seconds: eventually, not at once.
    await eventually(queued, within=15, what="the failing subscription's queued row in /metrics")
    response = await api.request("DELETE", f"/ngsi-ld/v1/subscriptions/{subscription}")
    assert response.status == 204


async def test_metrics_need_an_operator_with_authentication_on(secured: Secured) -> None:
    await refused(await secured.call("GET", "/metrics", None), 401)
    await refused(await secured.call("GET", "/metrics", secured.keys[Role.ADMIN]), 403)
    response = await secured.call("GET", "/metrics", secured.keys[Role.OPERATOR])
    assert response.status == 200
    assert "ngsi_http_requests_total" in await response.text()


async def test_the_access_log_has_a_json_line_per_request_with_no_secret_in_it(settings: Settings) -> None:
    app = create_app(replace(settings, access_log=True, db_pool_min=1, db_pool_max=6, mqtt_ingest=False))
    apikey = f"verysecret{secrets.token_hex(6)}"
    stream = io.StringIO()
    out = logs.handler("json", stream)
    access = logging.getLogger("broker.access")
    access.addHandler(out)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            response = await client.post(
                f"/iot/json?k={apikey}&i=nobody",
                json={"n": 1},
                headers={
                    "X-Request-Id": "access-1",
                    "Authorization": f"Bearer {apikey}",
                    "NGSILD-Tenant": "t1",
                },
            )
            assert response.status == 400
    finally:
        access.removeHandler(out)
    (line,) = [orjson.loads(text) for text in stream.getvalue().splitlines() if "/iot/json" in text]
    assert apikey not in stream.getvalue()
    assert line["message"].startswith("POST /iot/json?k=***&i=nobody 400 ")
    assert line["logger"] == "broker.access"
    assert line["level"] == "INFO"
    assert line["request_id"] == "access-1"
    assert line["tenant"] == "t1"
    assert datetime.fromisoformat(line["time"]).tzinfo is not None


async def test_the_request_id_of_a_device_message_over_http_reaches_the_notification_it_causes(
    api: Api, receiver: Receiver
) -> None:
    apikey, (entity_id,) = await sensor(api)
    path = f"dev-{uuid.uuid4().hex[:8]}"
    body = {
        "id": sub_id(),
        "type": "Subscription",
        "entities": [{"type": "Sensor"}],
        "notification": {"endpoint": {"uri": receiver.url(path), "accept": "application/json"}},
    }
    await create(api, body)
    request_id = f"gw-{uuid.uuid4().hex[:12]}"

    response = await api.request(
        "POST", f"/iot/json?k={apikey}&i=s1", {"n": 7}, headers={"X-Request-Id": request_id}
    )

    assert response.status == 200, await response.text()
    assert response.headers["X-Request-Id"] == request_id

    def ours() -> list[Any]:
        return [r for r in receiver.at(path) if header(r.headers, "X-Request-Id") == request_id]

    (note,) = await eventually(ours, what="the device message's notification with its request id")
    assert note.body["data"][0]["id"] == entity_id
    assert note.body["data"][0]["n"]["value"] == 7
