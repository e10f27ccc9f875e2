"""Subscriptions over HTTP (clauses 5.8.1-5.8.5, binding 6.10-6.11) on the real store and registry."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from broker.api.keys import REGISTRY
from broker.notify.model import Subscription
from broker.store.subscriptions import SEPARATOR, SUBSCRIPTIONS_CHANNEL
from tests.conftest import Api, database_url, eventually, new_id, problem
from tests.integration.helpers import (
    DEFAULT_VOCAB,
    body_of,
    ensure_tenant,
    host_context,
    local_path,
    with_link,
)
from tests.integration.test_delivery import serving

SUBSCRIPTIONS = "/ngsi-ld/v1/subscriptions"
EX = "https://example.org/city#"
TERMS = {"ex": EX, "level": EX + "level", "Gauge": EX + "Gauge"}
LD_JSON = "application/ld+json"


def subscription(subscription_id: str | None = None, **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Gauge"}],
        "watchedAttributes": ["level"],
        "q": "level>1.5",
        "notification": {"attributes": ["level"], "endpoint": {"uri": "http://127.0.0.1:9/notify"}},
    }
    if subscription_id is not None:
        body["id"] = subscription_id
    body.update(members)
    return {key: value for key, value in body.items() if value is not None}


def sub_id() -> str:
    return new_id("Subscription")


def path(subscription_id: str) -> str:
    return f"{SUBSCRIPTIONS}/{quote(subscription_id, safe=':')}"


async def create(api: Api, body: dict[str, Any], **kwargs: Any) -> str:
    response = await api.request("POST", SUBSCRIPTIONS, body, **kwargs)
    assert response.status == 201, await response.text()
    location = response.headers["Location"]
    assert location.startswith(SUBSCRIPTIONS + "/")
    return location.removeprefix(SUBSCRIPTIONS + "/")


async def read(api: Api, subscription_id: str, **kwargs: Any) -> dict[str, Any]:
    response = await api.request("GET", path(subscription_id), **kwargs)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await body_of(response)
    return body


async def listed(api: Api, params: dict[str, str] | None = None) -> list[str]:
    response = await api.request("GET", SUBSCRIPTIONS, params=params)
    assert response.status == 200, await response.text()
    return [s["id"] for s in await body_of(response)]


def registered(api: Api, subscription_id: str) -> Subscription | None:
    registry = api.client.app[REGISTRY]
    found = [s for s in registry.for_tenant(api.tenant) if s.id == subscription_id]
    return found[0] if found else None


@pytest.fixture
async def db() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url())
    yield conn
    await conn.close()


# --- create and retrieve -------------------------------------------------------------------------


async def test_a_created_subscription_reads_back_with_its_defaults_and_status(api: Api) -> None:
    subscription_id = sub_id()
    assert await create(api, subscription(subscription_id)) == subscription_id
    body = await read(api, subscription_id)
    assert body["id"] == subscription_id
    assert body["type"] == "Subscription"
    assert body["entities"] == [{"type": "Gauge"}]
    assert body["watchedAttributes"] == ["level"]
    assert body["q"] == "level>1.5"
    assert body["isActive"] is True
    assert body["status"] == "active"
    assert body["notificationTrigger"] == ["attributeCreated", "attributeUpdated"], "5.2.12's default"
    notification = body["notification"]
    assert notification["format"] == "normalized"
    assert notification["endpoint"] == {"uri": "http://127.0.0.1:9/notify", "accept": "application/json"}
    assert notification["timesSent"] == 0
    assert notification["timesFailed"] == 0
    assert "lastNotification" not in notification
    assert "lastErrorReason" not in notification


async def test_a_subscription_without_an_id_gets_a_generated_subscription_urn(api: Api) -> None:
    subscription_id = await create(api, subscription())
    assert re.fullmatch(r"urn:ngsi-ld:Subscription:[0-9a-f-]{36}", subscription_id)
    assert (await read(api, subscription_id))["id"] == subscription_id


async def test_the_first_subscription_creates_its_tenant(api: Api) -> None:
    await problem(await api.request("GET", SUBSCRIPTIONS), 404, "NonexistentTenant")
    subscription_id = await create(api, subscription(sub_id()))
    assert await listed(api) == [subscription_id]


async def test_creating_a_subscription_with_an_existing_id_answers_409_and_keeps_the_first(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    response = await api.request("POST", SUBSCRIPTIONS, subscription(subscription_id, q="level<0"))
    await problem(response, 409, "AlreadyExists")
    assert (await read(api, subscription_id))["q"] == "level>1.5"


async def test_an_id_that_is_not_a_uri_answers_400(api: Api) -> None:
    response = await api.request("POST", SUBSCRIPTIONS, subscription("subscription 1"))
    await problem(response, 400, "BadRequestData")


async def test_the_location_of_a_created_subscription_can_be_read(api: Api) -> None:
    response = await api.request("POST", SUBSCRIPTIONS, subscription(sub_id()))
    assert response.status == 201
    again = await api.request("GET", response.headers["Location"])
    assert again.status == 200, await again.text()


async def test_a_created_subscription_is_in_this_process_registry_at_once(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.watched == frozenset({DEFAULT_VOCAB + "level"})


async def test_every_write_announces_the_subscription_on_the_notify_channel(
    api: Api, db: asyncpg.Connection
) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    await db.add_listener(SUBSCRIPTIONS_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    subscription_id = await create(api, subscription(sub_id()))
    patched = await api.request("PATCH", path(subscription_id), {"isActive": False})
    assert patched.status == 204
    assert (await api.request("DELETE", path(subscription_id))).status == 204
    expected = f"{api.tenant}{SEPARATOR}{subscription_id}"
    payloads = [await asyncio.wait_for(heard.get(), 5) for _ in range(3)]
    assert payloads == [expected] * 3


async def test_retrieve_with_sys_attrs_shows_when_it_was_created_and_modified(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    body = await read(api, subscription_id, params={"options": "sysAttrs"})
    assert body["createdAt"].endswith("Z")
    assert body["modifiedAt"].endswith("Z")
    assert "createdAt" not in await read(api, subscription_id)


async def test_retrieving_a_subscription_that_does_not_exist_answers_404(api: Api) -> None:
    await ensure_tenant(api)
    await problem(await api.request("GET", path(sub_id())), 404, "ResourceNotFound")


async def test_a_path_id_that_is_not_a_uri_answers_400(api: Api) -> None:
    await ensure_tenant(api)
    await problem(await api.request("GET", f"{SUBSCRIPTIONS}/not-a-uri"), 400, "BadRequestData")


async def test_the_legacy_member_name_is_read_back_as_subscription_name_and_as_name(api: Api) -> None:
    """Clause 5.2.12 subscriptionName; issue 13 item 15: ngsildclient sends ``name``, and filters its
    listing on it."""
    subscription_id = await create(api, subscription(sub_id(), name="flood gauges"))
    body = await read(api, subscription_id)
    assert body["subscriptionName"] == "flood gauges"
    assert body["name"] == "flood gauges"
    assert (await api.request("PATCH", path(subscription_id), {"subscriptionName": "gauges"})).status == 204
    body = await read(api, subscription_id)
    assert (body["subscriptionName"], body["name"]) == ("gauges", "gauges")


async def test_a_name_differing_from_subscription_name_answers_400(api: Api) -> None:
    body = subscription(sub_id(), name="a", subscriptionName="b")
    await problem(await api.request("POST", SUBSCRIPTIONS, body), 400, "BadRequestData")


# --- status rendering ----------------------------------------------------------------------------


async def test_an_inactive_subscription_is_paused(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id(), isActive=False))
    assert (await read(api, subscription_id))["status"] == "paused"


async def test_a_subscription_whose_expires_at_has_passed_is_expired(
    api: Api, db: asyncpg.Connection
) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    subscription_id = await create(api, subscription(sub_id(), expiresAt=future))
    assert (await read(api, subscription_id))["status"] == "active"
    await db.execute(
        "UPDATE subscriptions SET expires_at = now() - interval '1 minute' WHERE tenant = $1 AND id = $2",
        api.tenant,
        subscription_id,
    )
    assert (await read(api, subscription_id))["status"] == "expired"


async def test_delivery_state_is_rendered_in_the_notification_member(
    api: Api, db: asyncpg.Connection
) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    await db.execute(
        "UPDATE subscriptions SET times_sent = 7, times_failed = 2, consecutive_errors = 2,"
        " last_notification = '2026-11-22T01:00:00Z', last_success = '2026-11-22T00:50:00Z',"
        " last_failure = '2026-11-22T01:00:00Z', last_error_reason = 'HTTP 503'"
        " WHERE tenant = $1 AND id = $2",
        api.tenant,
        subscription_id,
    )
    notification = (await read(api, subscription_id))["notification"]
    assert notification["timesSent"] == 7
    assert notification["timesFailed"] == 2
    assert notification["lastNotification"] == "2026-11-22T01:00:00Z"
    assert notification["lastSuccess"] == "2026-11-22T00:50:00Z"
    assert notification["lastFailure"] == "2026-11-22T01:00:00Z"
    assert notification["status"] == "failed"
    assert notification["consecutiveErrors"] == 2
    assert notification["lastErrorReason"] == "HTTP 503"


# --- query ---------------------------------------------------------------------------------------


async def test_query_pages_in_id_order_with_links_and_counts(api: Api) -> None:
    ids = sorted(f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex}" for _ in range(5))
    for subscription_id in ids:
        await create(api, subscription(subscription_id))
    assert await listed(api) == ids
    first = await api.request("GET", SUBSCRIPTIONS, params={"limit": "2", "count": "true"})
    assert [s["id"] for s in await body_of(first)] == ids[:2]
    assert first.headers["NGSILD-Results-Count"] == "5"
    assert 'rel="next"' in first.headers["Link"]
    assert await listed(api, {"limit": "2", "offset": "2"}) == ids[2:4]
    last = await api.request("GET", SUBSCRIPTIONS, params={"limit": "2", "offset": "4"})
    assert [s["id"] for s in await body_of(last)] == ids[4:]
    assert 'rel="prev"' in last.headers["Link"]
    assert 'rel="next"' not in last.headers["Link"]
    only_count = await api.request("GET", SUBSCRIPTIONS, params={"limit": "0", "count": "true"})
    assert await body_of(only_count) == []
    assert only_count.headers["NGSILD-Results-Count"] == "5"


@pytest.mark.parametrize("base", [SUBSCRIPTIONS, SUBSCRIPTIONS + "/"])
@pytest.mark.parametrize("media_type", ["application/json", LD_JSON])
async def test_paging_links_keep_the_path_as_requested_and_the_negotiated_media_type(
    api: Api, base: str, media_type: str
) -> None:
    """Clauses 5.8.4 and 6.3.10 (ETSI test suite 029_04): prev then next, each typed as the response."""
    for _ in range(3):
        await create(api, subscription(sub_id()))
    response = await api.request(
        "GET", base, params={"limit": "1", "offset": "1"}, headers={"Accept": media_type}
    )
    assert response.status == 200, await response.text()
    assert response.content_type == media_type
    links = [link.strip() for link in response.headers["Link"].split(",")]
    paging = [link for link in links if "json-ld#context" not in link]
    assert paging == [
        f'<{base}?limit=1&offset=0>; rel="prev"; type="{media_type}"',
        f'<{base}?limit=1&offset=2>; rel="next"; type="{media_type}"',
    ]


async def test_query_renders_each_subscription_with_its_status(api: Api) -> None:
    await create(api, subscription(sub_id(), isActive=False))
    [body] = await body_of(await api.request("GET", SUBSCRIPTIONS))
    assert body["status"] == "paused"
    assert body["notification"]["timesSent"] == 0


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"limit": "5000"}, 403, "TooManyResults"),
        ({"limit": "0"}, 400, "BadRequestData"),
        ({"limit": "-1"}, 400, "BadRequestData"),
        ({"offset": "x"}, 400, "BadRequestData"),
        ({"count": "yes"}, 400, "BadRequestData"),
    ],
)
async def test_bad_paging_parameters_are_refused(
    api: Api, params: dict[str, str], status: int, error: str
) -> None:
    await create(api, subscription(sub_id()))
    await problem(await api.request("GET", SUBSCRIPTIONS, params=params), status, error)


# --- tenants -------------------------------------------------------------------------------------


async def test_a_subscription_of_one_tenant_is_invisible_in_another(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    other = Api(api.client, f"test-{uuid.uuid4().hex[:12]}")
    mine = await create(other, subscription(sub_id()))
    assert await listed(other) == [mine]
    await problem(await other.request("GET", path(subscription_id)), 404, "ResourceNotFound")
    await problem(
        await other.request("PATCH", path(subscription_id), {"isActive": False}), 404, "ResourceNotFound"
    )
    await problem(await other.request("DELETE", path(subscription_id)), 404, "ResourceNotFound")
    assert (await read(api, subscription_id))["status"] == "active"
    assert registered(other, subscription_id) is None


async def test_reads_and_writes_in_a_tenant_that_does_not_exist_answer_404_nonexistent_tenant(
    api: Api,
) -> None:
    some_id = sub_id()
    for method, url, body in [
        ("GET", SUBSCRIPTIONS, None),
        ("GET", path(some_id), None),
        ("PATCH", path(some_id), {"isActive": False}),
        ("DELETE", path(some_id), None),
    ]:
        await problem(await api.request(method, url, body), 404, "NonexistentTenant")


# --- invalid requests change nothing -------------------------------------------------------------

INVALID_MEMBERS: list[tuple[str, dict[str, Any]]] = [
    ("type", {"type": "Entity"}),
    ("entities", {"entities": [{"id": "urn:ngsi-ld:Gauge:1"}]}),
    ("idPattern", {"entities": [{"type": "Gauge", "idPattern": "(a"}]}),
    ("watchedAttributes", {"watchedAttributes": []}),
    ("notificationTrigger", {"notificationTrigger": ["entityTouched"]}),
    ("q", {"q": "level>>1"}),
    ("geoQ", {"geoQ": {"georel": "near", "geometry": "Point", "coordinates": [134.05, 34.34]}}),
    ("scopeQ", {"scopeQ": "no scope"}),
    ("lang", {"lang": 1}),
    ("isActive", {"isActive": "yes"}),
    ("expiresAt", {"expiresAt": "2020-01-01T00:00:00Z"}),
    ("throttling", {"throttling": -1}),
    ("timeInterval", {"timeInterval": 10}),
    ("notification", {"notification": {"endpoint": {"uri": "ftp://example.org/n"}}}),
    ("format", {"notification": {"format": "xml", "endpoint": {"uri": "http://127.0.0.1:9/n"}}}),
    ("accept", {"notification": {"endpoint": {"uri": "http://127.0.0.1:9/n", "accept": "text/plain"}}}),
    (
        "notifierInfo",
        {
            "notification": {
                "endpoint": {
                    "uri": "mqtt://127.0.0.1:1883/t",
                    "notifierInfo": [{"key": "MQTT-QoS", "value": "3"}],
                }
            }
        },
    ),
    ("jsonldContext", {"jsonldContext": "not a url"}),
    ("unknown member", {"watchedAttribute": ["level"]}),
]


@pytest.mark.parametrize(("member", "change"), INVALID_MEMBERS, ids=[m for m, _ in INVALID_MEMBERS])
async def test_an_invalid_member_answers_400_and_stores_nothing_not_even_the_tenant(
    api: Api, member: str, change: dict[str, Any]
) -> None:
    response = await api.request("POST", SUBSCRIPTIONS, subscription(sub_id(), **change))
    await problem(response, 400, "BadRequestData")
    await problem(await api.request("GET", SUBSCRIPTIONS), 404, "NonexistentTenant")


async def test_neither_entities_nor_watched_attributes_answers_400(api: Api) -> None:
    body = subscription(sub_id())
    del body["entities"], body["watchedAttributes"]
    await problem(await api.request("POST", SUBSCRIPTIONS, body), 400, "BadRequestData")


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"[]", "application/json", 400),
        (b"{", "application/json", 400),
        (b'{"type": "Subscription"}', "text/plain", 415),
    ],
)
async def test_a_body_that_is_no_subscription_object_is_refused(
    api: Api, raw: bytes, content_type: str, status: int
) -> None:
    response = await api.request("POST", SUBSCRIPTIONS, raw=raw, content_type=content_type)
    assert response.status == status, await response.text()


async def test_a_jsonld_context_that_cannot_be_fetched_stores_nothing(api: Api) -> None:
    body = subscription(sub_id(), jsonldContext="http://127.0.0.1:9/unreachable.jsonld")
    await problem(await api.request("POST", SUBSCRIPTIONS, body), 503, "LdContextNotAvailable")
    await problem(await api.request("GET", SUBSCRIPTIONS), 404, "NonexistentTenant")


# --- update --------------------------------------------------------------------------------------


async def test_update_replaces_the_members_given_and_merges_the_notification(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    fragment = {"q": "level>3", "throttling": 10, "notification": {"format": "keyValues"}}
    response = await api.request("PATCH", path(subscription_id), fragment)
    assert response.status == 204, await response.text()
    body = await read(api, subscription_id, params={"options": "sysAttrs"})
    assert body["q"] == "level>3"
    assert body["throttling"] == 10
    assert body["notification"]["format"] == "keyValues"
    assert body["notification"]["endpoint"]["uri"] == "http://127.0.0.1:9/notify"
    assert body["watchedAttributes"] == ["level"]
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.throttling == 10


async def test_update_to_inactive_pauses_the_subscription_everywhere(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    assert (await api.request("PATCH", path(subscription_id), {"isActive": False})).status == 204
    assert (await read(api, subscription_id))["status"] == "paused"
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.active is False


async def test_update_with_ngsi_ld_null_removes_a_member(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    assert (await api.request("PATCH", path(subscription_id), {"q": "urn:ngsi-ld:null"})).status == 204
    assert "q" not in await read(api, subscription_id)


@pytest.mark.parametrize(
    ("fragment", "status", "error"),
    [
        ({"timeInterval": 10}, 400, "BadRequestData"),
        ({"notification": {"endpoint": {"uri": "ftp://example.org/n"}}}, 400, "BadRequestData"),
        ({"notification": "urn:ngsi-ld:null"}, 400, "BadRequestData"),
        ({"expiresAt": "2020-01-01T00:00:00Z"}, 400, "BadRequestData"),
        ({"type": "Entity"}, 400, "BadRequestData"),
        ({"id": "urn:ngsi-ld:Subscription:other"}, 400, "BadRequestData"),
        ({}, 400, "BadRequestData"),
        ({"csf": "x"}, 501, "OperationNotSupported"),
    ],
)
async def test_an_update_that_would_not_compile_changes_nothing(
    api: Api, fragment: dict[str, Any], status: int, error: str
) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    before = await read(api, subscription_id, params={"options": "sysAttrs"})
    await problem(await api.request("PATCH", path(subscription_id), fragment), status, error)
    assert await read(api, subscription_id, params={"options": "sysAttrs"}) == before


async def test_updating_a_subscription_that_does_not_exist_answers_404(api: Api) -> None:
    await ensure_tenant(api)
    await problem(await api.request("PATCH", path(sub_id()), {"isActive": False}), 404, "ResourceNotFound")


async def test_an_expires_at_already_passed_does_not_block_other_updates(
    api: Api, db: asyncpg.Connection
) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    subscription_id = await create(api, subscription(sub_id(), expiresAt=future))
    passed = datetime.now(UTC) - timedelta(minutes=1)
    await db.execute(  # as if a day had passed: its expiresAt is behind us
        "UPDATE subscriptions SET expires_at = $3, body = jsonb_set(body, '{expiresAt}', to_jsonb($4::text))"
        " WHERE tenant = $1 AND id = $2",
        api.tenant,
        subscription_id,
        passed,
        passed.isoformat(),
    )
    assert (await api.request("PATCH", path(subscription_id), {"q": "level>2"})).status == 204
    assert (await read(api, subscription_id))["status"] == "expired"
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await api.request("PATCH", path(subscription_id), {"expiresAt": later})).status == 204
    assert (await read(api, subscription_id))["status"] == "active"
    row = await db.fetchrow(
        "SELECT expires_at FROM subscriptions WHERE tenant = $1 AND id = $2", api.tenant, subscription_id
    )
    assert row is not None
    assert row["expires_at"] > datetime.now(UTC)


# --- delete --------------------------------------------------------------------------------------


async def test_delete_answers_204_then_the_subscription_is_gone(api: Api) -> None:
    subscription_id = await create(api, subscription(sub_id()))
    assert (await api.request("DELETE", path(subscription_id))).status == 204
    await problem(await api.request("GET", path(subscription_id)), 404, "ResourceNotFound")
    await problem(await api.request("DELETE", path(subscription_id)), 404, "ResourceNotFound")
    assert registered(api, subscription_id) is None
    assert await listed(api) == []


# --- @context ------------------------------------------------------------------------------------


async def test_names_are_kept_as_given_and_read_back_with_the_same_context(api: Api) -> None:
    url = await host_context(api, TERMS)
    subscription_id = await create(api, subscription(sub_id()), headers=with_link(url))
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.watched == frozenset({EX + "level"})
    assert compiled.context == url
    body = await read(api, subscription_id, headers=with_link(url))
    assert body["watchedAttributes"] == ["level"]
    assert body["entities"] == [{"type": "Gauge"}]
    assert url in (await api.request("GET", path(subscription_id), headers=with_link(url))).headers["Link"]


async def test_read_without_the_context_shows_the_names_expanded(api: Api) -> None:
    url = await host_context(api, TERMS)
    subscription_id = await create(api, subscription(sub_id()), headers=with_link(url))
    body = await read(api, subscription_id)
    assert body["watchedAttributes"] == [EX + "level"]
    assert body["entities"] == [{"type": EX + "Gauge"}]
    assert body["notification"]["attributes"] == [EX + "level"]


async def test_an_inline_context_is_hosted_so_notifications_can_link_one_url(api: Api) -> None:
    inline = [TERMS, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"]
    subscription_id = await create(api, {"@context": inline, **subscription(sub_id())}, content_type=LD_JSON)
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.watched == frozenset({EX + "level"})
    assert isinstance(compiled.context, str)
    assert "/ngsi-ld/v1/jsonldContexts/" in compiled.context
    hosted = await api.request("GET", local_path(compiled.context))
    assert (await body_of(hosted))["@context"] == inline
    rendered = await read(api, subscription_id, headers={"Accept": LD_JSON})
    assert "@context" in rendered
    assert rendered["watchedAttributes"] == [EX + "level"]


async def test_a_one_url_inline_context_is_that_url(api: Api) -> None:
    url = await host_context(api, TERMS)
    subscription_id = await create(api, {"@context": [url], **subscription(sub_id())}, content_type=LD_JSON)
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.context == url


async def test_a_jsonld_context_becomes_the_context_of_notifications_keeping_each_meaning(api: Api) -> None:
    url = await host_context(api, TERMS)
    body = subscription(sub_id(), watchedAttributes=[EX + "level"], q=None, jsonldContext=url)
    subscription_id = await create(api, body)
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.context == url
    assert compiled.watched == frozenset({EX + "level"})
    assert compiled.attributes == frozenset({DEFAULT_VOCAB + "level"}), "level meant the default vocabulary"
    body = await read(api, subscription_id, headers=with_link(url))
    assert body["watchedAttributes"] == ["level"]
    assert body["jsonldContext"] == url


async def test_a_q_keeps_the_meaning_it_was_written_with_under_a_jsonld_context(api: Api) -> None:
    """Clause 5.2.12: jsonldContext decides how notifications are compacted, not what q means
    (it was refused with 400 while the body was moved to the jsonldContext)."""
    url = await host_context(api, TERMS)
    subscription_id = await create(api, subscription(sub_id(), jsonldContext=url))
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.watched == frozenset({DEFAULT_VOCAB + "level"})
    assert compiled.tm.expand("level") == DEFAULT_VOCAB + "level", "q's level is the default vocabulary's"
    assert compiled.render_tm.compact(EX + "level") == "level"
    assert (await read(api, subscription_id))["q"] == "level>1.5"


async def test_an_update_under_another_context_keeps_the_names_meaning(api: Api) -> None:
    url = await host_context(api, TERMS)
    subscription_id = await create(api, subscription(sub_id()))
    response = await api.request(
        "PATCH", path(subscription_id), {"notification": {"attributes": ["level"]}}, headers=with_link(url)
    )
    assert response.status == 204, await response.text()
    compiled = registered(api, subscription_id)
    assert compiled is not None
    assert compiled.attributes == frozenset({EX + "level"})
    assert (await read(api, subscription_id))["notification"]["attributes"] == [EX + "level"]
    assert (await read(api, subscription_id, headers=with_link(url)))["notification"]["attributes"] == [
        "level"
    ]


# --- notifications through the whole broker ------------------------------------------------------


async def test_notifications_resume_after_every_database_connection_is_cut(
    api: Api, db: asyncpg.Connection
) -> None:
    """Issue 11, defect 2: after PostgreSQL drops the broker's connections (a restart), the
    notifier listens again on a fresh connection and new changes are still notified."""
    async with serving() as receiver:
        gauge = new_id("Gauge")
        entity = {"id": gauge, "type": "Gauge", "level": {"type": "Property", "value": 1.0}}
        assert (await api.create(entity)).status == 201
        subscription_id = await create(
            api, subscription(sub_id(), notification={"endpoint": {"uri": receiver.url("cut")}})
        )

        async def level(value: float) -> None:
            response = await api.request(
                "PATCH",
                f"/ngsi-ld/v1/entities/{gauge}/attrs",
                {"level": {"type": "Property", "value": value}},
            )
            assert response.status == 204, await response.text()

        await level(2.0)
        await receiver.wait("cut", 1)
        # Cut once that delivery has committed: nothing in flight, so nothing is sent twice.
        await eventually(lambda: _times_sent(db, api.tenant, subscription_id), what="the delivery recorded")
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()"
        )
        await eventually(lambda: _level_accepted(level, 3.0), what="a write after the cut")
        notes = await receiver.wait("cut", 2, within=30)
    assert [n.body["data"][0]["level"]["value"] for n in notes] == [2.0, 3.0]
    # Every part listens again: the broker is ready as before the cut.
    await eventually(lambda: _ready(api), what="/ready answering 200 again")


async def _ready(api: Api) -> bool:
    response = await api.client.get("/ready")
    return response.status == 200


async def _times_sent(db: asyncpg.Connection, tenant: str, subscription_id: str) -> bool:
    sent = await db.fetchval(
        "SELECT times_sent FROM subscriptions WHERE tenant = $1 AND id = $2", tenant, subscription_id
    )
    return bool(sent == 1)


async def _level_accepted(level: Callable[[float], Awaitable[None]], value: float) -> bool:
    await level(value)
    return True
