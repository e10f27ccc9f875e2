"""Codecs: a device's raw payload bytes as measures (CayenneLPP, UltraLight 2.0, JSON, binary layouts).

``decode`` is what the pipeline calls with the codec a device's provisioning names
(adapters.device.CODECS); each codec module is pure and raises Rejected for a bad payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from adapters.codecs import cayenne, layout, ultralight
from adapters.device import CAYENNE, CODECS, JSON, LAYOUT, ULTRALIGHT, LayoutField
from adapters.message import Measures, Rejected

__all__ = ["decode", "decode_json", "measures_of"]


def decode(codec: str, payload: bytes, fields: Sequence[LayoutField] = ()) -> list[Measures]:
    """The measurements in ``payload`` (one dict each) per the device's codec; Rejected if it cannot."""
    if codec == CAYENNE:
        return [cayenne.decode(payload)]
    if codec == ULTRALIGHT:
        return ultralight.parse(_text(payload, "UltraLight"))
    if codec == JSON:
        return decode_json(payload)
    if codec == LAYOUT:
        return [layout.decode(payload, fields)]
    raise Rejected(f"codec {codec!r} is not one of {', '.join(CODECS)}")


def decode_json(payload: bytes) -> list[Measures]:
    """A JSON payload: an object is one measurement, an array of objects several (IoT Agent multimeasure)."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise Rejected(f"payload is not JSON: {error}") from None
    return measures_of(document, "JSON payload")


def measures_of(document: Any, what: str) -> list[Measures]:
    """An object or a non-empty array of objects as measurements; Rejected naming ``what`` otherwise."""
    if isinstance(document, dict):
        if not document:
            raise Rejected(f"{what} is an empty object: no measures")
        return [document]
    if isinstance(document, list) and document:
        for index, item in enumerate(document):
            if not isinstance(item, dict) or not item:
                raise Rejected(
                    f"{what}: item {index} of the array is {_kind(item)}, not an object of measures"
                )
        return list(document)
    raise Rejected(f"{what} is {_kind(document)}, not an object or an array of objects")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an empty object" if not value else "an object"
    if isinstance(value, list):
        return "an empty array" if not value else "an array"
    if value is None:
        return "null"
    kind = "boolean" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"
    return f"a {kind} ({str(value)[:40]!r})"


def _text(payload: bytes, what: str) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected(f"{what} payload is not UTF-8 text (byte {error.start})") from None
