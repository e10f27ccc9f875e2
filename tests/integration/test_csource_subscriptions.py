"""Registration subscriptions over HTTP (clauses 5.11.2-5.11.6, binding 6.12-6.13) and their
CSourceNotifications (5.3.2) delivered to a loopback receiver."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api, eventually, new_id, problem
from tests.integration.helpers import body_of, ensure_tenant, host_context, with_link
from tests.integration.test_csource_registrations import EX, TERMS, create, reg_id, registration
from tests.integration.test_csource_registrations import path as registration_path
from tests.integration.test_delivery import Receiver, serving

CSOURCE_SUBSCRIPTIONS = "/ngsi-ld/v1/csourceSubscriptions"


def subscription(uri: str = "http://127.0.0.1:9/notify", **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Shelter"}],
        "notification": {"endpoint": {"uri": uri}},
    }
    body.update(members)
    return {key: value for key, value in body.items() if value is not None}


def path(subscription_id: str) -> str:
    return f"{CSOURCE_SUBSCRIPTIONS}/{quote(subscription_id, safe=':')}"


async def subscribe(api: Api, body: dict[str, Any], **kwargs: Any) -> str:
    response = await api.request("POST", CSOURCE_SUBSCRIPTIONS, body, **kwargs)
    assert response.status == 201, await response.text()
    return response.headers["Location"].removeprefix(CSOURCE_SUBSCRIPTIONS + "/")


async def listed(api: Api, params: dict[str, str] | None = None) -> list[str]:
    response = await api.request("GET", CSOURCE_SUBSCRIPTIONS, params=params)
    assert response.status == 200, await response.text()
    return [s["id"] for s in await body_of(response)]


@pytest.fixture
async def link(api: Api) -> dict[str, str]:
    await ensure_tenant(api)
    return with_link(await host_context(api, TERMS))


async def test_crud_of_a_registration_subscription(api: Api, link: dict[str, str]) -> None:
    subscription_id = await subscribe(api, subscription(watchedAttributes=["capacity"]), headers=link)
    response = await api.request("GET", path(subscription_id), headers=link)
    body = await body_of(response)
    assert response.status == 200, body
    assert body["entities"] == [{"type": "Shelter"}]
    assert body["watchedAttributes"] == ["capacity"]
    assert body["status"] == "active"
    plain = await body_of(await api.request("GET", path(subscription_id)))
    assert plain["entities"] == [{"type": EX + "Shelter"}]
    patched = await api.request("PATCH", path(subscription_id), {"isActive": False}, headers=link)
    assert patched.status == 204, await patched.text()
    assert (await body_of(await api.request("GET", path(subscription_id))))["status"] == "paused"
    response = await api.request("GET", CSOURCE_SUBSCRIPTIONS, params={"count": "true"})
    assert response.headers["NGSILD-Results-Count"] == "1"
    assert (await api.request("DELETE", path(subscription_id))).status == 204
    await problem(await api.request("GET", path(subscription_id)), 404, "ResourceNotFound")
    await problem(await api.request("DELETE", path(subscription_id)), 404, "ResourceNotFound")
    await problem(
        await api.request("PATCH", path(subscription_id), {"isActive": True}), 404, "ResourceNotFound"
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"type": "Subscription", "entities": [{"type": "Shelter"}]}, 400, "BadRequestData"),
        (subscription(uri="ftp://127.0.0.1/x"), 400, "BadRequestData"),
        (subscription(entities=None), 400, "BadRequestData"),
        (subscription(type="CSourceSubscription"), 400, "BadRequestData"),
        (subscription(expiresAt="2001-01-01T00:00:00Z"), 400, "BadRequestData"),
        (subscription(timeInterval=10, entities=[{"type": "Shelter"}]), 501, "OperationNotSupported"),
    ],
)
async def test_a_bad_registration_subscription_is_refused_and_nothing_is_stored(
    api: Api, link: dict[str, str], body: dict[str, Any], status: int, error: str
) -> None:
    await problem(await api.request("POST", CSOURCE_SUBSCRIPTIONS, body, headers=link), status, error)
    assert await listed(api) == []


async def test_a_bad_patch_changes_nothing_and_a_taken_id_is_409(api: Api, link: dict[str, str]) -> None:
    subscription_id = await subscribe(api, subscription(id=new_id("Subscription")), headers=link)
    before = await body_of(await api.request("GET", path(subscription_id)))
    fragments: list[dict[str, Any]] = [
        {},
        {"notification": {"endpoint": {"uri": "nowhere"}}},
        {"entities": []},
    ]
    for fragment in fragments:
        await problem(await api.request("PATCH", path(subscription_id), fragment), 400, "BadRequestData")
    assert await body_of(await api.request("GET", path(subscription_id))) == before
    again = subscription(id=subscription_id)
    await problem(await api.request("POST", CSOURCE_SUBSCRIPTIONS, again, headers=link), 409, "AlreadyExists")


async def _notes(receiver: Receiver, name: str, count: int) -> list[dict[str, Any]]:
    return [r.body for r in await receiver.wait(name, count)]


async def test_registration_changes_are_notified_newly_matching_updated_and_no_longer_matching(
    api: Api, link: dict[str, str]
) -> None:
    async with serving() as receiver:
        subscription_id = await subscribe(
            api, subscription(receiver.url("changes"), watchedAttributes=["capacity"]), headers=link
        )
        registration_id = await create(api, registration(reg_id()), headers=link)
        # Registrations of other types or attributes are not this subscription's.
        await create(
            api, registration(reg_id(), information=[{"entities": [{"type": "Gauge"}]}]), headers=link
        )
        await create(api, registration(reg_id(), information=[{"propertyNames": ["ward"]}]), headers=link)
        moved = await api.request(
            "PATCH", registration_path(registration_id), {"endpoint": "http://127.0.0.1:9/b"}
        )
        assert moved.status == 204
        other_type = {"information": [{"entities": [{"type": "Gauge"}]}]}
        assert (await api.request("PATCH", registration_path(registration_id), other_type)).status == 204
        assert (await api.request("DELETE", registration_path(registration_id))).status == 204
        notes = await _notes(receiver, "changes", 3)
        first = receiver.at("changes")[0]
    assert [n["triggerReason"] for n in notes] == ["newlyMatching", "updated", "noLongerMatching"]
    for note in notes:
        assert note["type"] == "CSourceNotification"
        assert note["subscriptionId"] == subscription_id
        assert [r["id"] for r in note["data"]] == [registration_id]
    # Compacted with the subscription's @context, which the Link header names.
    assert notes[0]["data"][0]["information"][0]["entities"] == [{"type": "Shelter"}]
    assert notes[1]["data"][0]["endpoint"] == "http://127.0.0.1:9/b"
    assert first.headers["NGSILD-Tenant"] == api.tenant
    assert "jsonldContexts" in first.headers["Link"]
    # Deleting a registration that no longer matched notifies nothing more.
    assert len(receiver.at("changes")) == 3


async def test_a_new_subscription_is_notified_of_the_registrations_matching_already(
    api: Api, link: dict[str, str]
) -> None:
    first = await create(api, registration(reg_id()), headers=link)
    second = await create(api, registration(reg_id()), headers=link)
    await create(api, registration(reg_id(), information=[{"entities": [{"type": "Gauge"}]}]), headers=link)
    async with serving() as receiver:
        await subscribe(api, subscription(receiver.url("initial")), headers=link)
        (note,) = await _notes(receiver, "initial", 1)
    assert note["triggerReason"] == "newlyMatching"
    assert sorted(r["id"] for r in note["data"]) == sorted([first, second])


async def test_a_failed_delivery_is_retried_and_recorded(api: Api, link: dict[str, str]) -> None:
    async with serving() as receiver:
        receiver.plan["flaky"] = [500]
        subscription_id = await subscribe(api, subscription(receiver.url("flaky")), headers=link)
        registration_id = await create(api, registration(reg_id()), headers=link)
        notes = await _notes(receiver, "flaky", 2)
    assert [n["data"][0]["id"] for n in notes] == [registration_id, registration_id]
    assert notes[0]["id"] == notes[1]["id"]  # the same notification, sent again

    async def recorded() -> bool:
        body = await body_of(await api.request("GET", path(subscription_id)))
        return bool(body["notification"].get("lastSuccess")) and body["notification"]["timesFailed"] == 1

    await eventually(recorded, what="the delivery state of the retried notification")


async def test_tenants_do_not_see_or_trigger_each_others_registration_subscriptions(
    api: Api, link: dict[str, str]
) -> None:
    other = Api(api.client, api.tenant + "-b")
    await ensure_tenant(other)
    async with serving() as receiver:
        subscription_id = await subscribe(api, subscription(receiver.url("mine")), headers=link)
        assert await listed(other) == []
        await problem(await other.request("GET", path(subscription_id)), 404, "ResourceNotFound")
        await create(other, registration(reg_id(), information=[{"entities": [{"type": EX + "Shelter"}]}]))
        mine = await create(api, registration(reg_id()), headers=link)
        (note,) = await _notes(receiver, "mine", 1)
    assert [r["id"] for r in note["data"]] == [mine]  # the other tenant's came first, and was not sent


async def test_notifications_are_compacted_with_the_subscriptions_jsonld_context(api: Api) -> None:
    await ensure_tenant(api)
    url = await host_context(api, TERMS)
    async with serving() as receiver:
        await subscribe(
            api, subscription(receiver.url("ctx"), entities=[{"type": EX + "Shelter"}], jsonldContext=url)
        )
        await create(api, registration(reg_id(), information=[{"entities": [{"type": EX + "Shelter"}]}]))
        (note,) = await _notes(receiver, "ctx", 1)
        headers = receiver.at("ctx")[0].headers
    assert note["data"][0]["information"] == [{"entities": [{"type": "Shelter"}]}]
    assert url in headers["Link"]
