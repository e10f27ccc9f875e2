"""The Things Stack v3 and ChirpStack v4 uplinks and downlinks, from the reference samples and broken copies."""

from __future__ import annotations

import base64
import copy
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import lorawan
from adapters.codecs import cayenne
from adapters.message import CHIRPSTACK, TTS, DeviceMessage, Rejected
from tests.conftest import fixture_json

NOW = datetime(2025, 9, 1, 1, 0, 5, tzinfo=UTC)
TTS_SAMPLE = fixture_json("uplinks/tts_v3_uplink_waterlevel.json")
CS_SAMPLE = fixture_json("uplinks/chirpstack_v4_uplink_snowplow.json")
TTS_TOPIC = TTS_SAMPLE["_mqtt_topic"]
CS_TOPIC = CS_SAMPLE["_mqtt_topic"]


def tts(message: dict[str, Any], origin: str = TTS_TOPIC) -> DeviceMessage | None:
    return lorawan.parse_tts(origin, orjson.dumps(message), NOW)


def chirpstack(message: dict[str, Any], origin: str = CS_TOPIC) -> DeviceMessage | None:
    return lorawan.parse_chirpstack(origin, orjson.dumps(message), NOW)


def edited(sample: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``sample`` with the dotted ``path`` set to ``value`` (deleted when value is ...)."""
    message = copy.deepcopy(sample)
    *parents, last = path.split(".")
    node: Any = message
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return message


def test_the_tts_gauge_uplink_carries_decoded_payload_raw_frame_and_best_gateway() -> None:
    message = tts(TTS_SAMPLE["message"])
    assert message is not None
    assert (message.family, message.device_id, message.dev_eui) == (TTS, "wl-kasuga-001", "70b3d57ed005a1b2")
    assert message.tenant == "ttn"
    assert message.frame == "4312:01J9Z6X8Q0A1B2C3D4E5F6G7H8"
    assert message.observed_at == datetime(2025, 9, 1, 1, 0, 3, 205000, tzinfo=UTC)
    assert message.measures == [{"analog_in_1": -1.23, "analog_in_2": 3.61, "digital_in_3": 1}]
    assert message.payload is not None
    assert cayenne.decode(message.payload) == message.measures[0]
    assert message.port == 2
    assert message.radio == {
        "rssi": -108,
        "snr": -4.5,
        "gateway_id": "takamatsu-gw-01",
        "gateway_location": {"latitude": 34.3401, "longitude": 134.0434, "altitude": 12},
        "gateways": 1,
        lorawan.TTS_APPLICATION: "takamatsu-flood",
    }


def test_the_same_tts_json_posted_by_the_webhook_parses_the_same() -> None:
    by_mqtt, by_webhook = tts(TTS_SAMPLE["message"]), tts(TTS_SAMPLE["message"], "/adapters/tts")
    assert by_mqtt is not None
    assert by_webhook is not None
    assert by_webhook.origin == "/adapters/tts"
    assert (
        by_webhook.device_id,
        by_webhook.tenant,
        by_webhook.frame,
        by_webhook.measures,
        by_webhook.radio,
    ) == (
        by_mqtt.device_id,
        by_mqtt.tenant,
        by_mqtt.frame,
        by_mqtt.measures,
        by_mqtt.radio,
    )


def test_a_tts_uplink_without_decoded_payload_leaves_the_frame_to_the_codec() -> None:
    message = tts(edited(TTS_SAMPLE["message"], "uplink_message.decoded_payload", ...))
    assert message is not None
    assert message.measures == []
    assert message.payload == base64.b64decode("AQL/hQICAWkDAAE=")


def test_tts_omits_a_zero_frame_counter_and_the_key_still_names_the_uplink() -> None:
    message = tts(edited(TTS_SAMPLE["message"], "uplink_message.f_cnt", ...))
    assert message is not None
    assert message.frame == "0:01J9Z6X8Q0A1B2C3D4E5F6G7H8"
    bare = tts(edited(edited(TTS_SAMPLE["message"], "correlation_ids", ...), "uplink_message.f_cnt", 7))
    assert bare is not None
    assert bare.frame == "7@2025-09-01T01:00:03.205Z"  # the network server's reception time


def test_the_best_heard_gateway_gives_the_link_metadata() -> None:
    second = copy.deepcopy(TTS_SAMPLE["message"]["uplink_message"]["rx_metadata"][0])
    second.update({"rssi": -90, "snr": 7.5, "gateway_ids": {"gateway_id": "gw-02"}})
    del second["location"]
    rx = [TTS_SAMPLE["message"]["uplink_message"]["rx_metadata"][0], second]
    message = tts(edited(TTS_SAMPLE["message"], "uplink_message.rx_metadata", rx))
    assert message is not None
    assert message.radio == {
        "rssi": -90,
        "snr": 7.5,
        "gateway_id": "gw-02",
        "gateways": 2,
        lorawan.TTS_APPLICATION: "takamatsu-flood",
    }


@pytest.mark.parametrize(
    "origin",
    [
        "v3/takamatsu-flood@ttn/devices/wl-kasuga-001/join",
        "v3/takamatsu-flood@ttn/devices/wl-kasuga-001/down/ack",
    ],
)
def test_tts_events_other_than_uplinks_are_ignored(origin: str) -> None:
    assert tts(TTS_SAMPLE["message"], origin) is None


def test_a_webhook_message_other_than_an_uplink_is_ignored() -> None:
    join = {"end_device_ids": TTS_SAMPLE["message"]["end_device_ids"], "join_accept": {"session_key_id": "x"}}
    assert tts(join, "/adapters/tts") is None


def test_an_open_source_tts_topic_has_no_tenant() -> None:
    message = tts(
        edited(TTS_SAMPLE["message"], "uplink_message.network_ids", ...),
        "v3/takamatsu-flood/devices/wl-kasuga-001/up",
    )
    assert message is not None
    assert message.tenant is None
    assert message.radio[lorawan.TTS_APPLICATION] == "takamatsu-flood"


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("end_device_ids.device_id", ..., "end_device_ids.device_id is missing"),
        ("end_device_ids", ..., "end_device_ids is missing"),
        ("end_device_ids.device_id", "wl-other", "is not the topic's device 'wl-kasuga-001'"),
        (
            "end_device_ids.dev_eui",
            "70B3D57ED005A1",
            "end_device_ids.dev_eui '70B3D57ED005A1' is not a 16-hex-digit EUI",
        ),
        ("uplink_message", ..., "uplink_message is missing"),
        ("uplink_message.f_cnt", "many", "uplink_message.f_cnt 'many' is not an integer"),
        ("uplink_message.f_port", 2.5, "uplink_message.f_port 2.5 is not an integer"),
        ("uplink_message.frm_payload", "AQL/hQ!!", "uplink_message.frm_payload 'AQL/hQ!!' is not base64"),
        ("uplink_message.decoded_payload", [1, 2], "uplink_message.decoded_payload is not an object"),
        ("uplink_message.received_at", "tomorrow", "uplink_message.received_at 'tomorrow' is not"),
        ("uplink_message.rx_metadata", {"rssi": 1}, "uplink_message.rx_metadata is not an array of objects"),
        (
            "uplink_message.rx_metadata.0.rssi",
            "loud",
            "uplink_message.rx_metadata[0].rssi 'loud' is not a number",
        ),
        (
            "uplink_message.rx_metadata.0.location",
            {"latitude": "north"},
            "uplink_message.rx_metadata[0].location.latitude 'north' is not a number",
        ),
    ],
)
def test_broken_tts_uplinks_are_rejected_naming_the_field(path: str, value: Any, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        tts(edited(TTS_SAMPLE["message"], path, value))
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b'{"end_device_ids": ', "TTS message is not JSON"), (b"[1]", "TTS message is not a JSON object")],
)
def test_a_tts_body_that_is_not_a_json_object_is_rejected(body: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        lorawan.parse_tts(TTS_TOPIC, body, NOW)


def test_decoded_null_coordinates_pass_through_for_the_model_to_judge() -> None:
    gps = {"gps_1": {"latitude": None, "longitude": None, "altitude": 0}}
    message = tts(edited(TTS_SAMPLE["message"], "uplink_message.decoded_payload", gps))
    assert message is not None
    assert message.measures == [gps]


def test_the_chirpstack_snowplow_uplink_has_its_cayenne_object_in_the_flat_naming() -> None:
    message = chirpstack(CS_SAMPLE["message"])
    assert message is not None
    assert (message.family, message.device_id, message.dev_eui) == (
        CHIRPSTACK,
        "0004a30b001c0530",
        "0004a30b001c0530",
    )
    assert message.tenant == "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
    assert message.frame == "10452:5d0bd2a4-6d8d-4b0c-9d6e-8f0a6c1b2e3f"
    assert message.observed_at == datetime(2025, 1, 15, 21, 40, 20, 512345, tzinfo=UTC)
    flat = {"gps_1": {"latitude": 37.4947, "longitude": 139.9298, "altitude": 215.0}, "analog_in_2": 12.5}
    assert message.measures == [flat | {"digital_in_3": 1}]
    assert message.payload is not None
    assert cayenne.decode(message.payload) == message.measures[0]
    assert message.port == 1
    assert message.radio == {
        "rssi": -97,
        "snr": 6.5,
        "gateway_id": "0016c001f153a14c",
        "gateway_location": {"latitude": 37.4926, "longitude": 139.9294, "altitude": 220},
        "gateways": 1,
        lorawan.CHIRPSTACK_APPLICATION: "7c1e0d4a-3b8f-4e6a-9f1d-2a5b6c7d8e9f",
    }


def test_the_chirpstack_http_integration_parses_the_same_event() -> None:
    by_http = chirpstack(CS_SAMPLE["message"], "/adapters/chirpstack?event=up")
    by_mqtt = chirpstack(CS_SAMPLE["message"])
    assert by_http is not None
    assert by_mqtt is not None
    assert (by_http.device_id, by_http.frame, by_http.measures, by_http.radio) == (
        by_mqtt.device_id,
        by_mqtt.frame,
        by_mqtt.measures,
        by_mqtt.radio,
    )


def test_a_chirpstack_object_from_another_codec_is_kept_as_is() -> None:
    message = chirpstack(edited(CS_SAMPLE["message"], "object", {"speed": 12.5, "blade": True}))
    assert message is not None
    assert message.measures == [{"speed": 12.5, "blade": True}]
    bare = chirpstack(edited(edited(CS_SAMPLE["message"], "object", ...), "fCnt", ...))
    assert bare is not None
    assert (bare.measures, bare.frame) == ([], "0:5d0bd2a4-6d8d-4b0c-9d6e-8f0a6c1b2e3f")


@pytest.mark.parametrize(
    "origin",
    [
        "application/7c1e0d4a-3b8f-4e6a-9f1d-2a5b6c7d8e9f/device/0004a30b001c0530/event/join",
        "application/7c1e0d4a-3b8f-4e6a-9f1d-2a5b6c7d8e9f/device/0004a30b001c0530/event/ack",
        "/adapters/chirpstack?event=txack",
        "/adapters/chirpstack?event=log",
    ],
)
def test_chirpstack_events_other_than_uplinks_are_ignored(origin: str) -> None:
    assert chirpstack(CS_SAMPLE["message"], origin) is None


def _status(**fields: Any) -> dict[str, Any]:
    base = {
        "deduplicationId": "9f1c",
        "time": "2025-01-15T21:45:00Z",
        "deviceInfo": CS_SAMPLE["message"]["deviceInfo"],
    }
    return base | fields


def test_a_chirpstack_status_event_gives_the_battery_level_as_a_fraction() -> None:
    origin = CS_TOPIC.replace("/event/up", "/event/status")
    message = chirpstack(_status(margin=7, batteryLevel=87.5), origin)
    assert message is not None
    assert message.measures == [{"batteryLevel": 0.875}]
    assert (message.frame, message.payload, message.radio) == ("status:9f1c", None, {})
    assert message.observed_at == datetime(2025, 1, 15, 21, 45, tzinfo=UTC)
    assert chirpstack(_status(externalPowerSource=True, batteryLevel=0), origin) is None
    assert chirpstack(_status(batteryLevelUnavailable=True), origin) is None
    with pytest.raises(Rejected, match=r"batteryLevel 140\.0 is not a percentage"):
        chirpstack(_status(batteryLevel=140.0), origin)


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("deviceInfo", ..., "deviceInfo is missing"),
        ("deviceInfo.devEui", ..., "deviceInfo.devEui is missing"),
        ("deviceInfo.devEui", "0004a30b001c0531", "is not the topic's DevEUI '0004a30b001c0530'"),
        ("deviceInfo.devEui", 4, "deviceInfo.devEui 4 is not a string"),
        ("data", "AYgFuKM", "data 'AYgFuKM' is not base64"),
        ("fCnt", -1.5, "fCnt -1.5 is not an integer"),
        ("fPort", "one", "fPort 'one' is not an integer"),
        ("object", "gps", "object is not an object"),
        ("time", "at dawn", "time 'at dawn' is not"),
        ("rxInfo", [1], "rxInfo is not an array of objects"),
        ("rxInfo.0.snr", True, "rxInfo[0].snr True is not a number"),
    ],
)
def test_broken_chirpstack_uplinks_are_rejected_naming_the_field(path: str, value: Any, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        chirpstack(edited(CS_SAMPLE["message"], path, value))
    assert reason in caught.value.reason


def test_downlinks_are_queued_on_each_network_servers_topic() -> None:
    topic, body = lorawan.tts_downlink(
        "takamatsu-flood", "ttn", "wl-kasuga-001", 2, bytes.fromhex("0102025800000000")
    )
    assert topic == "v3/takamatsu-flood@ttn/devices/wl-kasuga-001/down/push"
    assert orjson.loads(body) == {
        "downlinks": [{"f_port": 2, "frm_payload": "AQICWAAAAAA=", "priority": "NORMAL"}]
    }
    topic, body = lorawan.tts_downlink("app", None, "dev", 3, b"\x01", priority="HIGH", confirmed=True)
    assert topic == "v3/app/devices/dev/down/push"
    assert orjson.loads(body)["downlinks"][0] == {
        "f_port": 3,
        "frm_payload": "AQ==",
        "priority": "HIGH",
        "confirmed": True,
    }
    topic, body = lorawan.chirpstack_downlink("7c1e", "0004A30B001C0530", 1, b"\x01\x02")
    assert topic == "application/7c1e/device/0004a30b001c0530/command/down"
    assert orjson.loads(body) == {
        "devEui": "0004a30b001c0530",
        "confirmed": False,
        "fPort": 1,
        "data": "AQI=",
    }
    with pytest.raises(ValueError, match=r"port 0 is not in 1\.\.223"):
        lorawan.chirpstack_downlink("7c1e", "0004a30b001c0530", 0, b"")


def _leaves(sample: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in sample.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, dict):
            paths += _leaves(value, f"{path}.")
    return paths


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=8),
    st.just([]),
    st.just({}),
)


@given(st.sampled_from(_leaves(TTS_SAMPLE["message"])), junk)
def test_any_tts_field_replaced_by_junk_parses_or_is_rejected(path: str, value: Any) -> None:
    _parses_or_is_rejected(lambda: tts(edited(TTS_SAMPLE["message"], path, value)))


@given(st.sampled_from(_leaves(CS_SAMPLE["message"])), junk)
def test_any_chirpstack_field_replaced_by_junk_parses_or_is_rejected(path: str, value: Any) -> None:
    _parses_or_is_rejected(lambda: chirpstack(edited(CS_SAMPLE["message"], path, value)))


def _parses_or_is_rejected(parse: Callable[[], DeviceMessage | None]) -> None:
    """A message, None (ignored) or Rejected with a reason: never another exception."""
    outcome: DeviceMessage | Rejected | None
    try:
        outcome = parse()
    except Rejected as rejected:
        outcome = rejected
    if isinstance(outcome, Rejected):
        assert outcome.reason
    else:
        assert outcome is None or (outcome.device_id and isinstance(outcome.measures, list))


def test_a_rejection_after_the_device_is_known_names_it_for_the_dead_letter() -> None:
    with pytest.raises(Rejected) as caught:
        tts(edited(TTS_SAMPLE["message"], "uplink_message.f_cnt", "many"))
    assert caught.value.device == "wl-kasuga-001"
    with pytest.raises(Rejected) as caught:
        chirpstack(edited(CS_SAMPLE["message"], "fCnt", "many"))
    assert caught.value.device == "0004a30b001c0530"
    with pytest.raises(Rejected) as caught:
        tts(edited(TTS_SAMPLE["message"], "end_device_ids.device_id", ...))
    assert caught.value.device is None


@pytest.mark.parametrize(
    ("sent", "measured"),
    [
        (27.200000762939453, 27.2),  # TTS's documented CayenneLPP example
        (22.200000762939453, 22.2),
        (-1.2300000190734863, -1.23),
        (1017.5, 1017.5),
        (123456.789, 123456.789),  # a double from a JavaScript formatter, not a float32
        (0.1, 0.1),
        (42, 42),
    ],
)
def test_tts_float32_artifacts_become_the_decimal_the_device_sent(sent: float, measured: float) -> None:
    decoded = {
        "temperature_3": sent,
        "gps_1": {"latitude": sent},
        "list": [sent],
        "text": "27.200000762939453",
    }
    message = tts(edited(TTS_SAMPLE["message"], "uplink_message.decoded_payload", decoded))
    assert message is not None
    tidy = message.measures[0]
    assert (tidy["temperature_3"], tidy["gps_1"]["latitude"], tidy["list"][0]) == (
        measured,
        measured,
        measured,
    )
    assert type(tidy["temperature_3"]) is type(measured)
    assert tidy["text"] == "27.200000762939453"


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_tidying_a_float32_keeps_its_float32_value(value: float) -> None:
    message = tts(edited(TTS_SAMPLE["message"], "uplink_message.decoded_payload", {"v": value}))
    assert message is not None
    tidy = message.measures[0]["v"]
    assert struct.pack(">f", tidy) == struct.pack(">f", value)
    assert len(repr(tidy)) <= len(repr(value))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"deviceInfo": {"devEui": "0004', "ChirpStack event is not JSON"),
        (b"null", "ChirpStack event is not a JSON object"),
    ],
)
def test_a_chirpstack_body_that_is_not_a_json_object_is_rejected(body: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        lorawan.parse_chirpstack(CS_TOPIC, body, NOW)


def test_chirpstack_null_coordinates_pass_through_for_the_model_to_judge() -> None:
    obj = {"gpsLocation": {"1": {"latitude": None, "longitude": None, "altitude": 0}}}
    message = chirpstack(edited(CS_SAMPLE["message"], "object", obj))
    assert message is not None
    assert message.measures == [{"gps_1": {"latitude": None, "longitude": None, "altitude": 0}}]


@given(st.binary(max_size=120))
def test_any_bytes_as_a_lorawan_body_parse_or_are_rejected(body: bytes) -> None:
    _parses_or_is_rejected(lambda: lorawan.parse_tts(TTS_TOPIC, body, NOW))
    _parses_or_is_rejected(lambda: lorawan.parse_chirpstack(CS_TOPIC, body, NOW))


# --- redelivery keys (issue 11 defect 3): a duplicate must be a duplicate ---------------------


def masked_tts(decoded: dict[str, Any], **uplink: Any) -> dict[str, Any]:
    """A TTS webhook body under a field mask: device ids and the decoded payload (and ``uplink``)."""
    ids = TTS_SAMPLE["message"]["end_device_ids"]
    return {"end_device_ids": ids, "uplink_message": {"decoded_payload": decoded, **uplink}}


def key(message: DeviceMessage | None) -> str | None:
    assert message is not None
    return message.frame


def test_without_counter_or_ids_distinct_readings_have_distinct_keys_and_a_redelivery_the_same() -> None:
    """The defect: every uplink of such a device had the key "0", so all but the first were lost."""
    first, second = masked_tts({"analog_in_1": -1.2}), masked_tts({"analog_in_1": -1.1})
    assert key(tts(first, "/adapters/tts")) != key(tts(second, "/adapters/tts"))
    assert key(tts(first, "/adapters/tts")) == key(tts(copy.deepcopy(first), "/adapters/tts"))


def test_without_counter_or_ids_the_same_reading_a_minute_later_is_a_new_uplink() -> None:
    body = orjson.dumps(masked_tts({"analog_in_1": -1.2}))
    now = lorawan.parse_tts("/adapters/tts", body, NOW)
    later = lorawan.parse_tts("/adapters/tts", body, NOW.replace(minute=2))
    assert key(now) != key(later)


def test_a_counter_reset_by_a_rejoin_gives_new_keys_when_the_network_time_differs() -> None:
    before = edited(edited(TTS_SAMPLE["message"], "correlation_ids", ...), "uplink_message.f_cnt", 1)
    after = edited(before, "uplink_message.received_at", "2025-09-03T07:10:00.001Z")
    assert key(tts(before)) != key(tts(after))
    assert key(tts(before)) == key(tts(copy.deepcopy(before)))


def test_a_counter_that_comes_back_in_a_later_window_without_any_time_is_a_new_session() -> None:
    body = orjson.dumps(masked_tts({"analog_in_1": -1.2}, f_cnt=3))
    assert key(lorawan.parse_tts("/adapters/tts", body, NOW)) == key(
        lorawan.parse_tts("/adapters/tts", body, NOW.replace(minute=30))
    )
    assert key(lorawan.parse_tts("/adapters/tts", body, NOW)) != key(
        lorawan.parse_tts("/adapters/tts", body, NOW.replace(hour=5))
    )


def test_chirpstack_without_deduplication_id_keys_on_the_counter_and_the_network_time() -> None:
    bare = edited(CS_SAMPLE["message"], "deduplicationId", ...)
    assert key(chirpstack(bare)) == "10452@2025-01-15T21:40:20.512345678+00:00"
    no_time = edited(bare, "time", ...)
    assert key(chirpstack(no_time)) == "10452@2025-01-15T21:40:20.505Z"  # rxInfo nsTime
    rejoined = edited(edited(no_time, "fCnt", ...), "rxInfo.0.nsTime", "2025-01-16T05:00:00.000Z")
    assert key(chirpstack(rejoined)) == "0@2025-01-16T05:00:00.000Z"


@given(readings=st.lists(st.integers(-5000, 5000), min_size=2, max_size=20, unique=True))
def test_distinct_readings_never_share_a_key(readings: list[int]) -> None:
    keys = {key(tts(masked_tts({"analog_in_1": r / 1000}), "/adapters/tts")) for r in readings}
    assert len(keys) == len(readings)
