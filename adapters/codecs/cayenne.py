"""CayenneLPP: frames of [channel][type][value]... in the flat naming The Things Stack uses.

Measures are named ``<type name>_<channel>`` as TTS's CayenneLPP formatter does
(``temperature_3``, ``analog_in_1``, ``gps_1`` -> {latitude, longitude, altitude}), for the
LPP v1 types TTS decodes and the LPP v2 types of the Arduino CayenneLPP library, named as the
FIWARE IoT Agent LoRaWAN names them (``generic_sensor_1``, ``voltage_2``...). ChirpStack v4
nests the same values by type and channel ({"analogInput": {"1": -1.23}}); ``from_chirpstack``
converts that to the flat naming so models see one naming whatever the network server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.message import Measures, Rejected


@dataclass(frozen=True, slots=True)
class Part:
    """One big-endian integer of a value: ``key`` None for a scalar, else its name in the object."""

    key: str | None
    size: int
    signed: bool
    divisor: int


@dataclass(frozen=True, slots=True)
class LppType:
    code: int
    name: str  # TTS flat naming prefix
    parts: tuple[Part, ...]
    chirpstack: str | None = None  # ChirpStack v4 object key (it decodes LPP v1 types only)

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)


def _scalar(
    code: int, name: str, size: int, signed: bool, divisor: int, chirpstack: str | None = None
) -> LppType:
    return LppType(code, name, (Part(None, size, signed, divisor),), chirpstack)


def _axes(
    code: int, name: str, keys: str, size: int, signed: bool, divisor: int, chirpstack: str | None
) -> LppType:
    return LppType(code, name, tuple(Part(key, size, signed, divisor) for key in keys.split()), chirpstack)


TYPES: tuple[LppType, ...] = (
    _scalar(0, "digital_in", 1, False, 1, "digitalInput"),
    _scalar(1, "digital_out", 1, False, 1, "digitalOutput"),
    _scalar(2, "analog_in", 2, True, 100, "analogInput"),
    _scalar(3, "analog_out", 2, True, 100, "analogOutput"),
    _scalar(100, "generic_sensor", 4, False, 1),
    _scalar(101, "luminosity", 2, False, 1, "illuminanceSensor"),
    _scalar(102, "presence", 1, False, 1, "presenceSensor"),
    _scalar(103, "temperature", 2, True, 10, "temperatureSensor"),
    _scalar(104, "relative_humidity", 1, False, 2, "humiditySensor"),
    _axes(113, "accelerometer", "x y z", 2, True, 1000, "accelerometer"),
    _scalar(115, "barometric_pressure", 2, False, 10, "barometer"),
    _scalar(116, "voltage", 2, False, 100),
    _scalar(117, "current", 2, False, 1000),
    _scalar(118, "frequency", 4, False, 1),
    _scalar(120, "percentage", 1, False, 1),
    _scalar(121, "altitude", 2, True, 1),
    _scalar(125, "concentration", 2, False, 1),
    _scalar(128, "power", 2, False, 1),
    _scalar(130, "distance", 4, False, 1000),
    _scalar(131, "energy", 4, False, 1000),
    _scalar(132, "direction", 2, False, 1),
    _scalar(133, "unixtime", 4, False, 1),
    _axes(134, "gyrometer", "x y z", 2, True, 100, "gyrometer"),
    _axes(135, "colour", "r g b", 1, False, 1, None),
    LppType(
        136,
        "gps",
        (Part("latitude", 3, True, 10000), Part("longitude", 3, True, 10000), Part("altitude", 3, True, 100)),
        "gpsLocation",
    ),
    _scalar(142, "switch", 1, False, 1),
)
BY_CODE = {t.code: t for t in TYPES}
BY_NAME = {t.name: t for t in TYPES}
BY_CHIRPSTACK = {t.chirpstack: t for t in TYPES if t.chirpstack is not None}


def decode(payload: bytes) -> Measures:
    """The measures of a CayenneLPP frame; Rejected names the byte where a bad frame goes wrong."""
    measures: Measures = {}
    at = 0
    while at < len(payload):
        if at + 2 > len(payload):
            raise Rejected(f"CayenneLPP frame truncated at byte {at}: channel {payload[at]} has no type byte")
        channel, code = payload[at], payload[at + 1]
        lpp = BY_CODE.get(code)
        if lpp is None:
            raise Rejected(
                f"CayenneLPP frame has unknown type 0x{code:02x} ({code}) at byte {at + 1}, channel {channel}"
            )
        start = at + 2
        if start + lpp.size > len(payload):
            raise Rejected(
                f"CayenneLPP frame truncated at byte {start}: {lpp.name} (type {code}) on channel {channel} "
                f"needs {lpp.size} bytes, {len(payload) - start} left"
            )
        measures[f"{lpp.name}_{channel}"] = _read(lpp, payload, start)
        at = start + lpp.size
    return measures


def _read(lpp: LppType, payload: bytes, at: int) -> Any:
    values: dict[str, int | float] = {}
    for part in lpp.parts:
        raw = int.from_bytes(payload[at : at + part.size], "big", signed=part.signed)
        at += part.size
        value = raw if part.divisor == 1 else raw / part.divisor
        if part.key is None:
            return value
        values[part.key] = value
    return values


def encode(measures: Mapping[str, Any]) -> bytes:
    """The CayenneLPP frame of flat-named measures (for tests and the simulator); ValueError if not encodable.

    Values are rounded to the type's resolution (temperature to 0.1, analog to 0.01...).
    """
    out = bytearray()
    for name, value in measures.items():
        lpp, channel = _split_name(name)
        out += bytes((channel, lpp.code))
        for part in lpp.parts:
            out += _write(part, name, _component(lpp, part, name, value))
    return bytes(out)


def _split_name(name: str) -> tuple[LppType, int]:
    prefix, _, channel = name.rpartition("_")
    lpp = BY_NAME.get(prefix)
    if lpp is None or not channel.isdigit() or not 0 <= int(channel) <= 255:
        raise ValueError(f"{name!r} is not <CayenneLPP type>_<channel 0-255>")
    return lpp, int(channel)


def _component(lpp: LppType, part: Part, name: str, value: Any) -> Any:
    if part.key is None:
        return value
    if not isinstance(value, Mapping) or part.key not in value:
        keys = ", ".join(str(p.key) for p in lpp.parts)
        raise ValueError(f"{name}: expected an object with {keys}")
    return value[part.key]


def _write(part: Part, name: str, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not a finite number")
    raw = round(value * part.divisor)
    bits = part.size * 8
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if part.signed else (0, (1 << bits) - 1)
    if not low <= raw <= high:
        raise ValueError(f"{name}: {value!r} is outside {low / part.divisor}..{high / part.divisor}")
    return raw.to_bytes(part.size, "big", signed=part.signed)


def is_chirpstack_shaped(obj: Any) -> bool:
    """True when a ChirpStack ``object`` is what its CayenneLPP codec makes: {type: {channel: value}}."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(
        key in BY_CHIRPSTACK
        and isinstance(channels, Mapping)
        and all(isinstance(ch, str) and ch.isdigit() for ch in channels)
        for key, channels in obj.items()
    )


def from_chirpstack(obj: Mapping[str, Any]) -> Measures:
    """ChirpStack v4's CayenneLPP object, flat-named: {"analogInput": {"1": x}} -> {"analog_in_1": x}."""
    if not is_chirpstack_shaped(obj):
        raise Rejected("ChirpStack object is not a CayenneLPP object ({type: {channel: value}})")
    measures: Measures = {}
    for key, channels in obj.items():
        lpp = BY_CHIRPSTACK[key]
        for channel, value in channels.items():
            measures[f"{lpp.name}_{int(channel)}"] = value
    return measures
