"""What a notification carries, through the whole broker to a real HTTP receiver on 127.0.0.1.

ETSI GS CIM 009 V1.9.1: clause 5.8.6 (notification behaviour), 5.2.12 (Subscription),
5.2.14 (NotificationParams), 5.3.1 (Notification); issue 13 items 1 and 8 and the subscription
members jsonldContext, notification.pick/omit and datasetId.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.jsonld.context import CORE_URL
from tests.conftest import Api, new_id
from tests.integration.test_delivery import Received, Receiver, serving
from tests.integration.test_subscriptions_api import create, sub_id

ENTITIES = "/ngsi-ld/v1/entities"
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
    **members: Any,
) -> str:
    """A subscription to every Gauge notifying ``receiver.url(path)``."""
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
    return await create(api, body)


async def created(api: Api, entity: dict[str, Any]) -> str:
    response = await api.create(entity)
    assert response.status == 201, await response.text()
    return str(entity["id"])


async def patch(api: Api, entity_id: str, fragment: dict[str, Any]) -> None:
    response = await api.request("PATCH", f"{ENTITIES}/{entity_id}/attrs", fragment)
    assert response.status in (204, 207), await response.text()


async def one(receiver: Receiver, path: str) -> Received:
    [received] = await receiver.wait(path, 1)
    return received


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
    received = await one(receiver, "ld")
    assert received.headers["Content-Type"] == LD_JSON
    assert "Link" not in received.headers
    assert received.body["@context"] == CORE_URL
    assert received.body["data"][0]["@context"] == CORE_URL
    assert received.body["data"][0]["level"]["value"] == 2.0


async def test_a_json_endpoint_gets_the_context_as_a_link_and_none_in_the_body(
    api: Api, receiver: Receiver
) -> None:
    """Clause 5.8.6 / 6.3.11: application/json carries the @context in a Link header."""
    entity_id = await created(api, gauge(new_id("Gauge")))
    await subscribe(api, receiver, "json")
    await patch(api, entity_id, level(2.0))
    received = await one(receiver, "json")
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
    data = (await one(receiver, "sys")).body["data"][0]
    assert data["createdAt"].endswith("Z")
    assert data["modifiedAt"] >= data["createdAt"]
    if form != "keyValues":
        assert data["level"]["createdAt"] == data["createdAt"]
    plain = (await one(receiver, "plain")).body["data"][0]
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
    data = (await one(receiver, "changes")).body["data"][0]
    assert data["label"]["languageMap"] == {"en": "Kasuga river"}
    assert data["label"]["previousLanguageMap"] == {"en": "Kasuga", "ja": "春日"}
    assert data["meta"]["json"] == {"id": "y"}
    assert data["meta"]["previousJson"] == {"id": "x", "null": None}
    assert data["kind"]["vocab"] == "lake"
    assert data["kind"]["previousVocab"] == "river"
    assert "previousValue" not in data["level"], "an attribute the patch left alone has no previous value"
