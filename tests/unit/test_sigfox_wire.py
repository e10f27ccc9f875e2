"""Sigfox backend callbacks (JSON, form, query; numbers as text) and the BIDIR reply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import sigfox
from adapters.message import SIGFOX, DeviceMessage, Rejected
from tests.conftest import fixture_json

NOW = datetime(2025, 9, 1, 1, 0, 2, tzinfo=UTC)
PATH = "/adapters/sigfox/uplink"
SAMPLE = fixture_json("uplinks/sigfox_uplink_callback_waterlevel.json")
BODY = SAMPLE["example_body"]
REPLY = fixture_json("uplinks/sigfox_bidir_response.json")


def parse_json(body: dict[str, Any]) -> DeviceMessage:
    return sigfox.parse(PATH, orjson.dumps(body), NOW)


def test_the_gauge_callback_gives_device_time_frame_and_raw_data() -> None:
    message = parse_json(BODY)
    assert (message.family, message.device_id, message.origin) == (SIGFOX, "3F2A91", PATH)
    assert message.observed_at == datetime(2025, 9, 1, 1, 0, tzinfo=UTC)
    assert message.frame == "2211:1756688400"
    assert message.payload == bytes.fromhex("fb320e1a01")
    assert message.measures == []
    assert message.radio == {
        "rssi": -128.0,
        "snr": 9.12,
        "gateway_id": "7B2C",
        "sigfox_device_type_id": "5f1a2b3c4d5e6f7a8b9c0d1e",
    }
    assert message.wants_reply is False


def test_a_template_that_quotes_every_variable_parses_the_same() -> None:
    quoted = {
        key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in BODY.items()
    }
    assert parse_json(quoted) == parse_json(BODY)


def test_a_form_encoded_callback_parses_the_same() -> None:
    form = urlencode(
        {key: str(value).lower() if isinstance(value, bool) else value for key, value in BODY.items()}
    )
    assert sigfox.parse(PATH, form.encode(), NOW) == parse_json(BODY)


def test_a_get_callback_carries_its_variables_in_the_query() -> None:
    origin = f"{PATH}?device=3f2a91&time=1756688400&data=fb320e1a01&seqNumber=2211&ack=true"
    message = sigfox.parse(origin, b"", NOW)
    assert (message.device_id, message.frame, message.payload) == (
        "3F2A91",
        "2211:1756688400",
        bytes.fromhex("fb320e1a01"),
    )
    assert message.wants_reply is True


def test_a_bidir_callback_with_ack_true_wants_a_reply() -> None:
    assert parse_json(BODY | {"ack": True}).wants_reply is True
    assert parse_json(BODY | {"ack": "true"}).wants_reply is True
    assert parse_json(BODY | {"ack": "false"}).wants_reply is False


def test_the_sequence_number_wraps_so_the_time_tells_frames_apart() -> None:
    first = parse_json(BODY | {"seqNumber": 5, "time": 1756688400})
    after_wrap = parse_json(BODY | {"seqNumber": 5, "time": 1759145400})
    assert first.frame != after_wrap.frame
    assert parse_json(BODY | {"seqNumber": "5", "time": "1756688400"}).frame == first.frame


def test_optional_metadata_may_be_absent() -> None:
    minimal = {"device": "3F2A91", "data": ""}
    message = parse_json(minimal)
    assert (message.frame, message.observed_at, message.payload, message.radio) == (None, None, b"", {})


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("device", ..., "device is missing"),
        ("device", "3F2A91FF0", "device '3F2A91FF0' is not a Sigfox device id"),
        ("device", "3G2A91", "device '3G2A91' is not a Sigfox device id"),
        ("device", 3291, "device 3291 is not a string"),
        ("data", ..., "data is missing"),
        ("data", 1234, "data 1234 is not a hex string"),
        ("data", "fb320", "data 'fb320' is not hex"),
        ("data", "00" * 13, "data is 13 bytes long, more than 12"),
        ("time", "{time}", "time '{time}' is not"),
        ("seqNumber", "12a", "seqNumber '12a' is not an integer"),
        ("seqNumber", 22.5, "seqNumber 22.5 is not an integer"),
        ("rssi", "weak", "rssi 'weak' is not a number"),
        ("snr", [], "snr [] is not a number"),
        ("station", 7, "station 7 is not a string"),
        ("ack", "yes", "ack 'yes' is not true or false"),
    ],
)
def test_broken_callbacks_are_rejected_naming_the_field(field: str, value: Any, reason: str) -> None:
    body = {k: v for k, v in BODY.items() if k != field} if value is ... else BODY | {field: value}
    with pytest.raises(Rejected) as caught:
        parse_json(body)
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"device": "3F2A91", ', "Sigfox callback body is not JSON"),
        (b'["3F2A91"]', "Sigfox callback body is not a JSON object"),
        (b"3F2A91 fb320e1a01", "neither JSON nor a form"),
    ],
)
def test_a_body_neither_json_object_nor_form_is_rejected(body: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        sigfox.parse(PATH, body, NOW)


def test_the_bidir_reply_carries_eight_bytes_for_the_device_or_is_204() -> None:
    status, body = sigfox.bidir_reply("3F2A91", bytes.fromhex("0102025800000000"))
    assert status == 200
    assert body is not None
    assert orjson.loads(body) == REPLY["response_body"]
    assert sigfox.bidir_reply("3F2A91", None) == (204, None)
    with pytest.raises(ValueError, match="exactly 8 bytes, not 4"):
        sigfox.bidir_reply("3F2A91", b"\x01\x02\x03\x04")


values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=30), st.just({})
)


@given(st.dictionaries(st.sampled_from([*BODY, "other"]), values))
def test_any_callback_body_parses_or_is_rejected_never_anything_else(edits: dict[str, Any]) -> None:
    outcome: DeviceMessage | Rejected
    try:
        outcome = parse_json(BODY | edits)
    except Rejected as rejected:
        outcome = rejected
    if isinstance(outcome, Rejected):
        assert outcome.reason
    else:
        assert outcome.payload is not None
        assert len(outcome.payload) <= 12


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_are_rejected(body: bytes) -> None:
    outcome: DeviceMessage | Rejected
    try:
        outcome = sigfox.parse(PATH, body, NOW)
    except Rejected as rejected:
        outcome = rejected
    assert isinstance(outcome, Rejected | DeviceMessage)


def test_a_rejection_after_the_device_is_known_names_it_for_the_dead_letter() -> None:
    with pytest.raises(Rejected) as caught:
        parse_json(BODY | {"device": "3f2a91", "data": "zz"})
    assert caught.value.device == "3F2A91"
