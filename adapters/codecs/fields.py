"""Reading the fields of a network server's JSON message, each failure a Rejected naming the field.

The family parsers (adapters/lorawan.py, adapters/sigfox.py) share these so every malformed
message says which field is wrong, e.g. "uplink_message.f_cnt 'x' is not an integer".
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson

from adapters.message import Rejected

_INTEGER = re.compile(r"[+-]?[0-9]+")


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """The body as a JSON object."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Rejected(f"{what} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise Rejected(f"{what} is not a JSON object")
    return document


def obj(parent: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> dict[str, Any]:
    """A nested object ({} when absent and not required)."""
    value = parent.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Rejected(f"{where}{key} is {'missing' if value is None else 'not an object'}")
    return value


def text(parent: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = parent.get(key)
    if value is None or value == "":
        if required:
            raise Rejected(f"{where}{key} is missing")
        return None
    if not isinstance(value, str):
        raise Rejected(f"{where}{key} {value!r} is not a string")
    return value


def integer(parent: Mapping[str, Any], key: str, where: str) -> int | None:
    """An integer, also from a numeric string (Sigfox templates, protobuf-JSON 64-bit numbers)."""
    value = parent.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise Rejected(f"{where}{key} {value!r} is not an integer")


def number(parent: Mapping[str, Any], key: str, where: str) -> float | None:
    """A finite number, also from a numeric string."""
    value = parent.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise Rejected(f"{where}{key} {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Rejected(f"{where}{key} {value!r} is not a number")
    return value


def b64(parent: Mapping[str, Any], key: str, where: str) -> bytes | None:
    value = text(parent, key, where)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(f"{where}{key} {value[:40]!r} is not base64") from None


def hex_bytes(value: str, where: str, *, max_bytes: int | None = None) -> bytes:
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise Rejected(f"{where} {value[:40]!r} is not hex") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise Rejected(f"{where} is {len(data)} bytes long, more than {max_bytes}")
    return data


def eui(value: str, where: str) -> str:
    """A 64-bit EUI as 16 lower-case hex digits."""
    if len(value) != 16 or not all(c in "0123456789abcdefABCDEF" for c in value):
        raise Rejected(f"{where} {value[:40]!r} is not a 16-hex-digit EUI")
    return value.lower()


def location(value: Any, where: str) -> dict[str, float] | None:
    """A gateway location {latitude, longitude[, altitude]}; None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Rejected(f"{where} is not an object")
    out: dict[str, float] = {}
    for key in ("latitude", "longitude", "altitude"):
        found = number(value, key, f"{where}.")
        if found is not None:
            out[key] = found
    return out or None


@contextmanager
def about_device(device: str) -> Iterator[None]:
    """Rejections inside name ``device``, so the dead letter is listed under it."""
    try:
        yield
    except Rejected as rejected:
        if rejected.device is not None:
            raise
        raise Rejected(rejected.reason, device=device) from None
