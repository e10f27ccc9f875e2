"""What a notification carries, through the whole broker to a real HTTP receiver on 127.0.0.1.

ETSI GS CIM 009 V1.9.1: clause 5.8.6 (notification behaviour), 5.2.12 (Subscription),
5.2.14 (NotificationParams), 5.3.1 (Notification); issue 13 items 1 and 8 and the subscription
members jsonldContext, notification.pick/omit and datasetId.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.api.keys import REGISTRY
from broker.jsonld.context import CORE_URL
from tests.conftest import Api, eventually, new_id, problem
from tests.integration.helpers import host_context, with_link
from tests.integration.test_delivery import Received, Receiver, serving
from tests.integration.test_subscriptions_api import create, read, sub_id

ENTITIES = "/ngsi-ld/v1/entities"
SUBSCRIPTIONS = "/ngsi-ld/v1/subscriptions"
LD_JSON = "application/ld+json"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as recorder:
        yield recorder


def gauge(entity_id: str, **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": entity_id, "type": "Gauge", "level": {"type": "Property", "value": 1.0}}
    body.update(attrs)
    return body


async def subscribe(
    api: Api,
    receiver: Receiver,
    path: str,
    *,
    notification: dict[str, Any] | None = None,
    accept: str = "application/json",
    headers: str | None = None,
    **members: Any,
) -> str:
    """A subscription to every Gauge notifying ``receiver.url(path)``; ``headers``: a Link @context."""
    body: dict[str, Any] = {
        "id": sub_id(),
        "type": "Subscription",
        "entities": [{"type": "Gauge"}],
        "notification": {
            **(notification or {}),
            "endpoint": {"uri": receiver.url(path), "accept": accept},
        },
    }
    body.update(members)
    return await create(api, body, headers=None if headers is None else with_link(headers))


async def created(api: Api, entity: dict[str, Any]) -> str:
    response = await api.create(entity)
    assert response.status == 201, await response.text()
    return str(entity["id"])


async def patch(api: Api, entity_id: str, fragment: dict[str, Any]) -> None:
    response = await api.request("PATCH", f"{ENTITIES}/{entity_id}/attrs", fragment)
    assert response.status in (204, 207), await response.text()


async def one(api: Api, receiver: Receiver, path: str) -> Received:
    """The first notification of ``api``'s tenant to ``path``.

    Filtered by tenant: a loopback port is reused, and a broker of another test session still
    retrying a notification to the port's former owner may reach this receiver.
    """

    def arrived() -> list[Received]:
        return [r for r in receiver.at(path) if r.headers.get("NGSILD-Tenant") == api.tenant]

    return (await eventually(arrived, what=f"a notification to /{path}"))[0]


def level(value: float) -> dict[str, Any]:
    return {"level": {"type": "Property", "value": value}}


# --- item 8: @context, sysAttrs, showChanges ----------------------------------------------------


async def test_an_ld_json_endpoint_gets_the_context_in_the_body_of_each_entity(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.8.6 (ETSI test suite 046_14): application/ld+json, no Link, @context in the body."""
    entity_id = await created(api, gauge(new_id("Gauge")))
    await subscribe(api, receiver, "ld", accept=LD_JSON)
    await patch(api, entity_id, level(2.0))
    received = await one(api, receiver, "ld")
    assert received.headers["Content-Type"] == LD_JSON
    assert "Link" not in received.headers
    assert received.body["@context"] == CORE_URL
    assert received.body["data"][0].get("@context") == CORE_URL, (received.headers, received.body)
    assert received.body["data"][0]["level"]["value"] == 2.0


async def test_a_json_endpoint_gets_the_context_as_a_link_and_none_in_the_body(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.8.6 / 6.3.11: application/json carries the @context in a Link header."""
    entity_id = await created(api, gauge(new_id("Gauge")))
    await subscribe(api, receiver, "json")
    await patch(api, entity_id, level(2.0))
    received = await one(api, receiver, "json")
    assert CORE_URL in received.headers["Link"]
    assert "@context" not in received.body
    assert "@context" not in received.body["data"][0]


@pytest.mark.parametrize("form", ["normalized", "concise", "keyValues"])
async def test_sys_attrs_gives_created_at_and_modified_at_in_every_format(
    api: Api, receiver: Receiver, form: str
) -> None:
    """Clause 5.2.14 sysAttrs (ETSI test suite 046_17/046_18)."""
    entity_id = await created(api, gauge(new_id("Gauge")))
    await subscribe(api, receiver, "sys", notification={"format": form, "sysAttrs": True})
    await subscribe(api, receiver, "plain", notification={"format": form})
    await patch(api, entity_id, level(2.0))
    data = (await one(api, receiver, "sys")).body["data"][0]
    assert data["createdAt"].endswith("Z")
    assert data["modifiedAt"] >= data["createdAt"]
    if form != "keyValues":
        assert data["level"]["createdAt"] == data["createdAt"]
    plain = (await one(api, receiver, "plain")).body["data"][0]
    assert "createdAt" not in plain
    assert "modifiedAt" not in plain


async def test_show_changes_gives_the_previous_language_map_json_and_vocab(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.2.14 showChanges for LanguageProperty, JsonProperty and VocabProperty."""
    entity_id = await created(
        api,
        gauge(
            new_id("Gauge"),
            label={"type": "LanguageProperty", "languageMap": {"en": "Kasuga", "ja": "春日"}},
            meta={"type": "JsonProperty", "json": {"id": "x", "null": None}},
            kind={"type": "VocabProperty", "vocab": "river"},
        ),
    )
    await subscribe(api, receiver, "changes", notification={"showChanges": True})
    await patch(
        api,
        entity_id,
        {
            "label": {"type": "LanguageProperty", "languageMap": {"en": "Kasuga river"}},
            "meta": {"type": "JsonProperty", "json": {"id": "y"}},
            "kind": {"type": "VocabProperty", "vocab": "lake"},
        },
    )
    data = (await one(api, receiver, "changes")).body["data"][0]
    assert data["label"]["languageMap"] == {"en": "Kasuga river"}
    assert data["label"]["previousLanguageMap"] == {"en": "Kasuga", "ja": "春日"}
    assert data["meta"]["json"] == {"id": "y"}
    assert data["meta"]["previousJson"] == {"id": "x", "null": None}
    assert data["kind"]["vocab"] == "lake"
    assert data["kind"]["previousVocab"] == "river"
    assert "previousValue" not in data["level"], "an attribute the patch left alone has no previous value"


# --- jsonldContext (clause 5.2.12) --------------------------------------------------------------

CITY = "https://example.org/city#"
CITY_TERMS = {"Gauge": CITY + "Gauge", "level": CITY + "level"}
SHORT_TERMS = {"G": CITY + "Gauge", "lvl": CITY + "level"}
CORE_V18 = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"


async def test_a_jsonld_context_compacts_the_notifications_and_is_their_context(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.2.12 jsonldContext (ETSI test suite 046_20): notifications are compacted with it and
    name it as their @context; the subscription reads back with it."""
    city = await host_context(api, CITY_TERMS)
    short = await host_context(api, SHORT_TERMS)
    entity_id = new_id("Gauge")
    response = await api.create(gauge(entity_id), headers=with_link(city))
    assert response.status == 201, await response.text()
    subscription_id = await subscribe(
        api, receiver, "short", accept=LD_JSON, jsonldContext=short, headers=city
    )
    await subscribe(api, receiver, "core", accept=LD_JSON, jsonldContext=CORE_V18, headers=city)
    patched = await api.request("PATCH", f"{ENTITIES}/{entity_id}/attrs", level(2.0), headers=with_link(city))
    assert patched.status == 204, await patched.text()
    data = (await one(api, receiver, "short")).body["data"][0]
    assert (data["type"], data["lvl"]["value"], data["@context"]) == ("G", 2.0, short)
    data = (await one(api, receiver, "core")).body["data"][0]
    assert (data["type"], data[CITY + "level"]["value"]) == (CITY + "Gauge", 2.0)
    assert data["@context"] == CORE_V18
    stored = await read(api, subscription_id, headers=with_link(city))
    assert stored["jsonldContext"] == short
    assert stored["entities"] == [{"type": "Gauge"}], "read back under the request's own @context"


async def test_a_jsonld_context_given_in_an_update_compacts_the_next_notifications(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.8.2 with 5.2.12 jsonldContext: an update may add it; names keep their meaning."""
    city = await host_context(api, CITY_TERMS)
    short = await host_context(api, SHORT_TERMS)
    entity_id = new_id("Gauge")
    assert (await api.create(gauge(entity_id), headers=with_link(city))).status == 201
    subscription_id = await subscribe(api, receiver, "later", headers=city)
    response = await api.request(
        "PATCH", f"/ngsi-ld/v1/subscriptions/{subscription_id}", {"jsonldContext": short}
    )
    assert response.status == 204, await response.text()
    await api.request("PATCH", f"{ENTITIES}/{entity_id}/attrs", level(3.0), headers=with_link(city))
    received = await one(api, receiver, "later")
    assert received.body["data"][0]["lvl"]["value"] == 3.0
    assert short in received.headers["Link"]


async def test_a_subscription_reloaded_from_the_store_keeps_its_jsonld_context(api: Api) -> None:
    """Clause 5.2.12 jsonldContext: another process, compiling the stored row, compacts alike."""
    city = await host_context(api, CITY_TERMS)
    short = await host_context(api, SHORT_TERMS)
    receiver_url = "http://127.0.0.1:9/n"
    body = {
        "type": "Subscription",
        "entities": [{"type": "Gauge"}],
        "q": "level>1",
        "jsonldContext": short,
        "notification": {"endpoint": {"uri": receiver_url}},
    }
    subscription_id = await create(api, body, headers=with_link(city))
    registry = api.client.app[REGISTRY]
    registry.remove(api.tenant, subscription_id)
    await registry.refresh(api.tenant, subscription_id)
    [compiled] = [s for s in registry.for_tenant(api.tenant) if s.id == subscription_id]
    assert compiled.context == short
    assert compiled.render_tm.compact(CITY + "level") == "lvl"
    assert compiled.tm.expand("level") == CITY + "level", "q means what it meant when written"


# --- pick / omit (clauses 5.2.14, 4.21) and datasetId (clause 5.2.12) ------------------------------


async def test_pick_and_omit_shape_the_notified_entity(api: Api, receiver: Receiver) -> None:
    """Clause 4.21 projection in NotificationParams (ETSI test suite 046_42, 046_43)."""
    entity_id = await created(api, gauge(new_id("Gauge"), status={"type": "Property", "value": "ok"}))
    await subscribe(api, receiver, "pick", notification={"pick": ["id", "level"]})
    await subscribe(api, receiver, "omit", notification={"omit": ["type", "level"]})
    await patch(api, entity_id, level(2.0))
    assert (await one(api, receiver, "pick")).body["data"] == [
        {"id": entity_id, "level": {"type": "Property", "value": 2.0}}
    ]
    assert (await one(api, receiver, "omit")).body["data"] == [
        {"id": entity_id, "status": {"type": "Property", "value": "ok"}}
    ]


@pytest.mark.parametrize(
    "members",
    [
        {"pick": ["id"], "omit": ["id"]},
        {"pick": ["id"], "attributes": ["level"]},
        {"omit": ["level"], "attributes": ["level"]},
    ],
)
async def test_a_subscription_with_conflicting_pick_omit_or_attributes_answers_400(
    api: Api, members: dict[str, Any]
) -> None:
    """Clause 4.21 (ETSI test suite 028_08): and nothing is stored, not even the tenant."""
    body = {
        "type": "Subscription",
        "entities": [{"type": "Gauge"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}, **members},
    }
    await problem(await api.request("POST", SUBSCRIPTIONS, body), 400, "BadRequestData")
    await problem(await api.request("GET", SUBSCRIPTIONS), 404, "NonexistentTenant")


async def test_a_dataset_id_subscription_is_notified_only_those_instances(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.2.12 datasetId (ETSI test suite 028_06, 046_19): stored, read back, and only the
    instances of those datasetIds are notified, when one of them changes."""
    french = "urn:ngsi-ld:Dataset:french-name"
    entity_id = await created(
        api,
        gauge(
            new_id("Gauge"),
            name=[
                {"type": "Property", "value": "Kasuga"},
                {"type": "Property", "value": "Kasuga-gawa", "datasetId": french},
            ],
        ),
    )
    subscription_id = await subscribe(api, receiver, "dataset", datasetId=[french])
    assert (await read(api, subscription_id))["datasetId"] == [french]
    await patch(api, entity_id, {"name": {"type": "Property", "value": "Kasuga river"}})
    await patch(api, entity_id, {"name": {"type": "Property", "value": "Le Kasuga", "datasetId": french}})
    data = (await one(api, receiver, "dataset")).body["data"][0]
    assert data == {
        "id": entity_id,
        "type": "Gauge",
        "name": {"type": "Property", "value": "Le Kasuga", "datasetId": french},
    }
    # In order: had the change of the default instance been notified, it would have come first.


# --- issue 13 item 1: deletion notifications (clauses 5.2.12 attributeDeleted, 5.8.6) -------------

NULL = "urn:ngsi-ld:null"
RADAR = "urn:ngsi-ld:Dataset:radar"


def with_status(entity_id: str) -> dict[str, Any]:
    return gauge(
        entity_id,
        status={"type": "Property", "value": "ok"},
        name=[
            {"type": "Property", "value": "Kasuga"},
            {"type": "Property", "value": "Kasuga radar", "datasetId": RADAR},
        ],
    )


async def deleted_ok(api: Api, path: str, params: dict[str, str] | None = None) -> None:
    response = await api.request("DELETE", path, params=params)
    assert response.status == 204, await response.text()


@pytest.mark.parametrize(("form", "expected"), [("keyValues", NULL), ("concise", NULL)])
async def test_deleting_an_attribute_notifies_it_as_ngsi_ld_null(
    api: Api, receiver: Receiver, form: str, expected: Any
) -> None:
    """Clause 5.6.5 Delete Attribute with the attributeDeleted trigger (ETSI test suite 046_22_01)."""
    entity_id = await created(api, with_status(new_id("Gauge")))
    await subscribe(
        api, receiver, "gone", notification={"format": form}, notificationTrigger=["attributeDeleted"]
    )
    await deleted_ok(api, f"{ENTITIES}/{entity_id}/attrs/status")
    data = (await one(api, receiver, "gone")).body["data"][0]
    assert data["status"] == expected
    assert data["level"] == 1.0


async def test_a_deleted_attribute_carries_deleted_at_with_sys_attrs(api: Api, receiver: Receiver) -> None:
    """ETSI test suite 046_22_11: with sysAttrs, deletedAt beside the attribute's own timestamps
    (046_22_02, without sysAttrs, has none)."""
    entity_id = await created(api, with_status(new_id("Gauge")))
    await subscribe(
        api,
        receiver,
        "gone",
        notification={"sysAttrs": True},
        notificationTrigger=["attributeDeleted"],
        watchedAttributes=["status"],
    )
    await deleted_ok(api, f"{ENTITIES}/{entity_id}/attrs/status")
    status = (await one(api, receiver, "gone")).body["data"][0]["status"]
    assert status["type"] == "Property"
    assert status["value"] == NULL
    assert status["createdAt"] <= status["modifiedAt"] <= status["deletedAt"]


async def test_a_merge_patch_with_ngsi_ld_null_notifies_attribute_deleted(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.6.17 Merge Entity: urn:ngsi-ld:null removes the attribute, which is notified."""
    entity_id = await created(api, with_status(new_id("Gauge")))
    await subscribe(
        api, receiver, "merge", notification={"format": "keyValues"}, notificationTrigger=["attributeDeleted"]
    )
    response = await api.request(
        "PATCH", f"{ENTITIES}/{entity_id}", {"status": {"type": "Property", "value": NULL}}
    )
    assert response.status == 204, await response.text()
    assert (await one(api, receiver, "merge")).body["data"][0]["status"] == NULL


async def test_deleting_one_dataset_id_instance_notifies_that_instance(api: Api, receiver: Receiver) -> None:
    """Clause 5.6.5 with datasetId (ETSI test suite 046_22_07/08): the other instance as it is."""
    entity_id = await created(api, with_status(new_id("Gauge")))
    await subscribe(
        api, receiver, "instance", notificationTrigger=["attributeDeleted"], watchedAttributes=["name"]
    )
    await deleted_ok(api, f"{ENTITIES}/{entity_id}/attrs/name", {"datasetId": RADAR})
    name = (await one(api, receiver, "instance")).body["data"][0]["name"]
    assert {"type": "Property", "value": "Kasuga"} in name
    assert {"type": "Property", "value": NULL, "datasetId": RADAR} in name


async def test_deleting_the_entity_notifies_attribute_deleted_and_entity_deleted_subscriptions(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.6.6 Delete Entity (ETSI test suite 046_22_12, 046_22_13): attributeDeleted
    subscriptions get the watched attributes as Null; entityDeleted with sysAttrs its timestamps."""
    entity_id = await created(api, with_status(new_id("Gauge")))
    await subscribe(
        api, receiver, "attr", notificationTrigger=["attributeDeleted"], watchedAttributes=["status"]
    )
    await subscribe(
        api, receiver, "entity", notification={"sysAttrs": True}, notificationTrigger=["entityDeleted"]
    )
    await deleted_ok(api, f"{ENTITIES}/{entity_id}")
    attr = (await one(api, receiver, "attr")).body["data"][0]
    assert set(attr) == {"id", "type", "deletedAt", "status"}
    assert attr["status"] == {"type": "Property", "value": NULL}
    whole = (await one(api, receiver, "entity")).body["data"][0]
    assert set(whole) == {"id", "type", "createdAt", "modifiedAt", "deletedAt"}
    assert whole["createdAt"] <= whole["modifiedAt"] <= whole["deletedAt"]
