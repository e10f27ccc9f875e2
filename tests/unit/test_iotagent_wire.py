"""FIWARE IoT Agent JSON and UltraLight wire conventions: topics, HTTP southbound, times, commands."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from adapters import iotagent
from adapters.iotagent import ATTRS, CMDEXE, Route
from adapters.message import IOTA_JSON, IOTA_UL, Rejected
from tests.conftest import fixture_json

NOW = datetime(2025, 10, 3, 6, 42, tzinfo=UTC)
BLE = fixture_json("uplinks/ble_detection_mqtt.json")


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("/json/key1/dev1/attrs", Route(ATTRS, IOTA_JSON, "key1", "dev1", None)),
        ("/json/key1/dev1/attrs/t", Route(ATTRS, IOTA_JSON, "key1", "dev1", "t")),
        ("/json/key1/dev1/cmdexe", Route(CMDEXE, IOTA_JSON, "key1", "dev1", None)),
        ("/ul/key1/dev1/attrs", Route(ATTRS, IOTA_UL, "key1", "dev1", None)),
        ("/ul/key1/dev1/attrs/h", Route(ATTRS, IOTA_UL, "key1", "dev1", "h")),
        ("/ul/key1/dev1/cmdexe", Route(CMDEXE, IOTA_UL, "key1", "dev1", None)),
        ("/key1/dev1/attrs", Route(ATTRS, None, "key1", "dev1", None)),
        ("/key1/dev1/attrs/t", Route(ATTRS, None, "key1", "dev1", "t")),
        ("/key1/dev1/cmdexe", Route(CMDEXE, None, "key1", "dev1", None)),
        # An apikey spelled 'json' on a legacy topic stays an apikey.
        ("/json/dev1/attrs/t", Route(ATTRS, None, "json", "dev1", "t")),
    ],
)
def test_each_iot_agent_topic_is_classified_and_matched_by_exactly_one_subscription(
    topic: str, route: Route
) -> None:
    assert iotagent.classify(topic) == route
    matching = [sub for sub in iotagent.TOPICS if topic_matches_sub(sub, topic)]
    assert len(matching) == 1, matching


@pytest.mark.parametrize(
    "topic",
    [
        "json/key1/dev1/attrs",
        "/json/key1/dev1/cmd",
        "/key1//attrs",
        "//dev1/attrs",
        "/key1/dev1",
        "/a/b/c/d/e/f",
    ],
)
def test_other_topics_are_rejected(topic: str) -> None:
    with pytest.raises(Rejected, match="is not an IoT Agent topic"):
        iotagent.classify(topic)


def test_the_ble_multimeasure_sample_gives_one_measure_per_sighting() -> None:
    message = iotagent.parse_mqtt(BLE["_mqtt_topic"], orjson.dumps(BLE["message"]), NOW)
    assert message.family == IOTA_JSON
    assert (message.apikey, message.device_id, message.origin) == (
        "kakogawa-mimamori",
        "det-cam-0412",
        BLE["_mqtt_topic"],
    )
    assert message.measures == BLE["message"]
    assert message.received_at == NOW
    assert message.observed_at is None
    assert message.frame is None


def test_time_instants_become_utc_and_the_latest_is_the_message_time() -> None:
    body = orjson.dumps(
        [{"t": 1, "TimeInstant": "2025-09-01T10:00:00+09:00"}, {"t": 2, "TimeInstant": 1756688460}]
    )
    message = iotagent.parse_mqtt("/json/k/d/attrs", body, NOW)
    assert message.measures == [
        {"t": 1, "TimeInstant": "2025-09-01T01:00:00Z"},
        {"t": 2, "TimeInstant": "2025-09-01T01:01:00Z"},
    ]
    assert message.observed_at == datetime(2025, 9, 1, 1, 1, tzinfo=UTC)


def test_an_ultralight_group_timestamp_is_a_time_instant() -> None:
    message = iotagent.parse_mqtt("/ul/k/gauge-1/attrs", b"2025-09-01T10:00:00+09:00|l|-1.23#l|-1.2", NOW)
    assert message.family == IOTA_UL
    assert message.measures == [{"TimeInstant": "2025-09-01T01:00:00Z", "l": -1.23}, {"l": -1.2}]
    assert message.observed_at == datetime(2025, 9, 1, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("topic", "body", "family", "measures"),
    [
        ("/k/d/attrs", b'{"t": 15}', IOTA_JSON, [{"t": 15}]),
        ("/k/d/attrs", b' [{"t": 15}]', IOTA_JSON, [{"t": 15}]),
        ("/k/d/attrs", b"t|15", IOTA_UL, [{"t": 15}]),
        ("/json/k/d/attrs/t", b"15.5", IOTA_JSON, [{"t": 15.5}]),
        ("/json/k/d/attrs/s", b"on", IOTA_JSON, [{"s": "on"}]),
        ("/json/k/d/attrs/p", b'{"x": 1}', IOTA_JSON, [{"p": {"x": 1}}]),
        ("/ul/k/d/attrs/t", b"15\n", IOTA_UL, [{"t": 15}]),
        ("/k/d/attrs/s", b"on", IOTA_UL, [{"s": "on"}]),
    ],
)
def test_legacy_and_single_attribute_topics_read_their_payload(
    topic: str, body: bytes, family: str, measures: list[dict[str, Any]]
) -> None:
    message = iotagent.parse_mqtt(topic, body, NOW)
    assert (message.family, message.measures) == (family, measures)


def test_command_results_become_status_and_info_measures() -> None:
    json_reply = iotagent.parse_mqtt("/json/k/gauge-1/cmdexe", b'{"mode": "5min"}', NOW)
    assert json_reply.measures == [{"mode_status": "OK", "mode_info": "5min"}]
    ul_reply = iotagent.parse_mqtt("/ul/k/gauge-1/cmdexe", b"gauge-1@mode|5min", NOW)
    assert (ul_reply.family, ul_reply.measures) == (IOTA_UL, [{"mode_status": "OK", "mode_info": "5min"}])


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        ("/json/k/d/attrs", b'{"t": 1', "IoT Agent JSON payload is not JSON"),
        ("/json/k/d/attrs", b"15", "IoT Agent JSON payload is a number"),
        ("/json/k/d/attrs", b"[]", "IoT Agent JSON payload is an empty array"),
        ("/json/k/d/attrs", b'[{"t": 1}, null]', "item 1 of the array is null"),
        ("/json/k/d/attrs", b'{"t": 1, "TimeInstant": "yesterday"}', "TimeInstant 'yesterday' is not"),
        ("/json/k/d/attrs", b'{"TimeInstant": true}', "TimeInstant True is not a time"),
        ("/ul/k/d/attrs", b"t|\xff", "not UTF-8 text"),
        ("/ul/k/d/attrs", b"t|15|h", "odd number of fields"),
        ("/ul/k/d/cmdexe", b"other@mode|x", "names device 'other', but came for device 'd'"),
        ("/ul/k/d/cmdexe", b"mode|x", "is not <device>@<command>|<result>"),
        ("/json/k/d/cmdexe", b'["x"]', "command result is not an object"),
        ("/json/k/d/cmdexe", b"{", "not JSON"),
    ],
)
def test_broken_mqtt_payloads_are_rejected_naming_the_problem(topic: str, body: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        iotagent.parse_mqtt(topic, body, NOW)
    assert reason in caught.value.reason


def test_http_json_measures_take_tenant_path_and_the_t_parameter() -> None:
    headers = {"Fiware-Service": "kakogawa", "Fiware-ServicePath": "/mimamori"}
    origin = "/iot/json?k=key1&i=det-1&t=2025-10-03T15:41:12%2B09:00"
    message = iotagent.parse_http(origin, orjson.dumps(BLE["message"]), NOW, headers)
    assert (message.family, message.apikey, message.device_id) == (IOTA_JSON, "key1", "det-1")
    assert (message.tenant, message.service_path, message.origin) == ("kakogawa", "/mimamori", origin)
    assert message.observed_at == datetime(2025, 10, 3, 6, 41, 12, tzinfo=UTC)
    assert message.measures == BLE["message"]


def test_http_ultralight_measures_and_command_results() -> None:
    measures = iotagent.parse_http("/iot/d?k=key1&i=gauge-1&t=1756688400", b"l|-1.23|b|3.61\n", NOW, {})
    assert (measures.family, measures.measures) == (IOTA_UL, [{"l": -1.23, "b": 3.61}])
    assert measures.observed_at == datetime(2025, 9, 1, 1, 0, tzinfo=UTC)
    assert (measures.tenant, measures.service_path) == (None, None)
    reply = iotagent.parse_http("/iot/d?k=key1&i=gauge-1", b"gauge-1@mode|5min", NOW, {})
    assert reply.measures == [{"mode_status": "OK", "mode_info": "5min"}]
    json_reply = iotagent.parse_http("/iot/json/commands?k=key1&i=gauge-1", b'{"mode": 300}', NOW, {})
    assert json_reply.measures == [{"mode_status": "OK", "mode_info": 300}]


@pytest.mark.parametrize(
    ("origin", "body", "reason"),
    [
        ("/iot/json?i=d", b'{"t": 1}', "query parameter k (apikey) is missing"),
        ("/iot/json?k=key1&i=", b'{"t": 1}', "query parameter i (device id) is missing"),
        ("/iot/json?k=key1&i=d&t=soon", b'{"t": 1}', "query parameter t 'soon' is not"),
        ("/iot/json?k=key1&i=d", b'{"t": 1', "not JSON"),
        ("/iot/d?k=key1&i=d", b"", "UltraLight payload is empty"),
        ("/iot/xml?k=key1&i=d", b"<t>1</t>", "not an IoT Agent southbound path"),
    ],
)
def test_broken_http_requests_are_rejected_naming_the_field(origin: str, body: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        iotagent.parse_http(origin, body, NOW, {})
    assert reason in caught.value.reason


def test_commands_go_down_in_each_agents_format() -> None:
    assert iotagent.cmd_topic(IOTA_JSON, "key1", "gauge-1") == "/key1/gauge-1/cmd"
    assert iotagent.cmd_topic(IOTA_JSON, "key1", "gauge-1", prefixed=True) == "/json/key1/gauge-1/cmd"
    assert iotagent.cmd_topic(IOTA_UL, "key1", "gauge-1", prefixed=True) == "/ul/key1/gauge-1/cmd"
    assert orjson.loads(iotagent.cmd_payload(IOTA_JSON, "gauge-1", "mode", 300)) == {"mode": 300}
    assert iotagent.cmd_payload(IOTA_UL, "gauge-1", "mode", 300) == b"gauge-1@mode|300"


segments = st.sampled_from(["", "json", "ul", "k", "d", "attrs", "cmdexe", "t", "+"])


@given(st.lists(segments, max_size=7).map("/".join), st.binary(max_size=40))
def test_any_topic_and_payload_parse_or_are_rejected_never_anything_else(topic: str, body: bytes) -> None:
    outcome: Any
    try:
        outcome = iotagent.parse_mqtt(topic, body, NOW)
    except Rejected as rejected:
        outcome = rejected
    if not isinstance(outcome, Rejected):
        assert outcome.measures
        assert all(isinstance(measure, dict) for measure in outcome.measures)


def test_parse_tells_an_http_request_from_an_mqtt_topic_by_its_origin() -> None:
    by_http = iotagent.parse("/iot/d?k=key1&i=gauge-1", b"l|-1.23", NOW, {"fiware-service": "takamatsu"})
    assert (by_http.origin, by_http.apikey, by_http.device_id, by_http.tenant) == (
        "/iot/d?k=key1&i=gauge-1",
        "key1",
        "gauge-1",
        "takamatsu",
    )
    # A legacy topic whose apikey happens to be 'iot' is still a topic.
    by_mqtt = iotagent.parse("/iot/d/attrs", b"l|-1.23", NOW, {})
    assert (by_mqtt.apikey, by_mqtt.device_id, by_mqtt.measures) == ("iot", "d", [{"l": -1.23}])


def test_null_coordinates_pass_through_for_the_model_to_judge() -> None:
    body = b'{"location": {"type": "Point", "coordinates": [null, null]}, "speed": 0}'
    message = iotagent.parse_mqtt("/json/k/plow-1/attrs", body, NOW)
    assert message.measures == [{"location": {"type": "Point", "coordinates": [None, None]}, "speed": 0}]


def test_a_rejection_after_the_device_is_known_names_it_for_the_dead_letter() -> None:
    with pytest.raises(Rejected) as caught:
        iotagent.parse_mqtt("/json/k/gauge-1/attrs", b"{", NOW)
    assert caught.value.device == "gauge-1"
    with pytest.raises(Rejected) as caught:
        iotagent.parse_http("/iot/d?k=k&i=gauge-2", b"t|1|h", NOW, {})
    assert caught.value.device == "gauge-2"
    with pytest.raises(Rejected) as caught:
        iotagent.parse_mqtt("/json/k/gauge-1/other", b"{}", NOW)
    assert caught.value.device is None
