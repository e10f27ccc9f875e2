"""Declared binary layouts: the Sigfox gauge frame, each field kind, short frames, property round-trips."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.codecs import layout
from adapters.device import LayoutField
from adapters.message import Rejected
from tests.conftest import fixture_json

# The reference gauge: i16 water level in mm relative to the bank top, u16 battery mV, u8 flags.
GAUGE = (
    LayoutField("waterLevel", 0, 2, signed=True, scale=0.001),
    LayoutField("batteryVoltage", 2, 2, scale=0.001),
    LayoutField("flags", 4, 1),
    LayoutField("floodMode", 4, 1, bits=(0, 1), kind="bool"),
)


def test_the_sigfox_gauge_frame_decodes_to_level_battery_and_flood_mode() -> None:
    data = fixture_json("uplinks/sigfox_uplink_callback_waterlevel.json")["example_body"]["data"]
    assert layout.decode(bytes.fromhex(data), GAUGE) == {
        "waterLevel": -1.23,
        "batteryVoltage": 3.61,
        "flags": 1,
        "floodMode": True,
    }


def test_a_frame_shorter_than_the_layout_is_rejected_naming_the_field() -> None:
    with pytest.raises(
        Rejected, match=r"frame of 4 bytes is shorter than the layout: field 'flags' needs bytes 4..4"
    ):
        layout.decode(bytes.fromhex("fb320e1a"), GAUGE)


def test_extra_bytes_after_the_layout_are_ignored() -> None:
    assert layout.decode(bytes.fromhex("0001ff"), [LayoutField("n", 0, 2)]) == {"n": 1}


@pytest.mark.parametrize(
    ("spec", "hex_frame", "value"),
    [
        (LayoutField("u32le", 0, 4, big_endian=False), "01000000", 1),
        (LayoutField("i32le", 0, 4, signed=True, big_endian=False), "feffffff", -2),
        (LayoutField("u64", 0, 8), "ffffffffffffffff", 2**64 - 1),
        (LayoutField("u24", 1, 3), "aa000102", 258),
        (LayoutField("temp", 0, 2, signed=True, scale=0.1, add=-40.0), "0190", 0.0),
        (LayoutField("f32", 0, 4, kind="float"), "3fc00000", 1.5),
        (LayoutField("f32le", 0, 4, kind="float", big_endian=False), "0000c03f", 1.5),
        (LayoutField("f64", 0, 8, kind="float", scale=2.0), "3ff0000000000000", 2.0),
        (LayoutField("id", 1, 3, kind="hex"), "00a1b2c3", "a1b2c3"),
        (LayoutField("nibble", 0, 1, bits=(4, 4)), "a5", 10),
        (LayoutField("snibble", 0, 1, bits=(4, 4), signed=True), "a5", -6),
        (LayoutField("mode", 0, 2, bits=(9, 2)), "0600", 3),
        (LayoutField("alarm", 0, 1, bits=(7, 1), kind="bool"), "7f", False),
        (LayoutField("on", 0, 1, kind="bool"), "02", True),
    ],
)
def test_each_field_kind_reads_its_bytes(spec: LayoutField, hex_frame: str, value: object) -> None:
    decoded = layout.decode(bytes.fromhex(hex_frame), [spec])[spec.name]
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (LayoutField("x", 0, 3, kind="float"), "a float is 4 or 8 bytes long, not 3"),
        (LayoutField("x", 0, 1, kind="text"), "kind 'text' is not one of int, float, bool, hex"),
        (LayoutField("x", -1, 1), "offset -1 and length 1 do not name bytes"),
        (LayoutField("x", 0, 1, bits=(6, 4)), r"bits \(6, 4\) do not fit in 1 bytes"),
    ],
)
def test_a_layout_that_cannot_be_read_is_rejected_naming_the_field(spec: LayoutField, reason: str) -> None:
    with pytest.raises(Rejected, match=f"layout field 'x': {reason}"):
        layout.decode(bytes(16), [spec])


def test_a_float_that_is_not_finite_is_rejected() -> None:
    with pytest.raises(Rejected, match="field 'f' is nan"):
        layout.decode(bytes.fromhex("7fc00000"), [LayoutField("f", 0, 4, kind="float")])


def test_an_empty_layout_is_rejected() -> None:
    with pytest.raises(Rejected, match="declares no fields"):
        layout.decode(b"\x01", [])


_FORMATS = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h", (4, False): "I", (4, True): "i"}
_FORMATS |= {(8, False): "Q", (8, True): "q"}


@st.composite
def packed_integers(draw: st.DrawFn) -> tuple[list[LayoutField], bytes, dict[str, int]]:
    """Integer fields one after the other, packed by struct, with the values packed."""
    fields, frame, values = [], b"", {}
    for index in range(draw(st.integers(1, 6))):
        length, signed = draw(st.sampled_from(sorted(_FORMATS)))
        big = draw(st.booleans())
        bits = length * 8
        value = draw(
            st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
            if signed
            else st.integers(0, (1 << bits) - 1)
        )
        name = f"f{index}"
        fields.append(LayoutField(name, len(frame), length, signed=signed, big_endian=big))
        frame += struct.pack((">" if big else "<") + _FORMATS[(length, signed)], value)
        values[name] = value
    return fields, frame, values


@given(packed_integers())
def test_packed_integers_decode_to_the_values_packed(
    case: tuple[list[LayoutField], bytes, dict[str, int]],
) -> None:
    fields, frame, values = case
    assert layout.decode(frame, fields) == values


@given(packed_integers(), st.data())
def test_a_cut_frame_is_rejected_once_a_field_falls_outside(
    case: tuple[list[LayoutField], bytes, dict[str, int]], data: st.DataObject
) -> None:
    fields, frame, _ = case
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(Rejected, match=f"frame of {cut} bytes is shorter than the layout"):
        layout.decode(frame[:cut], fields)


@given(st.integers(0, 2**16 - 1), st.integers(0, 15), st.integers(1, 16), st.booleans())
def test_a_bit_field_is_the_bits_counted_from_the_least_significant(
    word: int, first: int, count: int, signed: bool
) -> None:
    count = min(count, 16 - first)
    expected = (word >> first) & ((1 << count) - 1)
    if signed and count > 1 and expected >= 1 << (count - 1):
        expected -= 1 << count
    spec = LayoutField("b", 0, 2, bits=(first, count), signed=signed)
    assert layout.decode(word.to_bytes(2, "big"), [spec]) == {"b": expected}
