"""Subscription bodies (clauses 5.2.12-5.2.15): what compiles, into what, and every rule that refuses one."""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.errors import BadRequestData, NgsiLdError, NotImplementedYet, TooComplexQuery
from broker.jsonld.context import TermMap, compile_contexts, core_document, core_term_map
from broker.model.entity import LOCATION
from broker.model.render import Form
from broker.notify.body import align_names, merge, recompact, with_defaults
from broker.notify.model import DEFAULT_TRIGGERS, TRIGGERS, Endpoint, Subscription
from broker.notify.parse import compile_subscription
from broker.query.geo import Georel
from broker.query.types import AllOf, AnyOf, TypeName

EX = "https://example.org/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
SUB_ID = "urn:ngsi-ld:Subscription:mySubscription"
CONTEXT_URL = "https://example.org/context.jsonld"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def tm() -> TermMap:
    return compile_contexts([{"ex": EX, "speed": EX + "speed", "Vehicle": EX + "Vehicle"}], core_document())


def spec_example() -> dict[str, Any]:
    """The example of clause 5.2.12 / 6.10 (with coordinates inside WGS 84)."""
    return {
        "id": SUB_ID,
        "type": "Subscription",
        "entities": [{"type": "Vehicle"}],
        "watchedAttributes": ["speed"],
        "q": "speed>50",
        "geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [-1, 50]},
        "notification": {
            "attributes": ["speed"],
            "format": "keyValues",
            "endpoint": {"uri": "http://my.endpoint.org/notify", "accept": "application/json"},
        },
    }


def minimal(**members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Vehicle"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
    }
    body.update(members)
    return body


def compile_body(body: Any, tm: TermMap, **kwargs: Any) -> Subscription:
    return compile_subscription("t", SUB_ID, body, tm, CONTEXT_URL, **kwargs)


def with_endpoint(**members: Any) -> dict[str, Any]:
    return minimal(notification={"endpoint": {"uri": "http://127.0.0.1:9/notify", **members}})


# --- what compiles -------------------------------------------------------------------------------


def test_the_spec_example_compiles_with_every_name_expanded(tm: TermMap) -> None:
    sub = compile_body(spec_example(), tm)
    assert (sub.tenant, sub.id, sub.context, sub.tm) == ("t", SUB_ID, CONTEXT_URL, tm)
    assert sub.entities[0].types == TypeName(EX + "Vehicle")
    assert sub.watched == frozenset({EX + "speed"})
    assert sub.attributes == frozenset({EX + "speed"})
    assert sub.q is not None
    assert sub.geo is not None
    assert sub.geo.georel is Georel.NEAR
    assert sub.geo.max_distance == 2000
    assert sub.geoproperty == LOCATION
    assert sub.form is Form.SIMPLIFIED
    assert sub.endpoint == Endpoint("http://my.endpoint.org/notify", "application/json")


def test_a_minimal_subscription_takes_the_defaults_of_the_clause(tm: TermMap) -> None:
    sub = compile_body(minimal(), tm)
    assert sub.triggers == DEFAULT_TRIGGERS
    assert sub.watched is None
    assert sub.attributes is None
    assert sub.active is True
    assert sub.expires_at is None
    assert sub.form is Form.NORMALIZED
    assert not sub.sys_attrs
    assert not sub.show_changes
    assert sub.endpoint.accept == "application/json"
    assert sub.throttling is None
    assert sub.time_interval is None


def test_watched_attributes_alone_select_any_entity(tm: TermMap) -> None:
    body = minimal(watchedAttributes=["speed", "ex:heading"])
    del body["entities"]
    sub = compile_body(body, tm)
    assert sub.entities == ()
    assert sub.watched == frozenset({EX + "speed", EX + "heading"})


def test_an_entity_selector_takes_an_id_an_id_pattern_and_a_type_expression(tm: TermMap) -> None:
    sub = compile_body(
        minimal(
            entities=[
                {"id": "urn:ngsi-ld:Vehicle:A1", "type": "Vehicle"},
                {"idPattern": "^urn:ngsi-ld:Vehicle:B", "type": "(Vehicle;Bus)|Tram"},
            ]
        ),
        tm,
    )
    first, second = sub.entities
    assert first.ids == frozenset({"urn:ngsi-ld:Vehicle:A1"})
    assert first.id_pattern is None
    assert second.ids is None
    assert second.types == AnyOf(
        (AllOf((TypeName(EX + "Vehicle"), TypeName(DEFAULT + "Bus"))), TypeName(DEFAULT + "Tram"))
    )


def test_id_takes_precedence_over_id_pattern(tm: TermMap) -> None:
    sub = compile_body(
        minimal(entities=[{"id": "urn:ngsi-ld:V:1", "idPattern": "^x", "type": "Vehicle"}]), tm
    )
    assert sub.entities[0].id_pattern is None
    assert sub.entities[0].ids == frozenset({"urn:ngsi-ld:V:1"})


def test_id_pattern_compiles_to_a_python_pattern_matching_as_postgresql_does(tm: TermMap) -> None:
    sub = compile_body(
        minimal(entities=[{"idPattern": "^urn:ngsi-ld:Vehicle:plow-0$", "type": "Vehicle"}]), tm
    )
    pattern = sub.entities[0].id_pattern
    assert isinstance(pattern, re.Pattern)
    assert pattern.flags & re.DOTALL
    assert pattern.search("urn:ngsi-ld:Vehicle:plow-0")
    assert not pattern.search("urn:ngsi-ld:Vehicle:plow-0\n")
    assert not pattern.search("urn:ngsi-ld:vehicle:plow-0")


def test_an_id_pattern_starting_with_ignore_case_matches_any_case(tm: TermMap) -> None:
    sub = compile_body(minimal(entities=[{"idPattern": "(?i)^urn:ngsi-ld:vehicle:", "type": "Vehicle"}]), tm)
    pattern = sub.entities[0].id_pattern
    assert pattern is not None
    assert pattern.flags & re.IGNORECASE
    assert pattern.search("URN:NGSI-LD:Vehicle:x")


@pytest.mark.parametrize(
    "triggers", [["entityCreated"], ["attributeUpdated", "entityDeleted"], sorted(TRIGGERS)]
)
def test_notification_trigger_takes_any_subset_of_the_triggers(tm: TermMap, triggers: list[str]) -> None:
    assert compile_body(minimal(notificationTrigger=triggers), tm).triggers == frozenset(triggers)


def test_q_scope_q_and_lang_are_parsed(tm: TermMap) -> None:
    sub = compile_body(minimal(q='speed>50;status=="alert"', scopeQ="/Kagawa/Takamatsu/#", lang="ja"), tm)
    assert sub.q is not None
    assert sub.scope is not None
    assert sub.lang == "ja"


def test_geo_q_takes_coordinates_as_json_text_and_an_expanded_geoproperty(tm: TermMap) -> None:
    geo_q = {
        "georel": "within",
        "geometry": "Polygon",
        "coordinates": "[[[133.98,34.28],[134.12,34.28],[134.12,34.38],[133.98,34.28]]]",
        "geoproperty": "ex:area",
    }
    sub = compile_body(minimal(geoQ=geo_q), tm)
    assert sub.geo is not None
    assert sub.geo.georel is Georel.WITHIN
    assert sub.geo.geometry_type == "Polygon"
    assert sub.geoproperty == EX + "area"


def test_is_active_false_compiles_a_paused_subscription(tm: TermMap) -> None:
    assert compile_body(minimal(isActive=False), tm).active is False


def test_expires_at_is_parsed_as_an_instant(tm: TermMap) -> None:
    sub = compile_body(minimal(expiresAt="2099-01-01T09:00:00+09:00"), tm, now=NOW)
    assert sub.expires_at == datetime(2099, 1, 1, tzinfo=UTC)


def test_a_stored_subscription_that_has_expired_since_still_compiles(tm: TermMap) -> None:
    sub = compile_body(minimal(expiresAt="2020-01-01T00:00:00Z"), tm)
    assert sub.expired(NOW)


def test_throttling_zero_and_a_positive_time_interval_are_accepted(tm: TermMap) -> None:
    assert compile_body(minimal(throttling=0), tm).throttling == 0
    assert compile_body(minimal(throttling=2.5), tm).throttling == 2.5
    assert compile_body(minimal(timeInterval=60), tm).time_interval == 60


@pytest.mark.parametrize("member", ["throttling", "timeInterval"])
def test_a_duration_past_ten_years_is_refused_before_it_can_overflow_the_notifiers_times(
    tm: TermMap, member: str
) -> None:
    # 1e300 s once stopped every delivery of the process (timedelta and timestamp overflow).
    for huge in (1e300, 10 * 365.25 * 86400 + 1):
        with pytest.raises(BadRequestData, match=f"{member} must be at most"):
            compile_body(minimal(**{member: huge}), tm)


@pytest.mark.parametrize(
    ("name", "form"),
    [
        ("normalized", Form.NORMALIZED),
        ("concise", Form.CONCISE),
        ("keyValues", Form.SIMPLIFIED),
        ("simplified", Form.SIMPLIFIED),
    ],
)
def test_each_notification_format_maps_to_its_representation(tm: TermMap, name: str, form: Form) -> None:
    body = minimal(notification={"format": name, "endpoint": {"uri": "http://127.0.0.1:9/n"}})
    assert compile_body(body, tm).form is form


def test_sys_attrs_and_show_changes_are_taken(tm: TermMap) -> None:
    notification = {"sysAttrs": True, "showChanges": True, "endpoint": {"uri": "http://127.0.0.1:9/n"}}
    sub = compile_body(minimal(notification=notification), tm)
    assert sub.sys_attrs
    assert sub.show_changes


def test_an_mqtt_endpoint_takes_notifier_info_for_qos_and_version(tm: TermMap) -> None:
    notifier = [{"key": "MQTT-QoS", "value": "1"}, {"key": "MQTT-Version", "value": "mqtt5.0"}]
    body = minimal(
        notification={
            "endpoint": {
                "uri": "mqtts://user:secret@mqtt.example.org:8883/city/alerts",
                "accept": "application/ld+json",
                "notifierInfo": notifier,
            }
        }
    )
    endpoint = compile_body(body, tm).endpoint
    assert endpoint.uri == "mqtts://user:secret@mqtt.example.org:8883/city/alerts"
    assert endpoint.accept == "application/ld+json"
    assert endpoint.notifier_info == (("MQTT-QoS", "1"), ("MQTT-Version", "mqtt5.0"))


@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_every_mqtt_qos_of_clause_7_2_is_accepted(tm: TermMap, qos: str) -> None:
    info = [{"key": "MQTT-QoS", "value": qos}]
    body = minimal(notification={"endpoint": {"uri": "mqtt://127.0.0.1:1883/alerts", "notifierInfo": info}})
    assert compile_body(body, tm).endpoint.notifier_info == (("MQTT-QoS", qos),)


def test_receiver_info_pairs_are_kept_in_order(tm: TermMap) -> None:
    info = [{"key": "Authorization", "value": "Bearer x"}, {"key": "X-City", "value": "高松市"}]
    endpoint = compile_body(with_endpoint(receiverInfo=info, timeout=1000, cooldown=0), tm).endpoint
    assert endpoint.receiver_info == (("Authorization", "Bearer x"), ("X-City", "高松市"))


def test_jsonld_context_becomes_the_context_notifications_are_rendered_with(tm: TermMap) -> None:
    other = "https://example.org/notify-context.jsonld"
    assert compile_body(minimal(jsonldContext=other), tm).context == other


def test_read_only_members_a_client_echoes_back_are_ignored(tm: TermMap) -> None:
    body = minimal(status="active", createdAt="2026-01-01T00:00:00Z")
    body["notification"] = {**body["notification"], "timesSent": 3, "status": "ok", "lastNotification": "x"}
    assert compile_body(body, tm).id == SUB_ID


def test_subscription_name_and_description_are_accepted(tm: TermMap) -> None:
    assert compile_body(minimal(subscriptionName="gauges", description="flood watch"), tm).id == SUB_ID


def test_name_is_accepted_as_the_legacy_spelling_of_subscription_name(tm: TermMap) -> None:
    """Clause 5.2.12 subscriptionName; issue 13 item 15: ngsildclient sends ``name``."""
    assert compile_body(minimal(name="gauges"), tm).id == SUB_ID
    assert compile_body(minimal(name="gauges", subscriptionName="gauges"), tm).id == SUB_ID
    stored = with_defaults(minimal(name="gauges"))
    assert stored["subscriptionName"] == "gauges"
    assert stored["name"] == "gauges", "kept, so a client reading back its own spelling finds it"


@pytest.mark.parametrize("name", [1, "", None, "urn:ngsi-ld:null"])
def test_a_legacy_name_that_is_no_text_is_refused(tm: TermMap, name: Any) -> None:
    with pytest.raises(BadRequestData, match="name"):
        compile_body(minimal(name=name), tm)


def test_name_and_subscription_name_that_differ_are_refused(tm: TermMap) -> None:
    with pytest.raises(BadRequestData, match="former spelling of subscriptionName"):
        compile_body(minimal(name="a", subscriptionName="b"), tm)


def test_an_update_of_either_spelling_changes_both_where_both_are_kept() -> None:
    both = with_defaults(minimal(name="a"))
    assert merge(both, align_names({"subscriptionName": "b"}, both))["name"] == "b"
    assert merge(both, align_names({"name": "c"}, both))["subscriptionName"] == "c"
    removed = merge(both, align_names({"name": "urn:ngsi-ld:null"}, both))
    assert "name" not in removed
    assert "subscriptionName" not in removed
    spec_only = with_defaults(minimal(subscriptionName="a"))
    assert "name" not in merge(spec_only, align_names({"subscriptionName": "b"}, spec_only))


# --- what is refused -----------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting a dotted member path (notification.endpoint.uri) of the minimal body."""

    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = body
        for name in parents:
            target = target[name]
        target[last] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = body
        for name in parents:
            target = target[name]
        del target[last]

    return mutate


INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("type missing", _drop("type"), "type must be"),
    ("type not Subscription", _set("type", "Entity"), "type must be"),
    ("id not a URI", _set("id", "not a uri"), "id must be an absolute URI"),
    ("id differs", _set("id", "urn:ngsi-ld:Subscription:other"), "differs"),
    ("unknown member", _set("watchedAttribute", ["speed"]), "unknown member watchedAttribute"),
    ("name not a string", _set("subscriptionName", 3), "subscriptionName"),
    ("entities not an array", _set("entities", {"type": "Vehicle"}), "entities must be a non-empty array"),
    ("entities empty", _set("entities", []), "entities must be a non-empty array"),
    ("selector not an object", _set("entities", ["Vehicle"]), "entities[0] must be a JSON object"),
    ("selector without type", _set("entities", [{"id": "urn:ngsi-ld:V:1"}]), "entities[0].type is required"),
    ("selector type not text", _set("entities", [{"type": 7}]), "entities[0].type"),
    ("selector id not a URI", _set("entities", [{"id": "V1", "type": "V"}]), "entities[0].id"),
    ("selector type expression", _set("entities", [{"type": "(Vehicle"}]), "missing ')'"),
    (
        "selector unknown member",
        _set("entities", [{"type": "V", "idpattern": "x"}]),
        "unknown member idpattern",
    ),
    ("id pattern unsupported", _set("entities", [{"type": "V", "idPattern": "a\\bb"}]), "idPattern"),
    ("id pattern unbalanced", _set("entities", [{"type": "V", "idPattern": "(a"}]), "idPattern"),
    (
        "watched not an array",
        _set("watchedAttributes", "speed"),
        "watchedAttributes must be a non-empty array",
    ),
    ("watched empty", _set("watchedAttributes", []), "watchedAttributes must be a non-empty array"),
    ("watched bad name", _set("watchedAttributes", ["a b"]), "forbidden character"),
    ("no entities nor watched", _drop("entities"), "needs entities or watchedAttributes"),
    ("trigger unknown", _set("notificationTrigger", ["entityChanged"]), "entityChanged"),
    ("triggers empty", _set("notificationTrigger", []), "notificationTrigger must be a non-empty array"),
    ("q not text", _set("q", 5), "q must be a non-empty string"),
    ("q malformed", _set("q", "speed>>"), "q"),
    ("q null", _set("q", None), "q must not be null"),
    ("q NGSI-LD null", _set("q", "urn:ngsi-ld:null"), "q must not be null"),
    ("geoQ not an object", _set("geoQ", "near"), "geoQ must be a JSON object"),
    (
        "geoQ without georel",
        _set("geoQ", {"geometry": "Point", "coordinates": [1, 2]}),
        "geoQ.georel is required",
    ),
    (
        "geoQ without coordinates",
        _set("geoQ", {"georel": "within", "geometry": "Point"}),
        "geoQ.coordinates is required",
    ),
    (
        "geoQ bad georel",
        _set("geoQ", {"georel": "beside", "geometry": "Point", "coordinates": [1, 2]}),
        "geoQ: georel 'beside'",
    ),
    (
        "geoQ coordinates a number",
        _set("geoQ", {"georel": "within", "geometry": "Point", "coordinates": 5}),
        "geoQ.coordinates must be an array",
    ),
    (
        "geoQ coordinates out of range",
        _set("geoQ", {"georel": "near;maxDistance==5", "geometry": "Point", "coordinates": [-1, 100]}),
        "latitude",
    ),
    (
        "geoQ unknown member",
        _set("geoQ", {"georel": "within", "geometry": "Point", "coordinates": [1, 2], "geoRel": "x"}),
        "unknown member geoRel",
    ),
    ("scopeQ malformed", _set("scopeQ", "Kagawa//x"), "scope"),
    ("lang not text", _set("lang", ["ja"]), "lang must be a non-empty string"),
    ("isActive not boolean", _set("isActive", "false"), "isActive must be true or false"),
    ("expiresAt not a date-time", _set("expiresAt", "tomorrow"), "expiresAt"),
    ("throttling negative", _set("throttling", -1), "throttling must not be negative"),
    ("throttling text", _set("throttling", "5"), "throttling must be a number"),
    ("throttling boolean", _set("throttling", True), "throttling must be a number"),
    ("timeInterval zero", _set("timeInterval", 0), "timeInterval must be greater than 0"),
    ("timeInterval negative", _set("timeInterval", -10), "timeInterval must be greater than 0"),
    ("notification missing", _drop("notification"), "notification is required"),
    ("notification not an object", _set("notification", "http://x"), "notification must be a JSON object"),
    ("notification unknown member", _set("notification.formats", "concise"), "unknown member formats"),
    ("format unknown", _set("notification.format", "compact"), "notification.format 'compact'"),
    ("sysAttrs not boolean", _set("notification.sysAttrs", 1), "notification.sysAttrs must be true or false"),
    ("attributes empty", _set("notification.attributes", []), "notification.attributes must be a non-empty"),
    ("endpoint missing", _drop("notification.endpoint"), "notification.endpoint is required"),
    ("uri missing", _drop("notification.endpoint.uri"), "notification.endpoint.uri is required"),
    ("uri not a URI", _set("notification.endpoint.uri", "my endpoint"), "notification.endpoint.uri must be"),
    ("uri ftp", _set("notification.endpoint.uri", "ftp://example.org/n"), "http, https, mqtt or mqtts"),
    ("uri urn", _set("notification.endpoint.uri", "urn:ngsi-ld:Endpoint:1"), "http, https, mqtt or mqtts"),
    ("mqtt without topic", _set("notification.endpoint.uri", "mqtt://broker:1883"), "names no MQTT topic"),
    (
        "accept GeoJSON",
        _set("notification.endpoint.accept", "application/geo+json"),
        "notification.endpoint.accept",
    ),
    ("endpoint unknown member", _set("notification.endpoint.headers", {}), "unknown member headers"),
    ("timeout negative", _set("notification.endpoint.timeout", -5), "timeout must not be negative"),
    ("receiverInfo object", _set("notification.endpoint.receiverInfo", {"a": "b"}), "receiverInfo must be"),
    (
        "receiverInfo no key",
        _set("notification.endpoint.receiverInfo", [{"value": "b"}]),
        "receiverInfo[0].key",
    ),
    (
        "receiverInfo number value",
        _set("notification.endpoint.receiverInfo", [{"key": "a", "value": 1}]),
        "receiverInfo[0].value must be a string",
    ),
    (
        "receiverInfo key with a blank",
        _set("notification.endpoint.receiverInfo", [{"key": "X City", "value": "b"}]),
        "must be a token",
    ),
    (
        "receiverInfo value with a line break",
        _set("notification.endpoint.receiverInfo", [{"key": "X", "value": "a\r\nHost: evil"}]),
        "line breaks",
    ),
    (
        "receiverInfo key twice",
        _set("notification.endpoint.receiverInfo", [{"key": "X", "value": "a"}, {"key": "X", "value": "b"}]),
        "twice",
    ),
    (
        "MQTT key on an http endpoint",
        _set("notification.endpoint.notifierInfo", [{"key": "MQTT-QoS", "value": "1"}]),
        "mqtt and mqtts endpoints only",
    ),
    ("jsonldContext not a URI", _set("jsonldContext", "context"), "jsonldContext must be an absolute URI"),
    ("jsonldContext a URN", _set("jsonldContext", "urn:x:context"), "dereferenceable"),
]


@pytest.mark.parametrize(("case", "mutate", "detail"), INVALID, ids=[case for case, _, _ in INVALID])
def test_each_invalid_member_is_refused_with_a_precise_bad_request_data(
    tm: TermMap, case: str, mutate: Callable[[dict[str, Any]], None], detail: str
) -> None:
    body = minimal(id=SUB_ID)
    mutate(body)
    with pytest.raises(BadRequestData) as caught:
        compile_body(body, tm)
    assert detail in caught.value.detail, caught.value.detail


@pytest.mark.parametrize(
    ("qos", "version", "detail"),
    [
        ("3", "mqtt5.0", "MQTT-QoS must be 0, 1 or 2"),
        ("1", "mqtt4", "MQTT-Version must be mqtt3.1.1 or mqtt5.0"),
    ],
)
def test_mqtt_notifier_info_takes_only_the_known_qos_and_versions(
    tm: TermMap, qos: str, version: str, detail: str
) -> None:
    info = [{"key": "MQTT-QoS", "value": qos}, {"key": "MQTT-Version", "value": version}]
    body = minimal(notification={"endpoint": {"uri": "mqtt://127.0.0.1:1883/alerts", "notifierInfo": info}})
    with pytest.raises(BadRequestData, match=detail):
        compile_body(body, tm)


def test_a_body_that_is_not_an_object_is_refused(tm: TermMap) -> None:
    with pytest.raises(BadRequestData, match="JSON object"):
        compile_body([minimal()], tm)


def test_time_interval_cannot_be_combined_with_watched_attributes(tm: TermMap) -> None:
    with pytest.raises(BadRequestData, match="timeInterval cannot be combined with watchedAttributes"):
        compile_body(minimal(timeInterval=10, watchedAttributes=["speed"]), tm)


def test_time_interval_cannot_be_combined_with_throttling(tm: TermMap) -> None:
    with pytest.raises(BadRequestData, match="timeInterval cannot be combined with throttling"):
        compile_body(minimal(timeInterval=10, throttling=30), tm)


def test_show_changes_cannot_be_asked_with_key_values(tm: TermMap) -> None:
    notification = {"format": "keyValues", "showChanges": True, "endpoint": {"uri": "http://127.0.0.1:9/n"}}
    with pytest.raises(BadRequestData, match="showChanges"):
        compile_body(minimal(notification=notification), tm)


def test_expires_at_in_the_past_is_refused_when_creating(tm: TermMap) -> None:
    past = (NOW - timedelta(minutes=1)).isoformat()
    with pytest.raises(BadRequestData, match="not in the future"):
        compile_body(minimal(expiresAt=past), tm, now=NOW)


@pytest.mark.parametrize("member", ["csf", "temporalQ"])
def test_members_not_built_yet_answer_501_rather_than_being_ignored(tm: TermMap, member: str) -> None:
    with pytest.raises(NotImplementedYet, match=member):
        compile_body(minimal(**{member: "x"}), tm)


def test_a_q_beyond_the_limits_is_too_complex(tm: TermMap) -> None:
    with pytest.raises(TooComplexQuery):
        compile_body(minimal(q=";".join(["speed>1"] * 40)), tm)


ODD_VALUES: list[Any] = [None, 0, -1.5, True, "x", "", [], {}, [None], [{}], ["x"], {"a": None}, [[1]]]
MEMBER_PATHS = [
    "id", "type", "entities", "watchedAttributes", "notificationTrigger", "q", "geoQ", "scopeQ", "lang",
    "isActive", "expiresAt", "throttling", "timeInterval", "notification", "jsonldContext",
    "notification.attributes", "notification.format", "notification.sysAttrs", "notification.showChanges",
    "notification.endpoint", "notification.endpoint.uri", "notification.endpoint.accept",
    "notification.endpoint.receiverInfo", "notification.endpoint.notifierInfo",
    "geoQ.georel", "geoQ.geometry", "geoQ.coordinates", "geoQ.geoproperty",
]  # fmt: skip


@pytest.mark.parametrize("path", MEMBER_PATHS)
def test_any_odd_value_of_a_member_is_an_ngsi_ld_error_never_a_python_exception(
    tm: TermMap, path: str
) -> None:
    for value in ODD_VALUES:
        body = minimal(id=SUB_ID, geoQ={"georel": "within", "geometry": "Point", "coordinates": [1, 2]})
        _set(path, copy.deepcopy(value))(body)
        with contextlib.suppress(NgsiLdError):
            compile_body(body, tm, now=NOW)


# --- defaults, merge and moving between contexts -------------------------------------------------


def test_with_defaults_fills_the_defaults_and_drops_read_only_members() -> None:
    body = minimal(status="expired", createdAt="2026-01-01T00:00:00Z")
    body["notification"]["timesSent"] = 4
    stored = with_defaults(body)
    assert stored["isActive"] is True
    assert stored["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert stored["notification"]["format"] == "normalized"
    assert stored["notification"]["endpoint"]["accept"] == "application/json"
    assert "status" not in stored
    assert "createdAt" not in stored
    assert "timesSent" not in stored["notification"]
    assert "timesSent" in body["notification"], "the input is not changed"


def test_with_defaults_keeps_what_the_client_chose() -> None:
    body = minimal(isActive=False)
    body["notification"] = {
        "format": "concise",
        "endpoint": {"uri": "http://x.org/n", "accept": "application/ld+json"},
    }
    stored = with_defaults(body)
    assert stored["isActive"] is False
    assert stored["notification"] == body["notification"]


def test_merge_replaces_members_and_merges_notification_one_level_down() -> None:
    stored = with_defaults(minimal(q="speed>1", watchedAttributes=["speed"]))
    merged = merge(stored, {"q": "speed>2", "notification": {"format": "keyValues"}, "throttling": 5})
    assert merged["q"] == "speed>2"
    assert merged["throttling"] == 5
    assert merged["notification"]["format"] == "keyValues"
    assert merged["notification"]["endpoint"] == stored["notification"]["endpoint"]
    assert stored["q"] == "speed>1", "the stored body is not changed"


def test_merge_replaces_a_whole_endpoint_and_null_removes_a_member() -> None:
    stored = with_defaults(minimal(q="speed>1", expiresAt="2099-01-01T00:00:00Z"))
    merged = merge(
        stored,
        {
            "q": "urn:ngsi-ld:null",
            "expiresAt": None,
            "notification": {"endpoint": {"uri": "mqtt://b:1883/t"}},
        },
    )
    assert "q" not in merged
    assert "expiresAt" not in merged
    assert merged["notification"]["endpoint"] == {"uri": "mqtt://b:1883/t"}


def test_recompact_moves_every_name_to_the_target_context(tm: TermMap) -> None:
    core = core_term_map()
    body = minimal(
        entities=[{"type": "(Vehicle;Bus)|ex:Tram"}],
        watchedAttributes=["speed"],
        geoQ={"georel": "within", "geometry": "Point", "coordinates": [1, 2], "geoproperty": "ex:area"},
    )
    body["notification"]["attributes"] = ["speed", "heading"]
    moved = recompact(body, tm, core, strict_q=True)
    assert moved["entities"][0]["type"] == f"({EX}Vehicle;Bus)|{EX}Tram"
    assert moved["watchedAttributes"] == [EX + "speed"]
    assert moved["notification"]["attributes"] == [EX + "speed", "heading"]
    assert moved["geoQ"]["geoproperty"] == EX + "area"
    assert compile_body(moved, core).watched == compile_body(body, tm).watched
    assert recompact(moved, core, tm, strict_q=True)["watchedAttributes"] == ["speed"]


def test_recompact_refuses_a_q_whose_names_would_change_meaning(tm: TermMap) -> None:
    with pytest.raises(BadRequestData, match="q names 'speed'"):
        recompact(minimal(q="speed>1"), tm, core_term_map(), strict_q=True)
    assert recompact(minimal(q="heading>1"), tm, core_term_map(), strict_q=True)["q"] == "heading>1"
    assert recompact(minimal(q="speed>1"), tm, core_term_map(), strict_q=False)["q"] == "speed>1"


def test_recompact_between_the_same_term_map_returns_the_body_as_it_is(tm: TermMap) -> None:
    body = minimal()
    assert recompact(body, tm, tm, strict_q=True) is body


# --- pick, omit (clauses 5.2.14, 4.21) and datasetId (clause 5.2.12) ------------------------------


def test_pick_and_omit_take_entity_members_as_they_are_and_attributes_expanded(tm: TermMap) -> None:
    notification = {"endpoint": {"uri": "http://127.0.0.1:9/n"}, "pick": ["id", "speed"], "omit": ["type"]}
    sub = compile_body(minimal(notification=notification), tm)
    assert sub.pick == frozenset({"id", EX + "speed"})
    assert sub.omit == frozenset({"type"})
    assert compile_body(minimal(), tm).pick is None


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"pick": ["id"], "omit": ["id"]}, "name the same member"),  # ETSI test suite 028_08_01
        ({"pick": ["id"], "attributes": ["speed"]}, "pick cannot be combined"),  # 028_08_02
        ({"omit": ["speed"], "attributes": ["speed"]}, "omit cannot be combined"),  # 028_08_03
        ({"pick": []}, "non-empty array"),
        ({"pick": "id,speed"}, "non-empty array"),
        ({"omit": ["a{b}"]}, "forbidden character"),
    ],
)
def test_invalid_pick_and_omit_are_refused(tm: TermMap, members: dict[str, Any], message: str) -> None:
    notification = {"endpoint": {"uri": "http://127.0.0.1:9/n"}, **members}
    with pytest.raises(BadRequestData, match=message):
        compile_body(minimal(notification=notification), tm)


def test_dataset_id_takes_uris_and_none_for_the_default_instance(tm: TermMap) -> None:
    sub = compile_body(minimal(datasetId=["urn:ngsi-ld:Dataset:a", "@none"]), tm)
    assert sub.dataset_ids == frozenset({"urn:ngsi-ld:Dataset:a", "@none"})
    assert compile_body(minimal(), tm).dataset_ids is None


@pytest.mark.parametrize("value", [[], "urn:ngsi-ld:Dataset:a", ["not a uri"], [1]])
def test_an_invalid_dataset_id_is_refused(tm: TermMap, value: Any) -> None:
    with pytest.raises(BadRequestData, match="datasetId"):
        compile_body(minimal(datasetId=value), tm)


def test_recompact_moves_pick_and_omit_names_but_not_entity_members(tm: TermMap) -> None:
    body = minimal(
        notification={"endpoint": {"uri": "http://x/n"}, "pick": ["id", "speed"], "omit": ["type"]}
    )
    moved = recompact(body, tm, core_term_map(), strict_q=False)
    assert moved["notification"]["pick"] == ["id", EX + "speed"]
    assert moved["notification"]["omit"] == ["type"]


def test_a_percent_encoded_q_as_ngsildclient_sends_it_is_decoded(tm: TermMap) -> None:
    """Clause 5.2.12 q; ngsildclient 0.5.2 URL-encodes a subscription's q in the JSON body."""
    assert compile_body(minimal(q="speed%3E50"), tm).q == compile_body(minimal(q="speed>50"), tm).q


def test_a_q_that_parses_as_written_is_not_decoded(tm: TermMap) -> None:
    sub = compile_body(minimal(q='speed=="50%25"'), tm)
    assert sub.q == compile_body(minimal(q='speed=="50%25"'), tm).q
    assert "50%25" in repr(sub.q)


def test_a_q_wrong_either_way_names_the_q_as_written(tm: TermMap) -> None:
    with pytest.raises(BadRequestData, match="%3E%3E"):
        compile_body(minimal(q="speed%3E%3E1"), tm)
