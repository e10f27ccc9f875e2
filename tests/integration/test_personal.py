"""Personal entity types and the audit log of their reads on the real server (issue 12 item 4).

Tenant A marks Device as personal: its readers without the ``personal`` role do not see Devices
(absent from queries, 404 on retrieval, POST query and temporal reads), nor does any grant or
open data; a key with roles [reader, personal] sees them and each read leaves one audit row,
listed only to A's admins, filtered, and purged after NGSI_AUDIT_KEEP.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.api.keys import POOL
from broker.auth.model import Role
from broker.store import personal as stored
from broker.temporal.maintenance import HistoryMaintenance
from tests.clock import ManualClock
from tests.conftest import Api, eventually
from tests.integration.auth_helpers import ENTITIES, Secured, refused
from tests.integration.test_delivery import Receiver, serving

TEMPORAL = "/ngsi-ld/v1/temporal/entities"
QUERY = "/ngsi-ld/v1/entityOperations/query"
DEVICE = "https://uri.etsi.org/ngsi-ld/default-context/Device"


@dataclass
class City:
    secured: Secured
    device: str
    thing: str
    personal_reader: str

    async def admin(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        return await self.secured.call(method, path, self.secured.keys[Role.ADMIN], body, **headers)

    async def audit(self, query: str = "") -> list[dict[str, Any]]:
        response = await self.admin("GET", f"/admin/audit{query}")
        assert response.status == 200, await response.text()
        rows: list[dict[str, Any]] = await response.json()
        return rows


@pytest.fixture
async def city(secured: Secured) -> City:
    suffix = uuid.uuid4().hex[:8]
    device, thing = f"urn:ngsi-ld:Device:tag-{suffix}", f"urn:ngsi-ld:Thing:box-{suffix}"
    for entity_id, entity_type in ((device, "Device"), (thing, "Thing")):
        body = {"id": entity_id, "type": entity_type, "rssi": {"type": "Property", "value": -70}}
        created = await secured.call("POST", ENTITIES, secured.keys[Role.WRITER], body)
        assert created.status == 201, await created.text()
    _, personal_reader = await secured.ring.create(secured.tenant, [Role.READER, Role.PERSONAL], "tags")
    city = City(secured, device, thing, personal_reader)
    marked = await city.admin("PUT", "/admin/personal/Device")
    assert marked.status == 201, await marked.text()
    return city


async def ids_of(response: Any) -> set[str]:
    assert response.status == 200, await response.text()
    return {e["id"] for e in await response.json()}


async def test_marking_is_listed_idempotent_and_undone(city: City) -> None:
    listed = await city.admin("GET", "/admin/personal")
    assert await listed.json() == ["Device"]
    assert (await city.admin("PUT", "/admin/personal/Device")).status == 204
    assert (await city.admin("DELETE", "/admin/personal/Device")).status == 204
    assert (await city.admin("DELETE", "/admin/personal/Device")).status == 404
    assert await (await city.admin("GET", "/admin/personal")).json() == []
    reader = city.secured.keys[Role.READER]
    assert city.device in await ids_of(await city.secured.call("GET", f"{ENTITIES}?type=Device", reader))


async def test_a_reader_without_personal_sees_no_personal_entity(city: City) -> None:
    s = city.secured
    reader = s.keys[Role.READER]
    assert await ids_of(await s.call("GET", f"{ENTITIES}?type=Device", reader)) == set()
    assert await ids_of(await s.call("GET", f"{ENTITIES}?attrs=rssi", reader)) >= {city.thing}
    assert city.device not in await ids_of(await s.call("GET", f"{ENTITIES}?attrs=rssi", reader))
    assert (await s.call("GET", f"{ENTITIES}/{city.device}", reader)).status == 404
    assert (await s.call("GET", f"{ENTITIES}/{city.thing}", reader)).status == 200
    posted = await s.call("POST", QUERY, reader, {"type": "Query", "attrs": ["rssi"]})
    assert city.device not in await ids_of(posted)
    assert await ids_of(await s.call("GET", f"{TEMPORAL}?type=Device", reader)) == set()
    assert city.thing in await ids_of(await s.call("GET", f"{TEMPORAL}?attrs=rssi", reader))
    assert (await s.call("GET", f"{TEMPORAL}/{city.device}", reader)).status == 404
    temporal_post = await s.call(
        "POST",
        "/ngsi-ld/v1/temporal/entityOperations/query",
        reader,
        {"type": "Query", "entities": [{"type": "Device"}]},
    )
    assert await ids_of(temporal_post) == set()
    types = await s.call("GET", "/ngsi-ld/v1/types", reader)
    assert "Device" not in (await types.json())["typeList"]
    assert (await s.call("GET", "/ngsi-ld/v1/types/Device", reader)).status == 404
    rssi = await (await s.call("GET", "/ngsi-ld/v1/attributes/rssi", reader)).json()
    assert rssi["typeNames"] == ["Thing"]
    assert await city.audit() == []  # nothing personal was read


async def test_a_personal_reader_sees_them_and_each_read_is_audited(city: City) -> None:
    s, key = city.secured, city.personal_reader
    assert (await s.call("GET", f"{ENTITIES}/{city.device}", key)).status == 200
    assert await ids_of(await s.call("GET", f"{ENTITIES}?type=Device", key)) == {city.device}
    assert city.thing in await ids_of(await s.call("GET", f"{ENTITIES}?type=Thing", key))  # not audited
    posted = await s.call("POST", QUERY, key, {"type": "Query", "entities": [{"type": "Device"}]})
    assert await ids_of(posted) == {city.device}
    assert await ids_of(await s.call("GET", f"{TEMPORAL}?type=Device", key)) == {city.device}
    assert (await s.call("GET", f"{TEMPORAL}/{city.device}", key)).status == 200
    assert (await s.call("GET", "/ngsi-ld/v1/types/Device", key)).status == 200  # counts: not audited
    rows = await city.audit()
    key_id = key.split("_")[1]
    assert [r["route"] for r in reversed(rows)] == [
        "GET /ngsi-ld/v1/entities/{entity_id}",
        "GET /ngsi-ld/v1/entities",
        "POST /ngsi-ld/v1/entityOperations/query",
        "GET /ngsi-ld/v1/temporal/entities",
        "GET /ngsi-ld/v1/temporal/entities/{entity_id}",
    ]
    assert all(r["subject"] == key_id and r["kind"] == "key" for r in rows)
    assert all(r["entityIds"] == [city.device] and r["count"] == 1 for r in rows)


async def test_a_large_query_is_audited_by_its_count(city: City) -> None:
    s = city.secured
    suffix = uuid.uuid4().hex[:6]
    batch = [{"id": f"urn:ngsi-ld:Device:many-{suffix}-{i}", "type": "Device"} for i in range(120)]
    made = await s.call("POST", "/ngsi-ld/v1/entityOperations/create", s.keys[Role.WRITER], batch)
    assert made.status == 201, await made.text()
    found = await ids_of(await s.call("GET", f"{ENTITIES}?type=Device&limit=200", city.personal_reader))
    assert len(found) == 121
    (row,) = await city.audit()
    assert row["count"] == 121
    assert row["entityIds"] == []


async def test_the_operator_reads_them_audited(city: City) -> None:
    s = city.secured
    headers = {"NGSILD-Tenant": s.tenant}
    got = await s.call("GET", f"{ENTITIES}/{city.device}", s.keys[Role.OPERATOR], **headers)
    assert got.status == 200
    (row,) = await city.audit()
    assert row["subject"] == s.keys[Role.OPERATOR].split("_")[1]


async def test_grants_and_open_data_never_show_personal_types(city: City) -> None:
    s = city.secured
    other = f"{s.tenant}-b"
    for to in (other, "*"):
        granted = await city.admin("POST", "/admin/grants", {"to": to, "types": ["Device", "Thing"]})
        assert granted.status == 201, await granted.text()
    _, b_reader = await s.ring.create(other, [Role.READER, Role.PERSONAL], "town B")
    for key in (b_reader, None):
        as_b = {"NGSILD-Tenant": s.tenant}
        seen = await ids_of(await s.call("GET", f"{ENTITIES}?type=Device,Thing", key, **as_b))
        assert city.thing in seen
        assert city.device not in seen
        assert (await s.call("GET", f"{ENTITIES}/{city.device}", key, **as_b)).status == 404
    assert await city.audit() == []


async def test_subscriptions_on_personal_types_need_personal(city: City) -> None:
    s = city.secured

    def subscription(types: list[str] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "Subscription",
            "watchedAttributes": ["rssi"],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
        }
        if types is not None:
            body["entities"] = [{"type": t} for t in types]
        return body

    writer = s.keys[Role.WRITER]
    for types in (["Device"], ["Thing", "Device"], None):
        await refused(await s.call("POST", "/ngsi-ld/v1/subscriptions", writer, subscription(types)), 403)
    listed = await s.call("GET", "/ngsi-ld/v1/subscriptions", s.keys[Role.READER])
    assert await listed.json() == []
    assert (await s.call("POST", "/ngsi-ld/v1/subscriptions", writer, subscription(["Thing"]))).status == 201
    allowed = await s.call(
        "POST",
        "/ngsi-ld/v1/subscriptions",
        s.keys[Role.OPERATOR],
        subscription(["Device"]),
        **{"NGSILD-Tenant": s.tenant},
    )
    assert allowed.status == 201, await allowed.text()


async def test_notification_deliveries_are_audited(city: City) -> None:
    s = city.secured
    pool = s.client.app[POOL]
    await stored.record_delivery(
        pool, s.tenant, "urn:ngsi-ld:Subscription:x", [city.device, city.thing], datetime.now(UTC)
    )
    await stored.record_delivery(
        pool, s.tenant, "urn:ngsi-ld:Subscription:y", [city.thing], datetime.now(UTC)
    )
    (row,) = await city.audit()
    assert row["subject"] == "subscription urn:ngsi-ld:Subscription:x"
    assert row["entityIds"] == [city.device]
    assert row["route"] == "notification"


async def test_the_audit_log_is_filtered_tenant_bound_and_admins_only(city: City) -> None:
    s, key = city.secured, city.personal_reader
    for _ in range(3):
        assert (await s.call("GET", f"{ENTITIES}/{city.device}", key)).status == 200
    rows = await city.audit()
    assert len(rows) == 3
    assert len(await city.audit("?limit=2")) == 2
    assert len(await city.audit("?offset=2")) == 1
    assert len(await city.audit(f"?entity={city.device}")) == 3
    assert await city.audit(f"?entity={city.thing}") == []
    assert await city.audit("?subject=nobody") == []
    assert len(await city.audit(f"?subject={key.split('_')[1]}")) == 3
    assert await city.audit("?since=2999-01-01T00:00:00Z") == []
    assert await city.audit("?until=2000-01-01T00:00:00Z") == []
    for bad in ("?limit=-1", "?limit=x", "?since=yesterday", "?since=2026-01-01T00:00:00", "?color=red"):
        assert (await city.admin("GET", f"/admin/audit{bad}")).status == 400
    for role in (Role.READER, Role.WRITER):
        await refused(await s.call("GET", "/admin/audit", s.keys[role]), 403)
    await refused(await s.call("GET", "/admin/audit", key), 403)
    _, other_admin = await s.ring.create(f"{s.tenant}-c", [Role.ADMIN], "town C")
    other = await s.call("GET", "/admin/audit", other_admin)
    assert await other.json() == []
    await refused(await s.call("GET", "/admin/audit", other_admin, **{"NGSILD-Tenant": s.tenant}), 403)


async def test_bad_marks_answer_400_and_change_nothing(city: City) -> None:
    for bad in ("bad%20name", "a%00b"):
        assert (await city.admin("PUT", f"/admin/personal/{bad}")).status == 400
    assert await (await city.admin("GET", "/admin/personal")).json() == ["Device"]
    await refused(await city.secured.call("PUT", "/admin/personal/Thing", city.personal_reader), 403)


async def test_audit_rows_are_purged_after_their_keep(city: City) -> None:
    s = city.secured
    pool = s.client.app[POOL]
    now = datetime.now(UTC)
    await stored.record(pool, s.tenant, "old", "key", "GET x", [city.device], now - timedelta(days=401))
    await stored.record(pool, s.tenant, "new", "key", "GET x", [city.device], now - timedelta(days=399))
    clock = ManualClock(now)
    maintenance = HistoryMaintenance(
        pool, days_ahead=1, keep=None, interval=3600, audit_keep=timedelta(days=400), clock=clock
    )
    await maintenance.run_once()
    assert [r["subject"] for r in await city.audit()] == ["new"]
    await clock.advance(2 * 86400)
    await maintenance.run_once()
    assert await city.audit() == []


async def audit_of(api: Api) -> list[dict[str, Any]]:
    response = await api.request("GET", "/admin/audit")
    assert response.status == 200, await response.text()
    rows: list[dict[str, Any]] = await response.json()
    return rows


async def test_with_auth_off_reads_and_deliveries_are_audited(api: Api) -> None:
    async with serving() as receiver:
        await _auth_off(api, receiver)


async def _auth_off(api: Api, receiver: Receiver) -> None:
    first = f"urn:ngsi-ld:Device:off-{uuid.uuid4().hex[:8]}"
    assert (await api.create({"id": first, "type": "Device", "rssi": -60})).status == 201
    assert (await api.request("PUT", "/admin/personal/Device")).status == 201
    await api.get_json(first)
    (row,) = await audit_of(api)
    assert row["subject"] == "auth-off"
    assert row["entityIds"] == [first]

    subscription = {
        "type": "Subscription",
        "entities": [{"type": "Device"}],
        "notification": {"endpoint": {"uri": receiver.url("tags")}},
    }
    made = await api.request("POST", "/ngsi-ld/v1/subscriptions", subscription)
    assert made.status == 201, await made.text()
    subscription_id = made.headers["Location"].rsplit("/", 1)[1]
    try:
        second = f"urn:ngsi-ld:Device:off-{uuid.uuid4().hex[:8]}"
        assert (await api.create({"id": second, "type": "Device", "rssi": -61})).status == 201
        await receiver.wait("tags", 1)

        async def delivered() -> bool:
            return any(r["subject"] == f"subscription {subscription_id}" for r in await audit_of(api))

        await eventually(delivered, what="the delivery's audit row")
        (note,) = [r for r in await audit_of(api) if r["route"] == "notification"]
        assert note["entityIds"] == [second]
        assert note["kind"] == "subscription"
    finally:
        await api.request("DELETE", f"/ngsi-ld/v1/subscriptions/{subscription_id}")


async def test_a_join_does_not_follow_links_to_hidden_personal_entities(city: City) -> None:
    s = city.secured
    owner = {
        "id": f"urn:ngsi-ld:Thing:owner-{uuid.uuid4().hex[:8]}",
        "type": "Thing",
        "tag": {"type": "Relationship", "object": city.device},
    }
    assert (await s.call("POST", ENTITIES, s.keys[Role.WRITER], owner)).status == 201
    path = f"{ENTITIES}/{owner['id']}?join=flat&joinLevel=1"
    hidden = await s.call("GET", path, s.keys[Role.READER])
    assert hidden.status == 200, await hidden.text()
    assert city.device not in {e["id"] for e in await hidden.json()}
    assert await city.audit() == []
    shown = await s.call("GET", path, city.personal_reader)
    assert city.device in {e["id"] for e in await shown.json()}
    (row,) = await city.audit()
    assert row["entityIds"] == [city.device]
