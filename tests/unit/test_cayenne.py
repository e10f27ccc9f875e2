"""CayenneLPP: the reference vectors, every type's resolution, precise rejections, ChirpStack's nesting."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.codecs import cayenne
from adapters.message import Rejected
from tests.conftest import fixture_json

VECTORS = fixture_json("uplinks/cayenne_lpp_vectors.json")["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["label"] for v in VECTORS])
def test_each_reference_vector_decodes_to_the_tts_decoded_payload(vector: dict[str, Any]) -> None:
    assert cayenne.decode(bytes.fromhex(vector["hex"])) == vector["tts_decoded_payload"]
    assert cayenne.decode(base64.b64decode(vector["base64"])) == vector["tts_decoded_payload"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["label"] for v in VECTORS])
def test_each_reference_vector_encodes_back_to_its_bytes(vector: dict[str, Any]) -> None:
    assert cayenne.encode(vector["tts_decoded_payload"]).hex() == vector["hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["label"] for v in VECTORS])
def test_chirpstack_nesting_converts_to_the_tts_naming(vector: dict[str, Any]) -> None:
    assert cayenne.from_chirpstack(vector["chirpstack_v4_object"]) == vector["tts_decoded_payload"]


@pytest.mark.parametrize(
    ("hex_frame", "expected"),
    [
        ("0000ff", {"digital_in_0": 255}),
        ("0101ff", {"digital_out_1": 255}),
        ("0203ff38", {"analog_out_2": -2.0}),
        ("0364ffffffff", {"generic_sensor_3": 4294967295}),
        ("04650190", {"luminosity_4": 400}),
        ("056601", {"presence_5": 1}),
        ("0667ff9c", {"temperature_6": -10.0}),
        ("076865", {"relative_humidity_7": 50.5}),
        ("087104d2fb2e0000", {"accelerometer_8": {"x": 1.234, "y": -1.234, "z": 0.0}}),
        ("097327bf", {"barometric_pressure_9": 1017.5}),
        ("0a74014a", {"voltage_10": 3.3}),
        ("0b7503e8", {"current_11": 1.0}),
        ("0c76000f4240", {"frequency_12": 1000000}),
        ("0d7864", {"percentage_13": 100}),
        ("0e79ff38", {"altitude_14": -200}),
        ("0f7d01a4", {"concentration_15": 420}),
        ("10800fa0", {"power_16": 4000}),
        ("118200003039", {"distance_17": 12.345}),
        ("12830001e240", {"energy_18": 123.456}),
        ("13840167", {"direction_19": 359}),
        ("14856553f100", {"unixtime_20": 1700000000}),
        ("158603e8fc180000", {"gyrometer_21": {"x": 10.0, "y": -10.0, "z": 0.0}}),
        ("1687ff8000", {"colour_22": {"r": 255, "g": 128, "b": 0}}),
        ("178e01", {"switch_23": 1}),
        (
            "1888f9ff21fa6f4fffff9c",
            {"gps_24": {"latitude": -39.3439, "longitude": -36.4721, "altitude": -1.0}},
        ),
    ],
)
def test_every_supported_type_decodes_at_its_resolution_and_signedness(
    hex_frame: str, expected: dict[str, Any]
) -> None:
    assert cayenne.decode(bytes.fromhex(hex_frame)) == expected
    assert cayenne.encode(expected).hex() == hex_frame


def test_an_empty_frame_has_no_measures() -> None:
    assert cayenne.decode(b"") == {}


@pytest.mark.parametrize(
    ("hex_frame", "reason"),
    [
        ("03", "truncated at byte 0: channel 3 has no type byte"),
        ("03670110056700", "truncated at byte 6: temperature (type 103) on channel 5 needs 2 bytes, 1 left"),
        ("018806765ff2960a00", "truncated at byte 2: gps (type 136) on channel 1 needs 9 bytes, 7 left"),
        ("0367011005", "truncated at byte 4: channel 5 has no type byte"),
        ("036701100563ff", "unknown type 0x63 (99) at byte 5, channel 5"),
    ],
)
def test_a_truncated_or_unknown_frame_is_rejected_naming_the_byte(hex_frame: str, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        cayenne.decode(bytes.fromhex(hex_frame))
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "measures",
    [
        {"temperature": 1.0},
        {"temperature_256": 1.0},
        {"wind_speed_1": 3.0},
        {"temperature_1": 3276.8},
        {"digital_in_1": -1},
        {"analog_in_1": float("nan")},
        {"analog_in_1": "12"},
        {"gps_1": {"latitude": 1.0, "longitude": 2.0}},
        {"gps_1": 3.0},
    ],
)
def test_encode_refuses_what_cannot_be_a_frame(measures: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(measures))[:5]):
        cayenne.encode(measures)


def test_chirpstack_objects_of_other_codecs_are_not_taken_for_cayenne() -> None:
    assert not cayenne.is_chirpstack_shaped({"level": 1.2})
    assert not cayenne.is_chirpstack_shaped({"analogInput": 1.2})
    assert not cayenne.is_chirpstack_shaped({"analogInput": {"one": 1.2}})
    assert not cayenne.is_chirpstack_shaped({})
    with pytest.raises(Rejected, match="not a CayenneLPP object"):
        cayenne.from_chirpstack({"level": 1.2})


def _raw_value(lpp: cayenne.LppType) -> st.SearchStrategy[Any]:
    """Any value the type can carry, exactly on its resolution grid."""

    def part_values(part: cayenne.Part) -> st.SearchStrategy[int | float]:
        bits = part.size * 8
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if part.signed else (0, (1 << bits) - 1)
        raws = st.integers(low, high)
        return raws if part.divisor == 1 else raws.map(lambda raw: raw / part.divisor)

    if lpp.parts[0].key is None:
        return part_values(lpp.parts[0])
    return st.fixed_dictionaries({str(p.key): part_values(p) for p in lpp.parts})


flat_measures = st.dictionaries(
    st.tuples(st.sampled_from(cayenne.TYPES), st.integers(0, 255)),
    st.none(),
    max_size=12,
).flatmap(lambda keys: st.fixed_dictionaries({f"{lpp.name}_{ch}": _raw_value(lpp) for lpp, ch in keys}))


@given(flat_measures)
def test_decoding_an_encoded_frame_gives_the_measures_back(measures: dict[str, Any]) -> None:
    assert cayenne.decode(cayenne.encode(measures)) == measures


@given(st.sampled_from([t for t in cayenne.TYPES if t.parts[0].key is None]), st.floats(0, 1))
def test_values_between_grid_points_round_to_the_nearest(lpp: cayenne.LppType, fraction: float) -> None:
    part = lpp.parts[0]
    top = (1 << (part.size * 8 - (1 if part.signed else 0))) - 1
    value = fraction * top / part.divisor
    decoded = cayenne.decode(cayenne.encode({f"{lpp.name}_1": value}))[f"{lpp.name}_1"]
    assert abs(decoded - value) <= 0.5 / part.divisor + 1e-9


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_are_rejected_never_anything_else(payload: bytes) -> None:
    outcome: dict[str, Any] | Rejected
    try:
        outcome = cayenne.decode(payload)
    except Rejected as rejected:
        outcome = rejected
    if isinstance(outcome, Rejected):
        assert outcome.reason.startswith("CayenneLPP frame")
    else:
        assert cayenne.encode(outcome) == _canonical(payload)


def _canonical(payload: bytes) -> bytes:
    """The frame with a repeated channel and type kept once, at its first place with its last value."""
    entries: dict[tuple[int, int], bytes] = {}
    at = 0
    while at < len(payload):
        size = cayenne.BY_CODE[payload[at + 1]].size
        entries[(payload[at], payload[at + 1])] = payload[at : at + 2 + size]
        at += 2 + size
    return b"".join(entries.values())


@given(flat_measures, st.data())
def test_a_cut_frame_is_rejected_as_truncated_unless_cut_between_entries(
    measures: dict[str, Any], data: st.DataObject
) -> None:
    frame = cayenne.encode(measures)
    cut = data.draw(st.integers(0, len(frame)))
    outcome: dict[str, Any] | Rejected
    try:
        outcome = cayenne.decode(frame[:cut])
    except Rejected as rejected:
        outcome = rejected
    if isinstance(outcome, Rejected):
        assert "truncated" in outcome.reason
    else:
        assert list(outcome.items()) == list(measures.items())[: len(outcome)]
