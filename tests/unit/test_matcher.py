"""Which changes a subscription is notified of (clause 5.8, notificationTrigger) and what it receives."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.jsonld.context import core_term_map
from broker.model.entity import Entity
from broker.model.parse import parse_entity
from broker.model.render import Form
from broker.notify.matcher import Change, concerns, match, render_for, triggers_of
from broker.notify.model import Endpoint, EntitySelector, Subscription
from broker.query.geo import parse_geo_query
from broker.query.qlang import parse_q
from broker.query.scope import parse_scope_q
from broker.query.types import parse_type_expr

TM = core_term_map()
NOW = datetime.now(UTC)


def entity(**attrs: Any) -> Entity:
    body = {"id": "urn:ngsi-ld:FloodMonitoring:g1", "type": "FloodMonitoring", **attrs}
    return parse_entity(body, TM)


def iri(name: str) -> str:
    return TM.expand(name)


def subscription(**fields: Any) -> Subscription:
    return Subscription(
        tenant="t",
        id="urn:ngsi-ld:Subscription:s1",
        endpoint=Endpoint("http://127.0.0.1:9/n"),
        context=None,
        tm=TM,
        **fields,
    )


LEVEL_1 = entity(currentLevel={"type": "Property", "value": 1.0, "unitCode": "MTR"})
LEVEL_2 = entity(currentLevel={"type": "Property", "value": 2.5, "unitCode": "MTR"})


def test_creating_an_entity_fires_entity_created_and_attribute_created() -> None:
    assert triggers_of(Change(None, LEVEL_1), None) == {"entityCreated", "attributeCreated"}


def test_changing_a_value_fires_attribute_updated_and_entity_updated() -> None:
    assert triggers_of(Change(LEVEL_1, LEVEL_2), None) == {"attributeUpdated", "entityUpdated"}


def test_rewriting_the_same_value_fires_nothing() -> None:
    again = entity(currentLevel={"type": "Property", "value": 1.0, "unitCode": "MTR"})
    again.attrs[iri("currentLevel")][0]["modifiedAt"] = "2030-01-01T00:00:00Z"
    assert triggers_of(Change(LEVEL_1, again), None) == set()


def test_removing_an_attribute_fires_attribute_deleted() -> None:
    bare = entity(other=1)
    assert "attributeDeleted" in triggers_of(Change(LEVEL_1, bare), None)


def test_deleting_the_entity_fires_entity_deleted_and_attribute_deleted_for_its_attributes() -> None:
    """Issue 13 item 1 (ETSI test suite 046_22_12): deleting the entity deletes its attributes."""
    assert triggers_of(Change(LEVEL_1, None), None) == {"entityDeleted", "attributeDeleted"}
    assert triggers_of(Change(LEVEL_1, None), frozenset({iri("other")})) == {"entityDeleted"}


def test_watched_attributes_ignore_changes_elsewhere() -> None:
    other = entity(currentLevel={"type": "Property", "value": 1.0, "unitCode": "MTR"}, status="rising")
    assert triggers_of(Change(LEVEL_1, other), frozenset({iri("currentLevel")})) == set()
    assert triggers_of(Change(LEVEL_1, other), frozenset({iri("status")})) == {
        "attributeCreated",
        "entityUpdated",
    }


def test_default_triggers_skip_entity_deletion() -> None:
    assert not concerns(subscription(), Change(LEVEL_1, None), NOW)
    assert concerns(subscription(triggers=frozenset({"entityDeleted"})), Change(LEVEL_1, None), NOW)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (EntitySelector(types=parse_type_expr("FloodMonitoring", TM)), True),
        (EntitySelector(types=parse_type_expr("Vehicle", TM)), False),
        (EntitySelector(ids=frozenset({"urn:ngsi-ld:FloodMonitoring:g1"})), True),
        (EntitySelector(ids=frozenset({"urn:ngsi-ld:FloodMonitoring:g2"})), False),
        (EntitySelector(id_pattern=re.compile("g[0-9]$")), True),
        (EntitySelector(id_pattern=re.compile("^urn:x")), False),
    ],
)
def test_entity_selectors(selector: EntitySelector, expected: bool) -> None:
    assert concerns(subscription(entities=(selector,)), Change(LEVEL_1, LEVEL_2), NOW) is expected


def test_q_is_evaluated_on_the_new_state() -> None:
    danger = subscription(q=parse_q("currentLevel>2.0"))
    assert concerns(danger, Change(LEVEL_1, LEVEL_2), NOW)
    assert not concerns(danger, Change(LEVEL_2, LEVEL_1), NOW)


def test_geo_and_scope_filters() -> None:
    placed = entity(
        currentLevel=1.0,
        location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.05, 34.34]}},
        scope="/Kagawa/Takamatsu",
    )
    near = parse_geo_query("near;maxDistance==1000", "Point", "[134.05,34.341]", None)
    far = parse_geo_query("near;maxDistance==10", "Point", "[135.0,35.0]", None)
    assert concerns(subscription(geo=near), Change(None, placed), NOW)
    assert not concerns(subscription(geo=far), Change(None, placed), NOW)
    assert concerns(subscription(scope=parse_scope_q("/Kagawa/#")), Change(None, placed), NOW)
    assert not concerns(subscription(scope=parse_scope_q("/Osaka")), Change(None, placed), NOW)


def test_inactive_expired_and_periodic_subscriptions_are_not_matched_on_change() -> None:
    change = Change(LEVEL_1, LEVEL_2)
    assert not concerns(subscription(active=False), change, NOW)
    assert not concerns(subscription(expires_at=NOW - timedelta(seconds=1)), change, NOW)
    assert concerns(subscription(expires_at=NOW + timedelta(hours=1)), change, NOW)
    assert not concerns(subscription(time_interval=60.0), change, NOW)


def test_notification_data_follows_attributes_and_format() -> None:
    sub = subscription(attributes=frozenset({iri("currentLevel")}), form=Form.SIMPLIFIED)
    both = entity(currentLevel=2.5, status="rising")
    assert render_for(sub, Change(None, both)) == {
        "id": "urn:ngsi-ld:FloodMonitoring:g1",
        "type": "FloodMonitoring",
        "currentLevel": 2.5,
    }


def test_show_changes_adds_the_previous_value() -> None:
    data = render_for(subscription(show_changes=True), Change(LEVEL_1, LEVEL_2))
    assert data["currentLevel"]["value"] == 2.5
    assert data["currentLevel"]["previousValue"] == 1.0


def test_a_deleted_entity_is_notified_with_deleted_at() -> None:
    data = render_for(subscription(triggers=frozenset({"entityDeleted"})), Change(LEVEL_1, None))
    assert data["id"] == LEVEL_1.id
    assert data["deletedAt"].endswith("Z")


def test_match_keeps_change_order_and_gives_each_row_its_own_notification_id() -> None:
    rows = match([subscription()], [Change(None, LEVEL_1), Change(LEVEL_1, LEVEL_2)])
    assert [r.data["currentLevel"]["value"] for r in rows] == [1.0, 2.5]
    assert len({r.notification_id for r in rows}) == 2


# --- issue 13 item 8: what a notification carries (clauses 5.2.14, 5.8.6) -------------------------

LABEL_EN = entity(
    label={"type": "LanguageProperty", "languageMap": {"en": "Kasuga river"}},
    meta={"type": "JsonProperty", "json": {"gauge": 1}},
    kind={"type": "VocabProperty", "vocab": "River"},
    tags={"type": "ListProperty", "valueList": [1, 2]},
)
LABEL_JA = entity(
    label={"type": "LanguageProperty", "languageMap": {"ja": "春日川"}},
    meta={"type": "JsonProperty", "json": {"gauge": 2}},
    kind={"type": "VocabProperty", "vocab": "Lake"},
    tags={"type": "ListProperty", "valueList": [3]},
)


def test_show_changes_gives_the_previous_member_of_every_attribute_type() -> None:
    """Clause 5.2.14 showChanges: previousLanguageMap, previousJson, previousVocab (compacted as vocab
    is), previousValueList."""
    data = render_for(subscription(show_changes=True), Change(LABEL_EN, LABEL_JA))
    assert data["label"] == {
        "type": "LanguageProperty",
        "languageMap": {"ja": "春日川"},
        "previousLanguageMap": {"en": "Kasuga river"},
    }
    assert data["meta"]["previousJson"] == {"gauge": 1}
    assert data["kind"] == {"type": "VocabProperty", "vocab": "Lake", "previousVocab": "River"}
    assert data["tags"]["previousValueList"] == [1, 2]


def test_show_changes_leaves_unchanged_attributes_without_a_previous_member() -> None:
    data = render_for(subscription(show_changes=True), Change(LABEL_EN, LABEL_EN.copy()))
    assert "previousLanguageMap" not in data["label"]
    assert "previousVocab" not in data["kind"]


def test_sys_attrs_in_key_values_gives_the_entity_its_timestamps() -> None:
    """Clause 5.2.14 sysAttrs, whatever the format (ETSI test suite 046_17)."""
    after = LEVEL_2.copy()
    after.created_at, after.modified_at = "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"
    data = render_for(subscription(sys_attrs=True, form=Form.SIMPLIFIED), Change(LEVEL_1, after))
    assert data["createdAt"] == "2026-12-01T00:00:00Z"
    assert data["modifiedAt"] == "2026-12-02T00:00:00Z"
    assert "createdAt" not in render_for(subscription(form=Form.SIMPLIFIED), Change(LEVEL_1, after))


# --- pick, omit (clauses 5.2.14, 4.21) and datasetId (clause 5.2.12) ------------------------------

NAMED = entity(
    currentLevel=[
        {"type": "Property", "value": 1.0},
        {"type": "Property", "value": 1.1, "datasetId": "urn:ngsi-ld:Dataset:radar"},
    ],
    status={"type": "Property", "value": "ok"},
)


def test_pick_keeps_only_the_members_named() -> None:
    """ETSI test suite 046_42: pick id and one attribute, the type goes too."""
    data = render_for(subscription(pick=frozenset({"id", iri("status")})), Change(None, NAMED))
    assert data == {"id": NAMED.id, "status": {"type": "Property", "value": "ok"}}


def test_omit_drops_the_members_named() -> None:
    data = render_for(subscription(omit=frozenset({"type", iri("currentLevel")})), Change(None, NAMED))
    assert data == {"id": NAMED.id, "status": {"type": "Property", "value": "ok"}}


def test_dataset_id_keeps_only_those_instances_in_the_notification() -> None:
    """Clause 5.2.12 datasetId (ETSI test suite 046_19)."""
    sub = subscription(dataset_ids=frozenset({"urn:ngsi-ld:Dataset:radar"}))
    data = render_for(sub, Change(None, NAMED))
    assert data["currentLevel"] == {
        "type": "Property",
        "value": 1.1,
        "datasetId": "urn:ngsi-ld:Dataset:radar",
    }
    assert "status" not in data
    default = render_for(subscription(dataset_ids=frozenset({"@none"})), Change(None, NAMED))
    assert default["currentLevel"]["value"] == 1.0


def test_dataset_id_fires_only_on_changes_to_those_instances() -> None:
    sub = subscription(dataset_ids=frozenset({"urn:ngsi-ld:Dataset:radar"}))
    default_changed = NAMED.copy()
    default_changed.attrs[iri("currentLevel")][0]["value"] = 2.0
    assert not concerns(sub, Change(NAMED, default_changed), NOW)
    radar_changed = NAMED.copy()
    radar_changed.attrs[iri("currentLevel")][1]["value"] = 2.0
    assert concerns(sub, Change(NAMED, radar_changed), NOW)


# --- issue 13 item 1: deletion notifications (clauses 5.2.1, 5.2.12, 5.8.6) ------------------------

DELETED = frozenset({"attributeDeleted"})
WITH_STATUS = entity(
    currentLevel={"type": "Property", "value": 1.0},
    status={"type": "Property", "value": "ok"},
)
WITH_STATUS.attrs[iri("status")][0]["createdAt"] = "2026-12-01T00:00:00Z"
WITHOUT_STATUS = entity(currentLevel={"type": "Property", "value": 1.0})


def test_removing_an_attribute_fires_attribute_deleted_and_it_is_notified_as_ngsi_ld_null() -> None:
    """ETSI test suite 046_22_01/02: the entity, and the attribute with value urn:ngsi-ld:null."""
    change = Change(WITH_STATUS, WITHOUT_STATUS)
    assert "attributeDeleted" in triggers_of(change, frozenset({iri("status")}))
    data = render_for(subscription(triggers=DELETED), change, "2026-12-03T00:00:00Z")
    assert data["currentLevel"] == {"type": "Property", "value": 1.0}
    assert data["status"] == {"type": "Property", "value": "urn:ngsi-ld:null"}


@pytest.mark.parametrize("form", [Form.SIMPLIFIED, Form.CONCISE])
def test_a_removed_attribute_is_bare_ngsi_ld_null_in_key_values_and_concise(form: Form) -> None:
    data = render_for(subscription(triggers=DELETED, form=form), Change(WITH_STATUS, WITHOUT_STATUS))
    assert data["status"] == "urn:ngsi-ld:null"


@pytest.mark.parametrize("form", [Form.NORMALIZED, Form.CONCISE])
def test_a_removed_attribute_keeps_its_timestamps_and_gets_deleted_at_with_sys_attrs(form: Form) -> None:
    """ETSI test suite 046_22_11: deletedAt is a system attribute, shown with sysAttrs."""
    sub = subscription(triggers=DELETED, sys_attrs=True, form=form)
    status = render_for(sub, Change(WITH_STATUS, WITHOUT_STATUS), "2026-12-03T00:00:00Z")["status"]
    assert status["value"] == "urn:ngsi-ld:null"
    assert status["createdAt"] == "2026-12-01T00:00:00Z"
    assert status["deletedAt"] == "2026-12-03T00:00:00Z"


def test_removed_attributes_are_not_shown_to_subscriptions_without_attribute_deleted() -> None:
    data = render_for(subscription(), Change(WITH_STATUS, WITHOUT_STATUS))
    assert "status" not in data


def test_removing_one_dataset_id_instance_fires_attribute_deleted_and_notifies_that_instance() -> None:
    """ETSI test suite 046_22_07: the other instances as they are, the removed one as Null."""
    radar = {"type": "Property", "value": 1.1, "datasetId": "urn:ngsi-ld:Dataset:radar"}
    before = entity(currentLevel=[{"type": "Property", "value": 1.0}, radar])
    after = entity(currentLevel={"type": "Property", "value": 1.0})
    assert triggers_of(Change(before, after), None) == {"attributeDeleted", "entityUpdated"}
    assert triggers_of(Change(after, before), None) == {"attributeCreated", "entityUpdated"}
    data = render_for(subscription(triggers=DELETED), Change(before, after), "2026-12-03T00:00:00Z")
    assert data["currentLevel"] == [
        {"type": "Property", "value": 1.0},
        {"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ngsi-ld:Dataset:radar"},
    ]


def test_a_deleted_entity_shows_the_watched_attributes_to_attribute_deleted_subscriptions() -> None:
    """ETSI test suite 046_22_12: id, type, deletedAt and the watched attributes as Null."""
    sub = subscription(triggers=DELETED, watched=frozenset({iri("status")}))
    assert concerns(sub, Change(WITH_STATUS, None), NOW)
    data = render_for(sub, Change(WITH_STATUS, None), "2026-12-03T00:00:00Z")
    assert data == {
        "id": WITH_STATUS.id,
        "type": "FloodMonitoring",
        "deletedAt": "2026-12-03T00:00:00Z",
        "status": {"type": "Property", "value": "urn:ngsi-ld:null"},
    }


def test_a_deleted_entity_carries_its_system_attributes_with_sys_attrs() -> None:
    """ETSI test suite 046_22_13: createdAt and modifiedAt next to deletedAt."""
    before = WITH_STATUS.copy()
    before.created_at, before.modified_at = "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"
    sub = subscription(triggers=frozenset({"entityDeleted"}), sys_attrs=True)
    data = render_for(sub, Change(before, None), "2026-12-03T00:00:00Z")
    assert data == {
        "id": before.id,
        "type": "FloodMonitoring",
        "createdAt": "2026-12-01T00:00:00Z",
        "modifiedAt": "2026-12-02T00:00:00Z",
        "deletedAt": "2026-12-03T00:00:00Z",
    }


def test_a_deleted_entity_with_show_changes_gives_each_attribute_its_previous_value() -> None:
    """ETSI test suite 046_37: entityDeleted with showChanges; a LanguageProperty's Null is a map."""
    before = entity(
        currentLevel={"type": "Property", "value": 1.0},
        label={"type": "LanguageProperty", "languageMap": {"en": "Kasuga"}},
        kind={"type": "VocabProperty", "vocab": "River"},
    )
    sub = subscription(triggers=frozenset({"entityDeleted"}), show_changes=True)
    data = render_for(sub, Change(before, None), "2026-12-03T00:00:00Z")
    assert data["currentLevel"]["value"] == "urn:ngsi-ld:null"
    assert data["currentLevel"]["previousValue"] == 1.0
    assert data["label"]["languageMap"] == {"@none": "urn:ngsi-ld:null"}
    assert data["label"]["previousLanguageMap"] == {"en": "Kasuga"}
    assert data["kind"]["previousVocab"] == "River"
