"""The codec dispatch: each codec a device may name, and payloads none of them accepts."""

from __future__ import annotations

import pytest

from adapters import codecs
from adapters.device import CODECS, LayoutField
from adapters.message import Rejected


def test_each_codec_a_device_may_name_decodes_its_payload() -> None:
    assert codecs.decode("cayennelpp", bytes.fromhex("03670110")) == [{"temperature_3": 27.2}]
    assert codecs.decode("ultralight", b"t|15#t|16") == [{"t": 15}, {"t": 16}]
    assert codecs.decode("json", b'{"t": 15}') == [{"t": 15}]
    assert codecs.decode("json", b'[{"t": 15}, {"t": 16}]') == [{"t": 15}, {"t": 16}]
    assert codecs.decode("layout", b"\x00\x0f", [LayoutField("t", 0, 2)]) == [{"t": 15}]
    assert set(CODECS) == {"cayennelpp", "ultralight", "json", "layout"}


@pytest.mark.parametrize(
    ("codec", "payload", "reason"),
    [
        ("protobuf", b"\x01", "codec 'protobuf' is not one of cayennelpp, ultralight, json, layout"),
        ("json", b'{"t": 1', "payload is not JSON"),
        ("json", b"15", "JSON payload is a number"),
        ("json", b"null", "JSON payload is null"),
        ("json", b'"on"', "JSON payload is a string"),
        ("json", b"{}", "JSON payload is an empty object"),
        ("json", b"[]", "JSON payload is an empty array"),
        ("json", b'[{"t": 1}, 2]', "item 1 of the array is a number"),
        ("ultralight", b"t|\xff", "UltraLight payload is not UTF-8 text \\(byte 2\\)"),
        ("layout", b"\x00", "declares no fields"),
    ],
)
def test_a_payload_the_codec_cannot_read_is_rejected(codec: str, payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        codecs.decode(codec, payload)
