"""Declared binary layouts: fixed fields of a raw frame (e.g. a 12-byte Sigfox frame) as measures.

A device's provisioning declares each field (adapters.device.LayoutField): where it sits, how
long it is, signed or not, byte order, an optional bit field, and ``value = raw * scale + add``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, Literal

from adapters.device import LayoutField
from adapters.message import Measures, Rejected

KINDS = ("int", "float", "bool", "hex")


def decode(payload: bytes, fields: Sequence[LayoutField]) -> Measures:
    """The measures of ``payload`` per ``fields``; Rejected if the frame is shorter than a field needs."""
    if not fields:
        raise Rejected("the device's binary layout declares no fields")
    return {spec.name: _field(payload, spec) for spec in fields}


def _field(payload: bytes, spec: LayoutField) -> Any:
    _check(spec)
    end = spec.offset + spec.length
    if end > len(payload):
        raise Rejected(
            f"frame of {len(payload)} bytes is shorter than the layout: "
            f"field {spec.name!r} needs bytes {spec.offset}..{end - 1}"
        )
    chunk = payload[spec.offset : end]
    if spec.kind == "hex":
        return chunk.hex()
    if spec.kind == "float":
        number: float = struct.unpack(">f" if spec.length == 4 else ">d", _big_endian(chunk, spec))[0]
        if not math.isfinite(number):
            raise Rejected(f"field {spec.name!r} is {number} (not a finite number)")
        return _scaled(number, spec)
    raw = _integer(chunk, spec)
    if spec.kind == "bool":
        return raw != 0
    return _scaled(raw, spec)


def _check(spec: LayoutField) -> None:
    """A layout the provisioning let through but that cannot be read: the operator fixes the mapping."""
    problem = None
    if spec.kind not in KINDS:
        problem = f"kind {spec.kind!r} is not one of {', '.join(KINDS)}"
    elif spec.offset < 0 or spec.length < 1:
        problem = f"offset {spec.offset} and length {spec.length} do not name bytes"
    elif spec.kind == "float" and spec.length not in (4, 8):
        problem = f"a float is 4 or 8 bytes long, not {spec.length}"
    elif spec.bits is not None and (
        spec.bits[0] < 0 or spec.bits[1] < 1 or spec.bits[0] + spec.bits[1] > spec.length * 8
    ):
        problem = f"bits {spec.bits} do not fit in {spec.length} bytes"
    if problem is not None:
        raise Rejected(f"layout field {spec.name!r}: {problem}")


def _big_endian(chunk: bytes, spec: LayoutField) -> bytes:
    return chunk if spec.big_endian else chunk[::-1]


def _integer(chunk: bytes, spec: LayoutField) -> int:
    order: Literal["big", "little"] = "big" if spec.big_endian else "little"
    if spec.bits is None:
        return int.from_bytes(chunk, order, signed=spec.signed)
    first, count = spec.bits
    raw = (int.from_bytes(chunk, order) >> first) & ((1 << count) - 1)
    if spec.signed and count > 1 and raw >> (count - 1):
        raw -= 1 << count
    return raw


def _scaled(raw: float, spec: LayoutField) -> int | float:
    """``raw * scale + add``, dividing when the scale is 1/n so 0.1 steps print as 0.1 steps."""
    if spec.scale == 1 and spec.add == 0:
        return raw
    inverse = 1 / spec.scale if spec.scale else 0.0
    if inverse and abs(inverse) > 1 and abs(inverse - round(inverse)) < 1e-9:
        value = raw / round(inverse)
    else:
        value = raw * spec.scale
    return value + spec.add if spec.add else value
