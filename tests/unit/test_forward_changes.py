"""What a change becomes in the forwarding outbox, and the adapter-mode settings."""

from __future__ import annotations

import pytest

from broker.config import ConfigError, load
from broker.forward.changes import change_of
from broker.jsonld.context import core_term_map
from broker.model.entity import LOCATION, Entity, Instance
from broker.store.forwarding import DELETE, UPSERT

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
LEVEL = VOCAB + "currentLevel"
SDM_NAME = "https://smartdatamodels.org/name"
TM = core_term_map()


def gauge(level: float, at: str, **more: list[Instance]) -> Entity:
    attrs: dict[str, list[Instance]] = {
        LEVEL: [{"type": "Property", "value": level, "observedAt": at, "createdAt": at, "modifiedAt": at}],
        LOCATION: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.06, 34.33]}}],
        SDM_NAME: [{"type": "Property", "value": "Kasuga"}],
        **more,
    }
    return Entity(id="urn:ngsi-ld:FloodMonitoring:k1", types=[VOCAB + "FloodMonitoring"], attrs=attrs)


def test_a_new_entity_is_forwarded_whole_without_system_members_and_with_core_names_compacted() -> None:
    change = change_of(None, gauge(0.7, "2026-12-01T00:00:00Z"), TM)
    assert change is not None
    assert change.op == UPSERT
    assert change.data == {
        "id": "urn:ngsi-ld:FloodMonitoring:k1",
        "type": "FloodMonitoring",
        # The core @context's default vocabulary makes these short names the target expands back.
        "currentLevel": {"type": "Property", "value": 0.7, "observedAt": "2026-12-01T00:00:00Z"},
        # Any other: the full IRI, which the target reads without any @context of ours.
        SDM_NAME: {"type": "Property", "value": "Kasuga"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [134.06, 34.33]}},
    }


def test_an_update_forwards_only_the_attributes_it_changed() -> None:
    before = gauge(0.7, "2026-12-01T00:00:00Z")
    change = change_of(before, gauge(0.9, "2026-12-01T00:10:00Z"), TM)
    assert change is not None
    assert set(change.data) == {"id", "type", "currentLevel"}
    assert change.data["currentLevel"]["value"] == 0.9


def test_a_change_that_changes_nothing_is_not_forwarded() -> None:
    entity = gauge(0.7, "2026-12-01T00:00:00Z")
    assert change_of(entity, entity.copy(), TM) is None
    assert change_of(None, None, TM) is None


def test_a_deleted_entity_is_forwarded_as_a_deletion() -> None:
    change = change_of(gauge(0.7, "2026-12-01T00:00:00Z"), None, TM)
    assert change is not None
    assert (change.op, change.data) == (DELETE, {"id": "urn:ngsi-ld:FloodMonitoring:k1"})


def test_several_instances_of_an_attribute_go_together() -> None:
    two = [
        {"type": "Property", "value": 1, "datasetId": "urn:a"},
        {"type": "Property", "value": 2, "datasetId": "urn:b"},
    ]
    change = change_of(None, gauge(0.7, "2026-12-01T00:00:00Z", **{VOCAB + "n": two}), TM)
    assert change is not None
    assert change.data["n"] == two


def test_adapter_mode_settings_parse_and_refuse_what_they_cannot_use() -> None:
    settings = load(
        {
            "NGSI_FORWARD_URL": "http://orion.lan:1026/",
            "NGSI_FORWARD_SCOPE": "ALL",
            "NGSI_FORWARD_TENANT_MAP": "takamatsu=city_takamatsu, ayagawa=,=shared",
        }
    )
    assert settings.forward_url == "http://orion.lan:1026"
    assert settings.forward_scope == "all"
    assert settings.forward_tenant_map == (("takamatsu", "city_takamatsu"), ("ayagawa", ""), ("", "shared"))
    assert load({}).forward_url == ""  # off by default
    for env, value in [
        ("NGSI_FORWARD_URL", "ftp://orion"),
        ("NGSI_FORWARD_URL", "http://orion:1026/?x=1"),
        ("NGSI_FORWARD_SCOPE", "some"),
        ("NGSI_FORWARD_TENANT_MAP", "takamatsu"),
        ("NGSI_FORWARD_TENANT_MAP", "bad tenant=x"),
    ]:
        with pytest.raises(ConfigError, match=env):
            load({env: value})


def test_the_forwarding_token_is_never_in_the_settings_repr() -> None:
    settings = load({"NGSI_FORWARD_TOKEN": "s3cret-token"})
    assert settings.forward_token == "s3cret-token"
    assert "s3cret-token" not in repr(settings)
