"""Sigfox backend URL callbacks (DATA/UPLINK and DATA/BIDIR) and the BIDIR reply.

The callback body is a template the operator writes in the Sigfox backend, so variables arrive as
text unless left unquoted: the body may be JSON or form-encoded (or, for a GET callback, the
query string), and numbers may be strings. Fields: device (hex id, up to 8 digits), time (epoch
seconds), data (hex, up to 12 bytes), seqNumber, ack (BIDIR: the network waits for a downlink in
the reply), and with the network metadata option rssi, snr, station; deviceTypeId.

The redelivery key is ``<seqNumber>:<time>``: seqNumber is 12 bits and wraps every 4096
messages (four weeks at one message per 10 minutes), the time tells the wraps apart, and a
callback the backend retries repeats both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from adapters.codecs import fields as f
from adapters.message import SIGFOX, DeviceMessage, Rejected, to_utc

MAX_DATA = 12  # bytes in an uplink frame
DOWNLINK_BYTES = 8  # exactly, in a BIDIR reply
_HEX = frozenset("0123456789abcdefABCDEF")


def parse(origin: str, body: bytes, received_at: datetime) -> DeviceMessage:
    """A Sigfox callback (URL path with query as origin, body JSON or form) as a DeviceMessage."""
    params = _params(origin, body)
    device = f.text(params, "device", "", required=True)
    if device is None or len(device) > 8 or not set(device) <= _HEX:
        raise Rejected(f"device {device!r} is not a Sigfox device id (up to 8 hex digits)")
    with f.about_device(device.upper()):
        return _message(origin, params, device.upper(), received_at)


def _message(origin: str, params: dict[str, Any], device: str, received_at: datetime) -> DeviceMessage:
    data = params.get("data")
    if not isinstance(data, str):
        raise Rejected("data is missing" if data is None else f"data {data!r} is not a hex string")
    stamp = params.get("time")
    observed_at = to_utc(stamp, where="time") if stamp not in (None, "") else None
    sequence = f.integer(params, "seqNumber", "")
    frame = None
    if sequence is not None:
        frame = f"{sequence}:{int(observed_at.timestamp())}" if observed_at else str(sequence)
    radio: dict[str, Any] = {
        "rssi": f.number(params, "rssi", ""),
        "snr": f.number(params, "snr", ""),
        "gateway_id": f.text(params, "station", ""),
        "sigfox_device_type_id": f.text(params, "deviceTypeId", ""),
    }
    return DeviceMessage(
        family=SIGFOX,
        origin=origin,
        device_id=device,
        received_at=received_at,
        frame=frame,
        observed_at=observed_at,
        payload=f.hex_bytes(data, "data", max_bytes=MAX_DATA),
        radio={key: value for key, value in radio.items() if value is not None},
        wants_reply=_flag(params.get("ack"), "ack"),
    )


def _params(origin: str, body: bytes) -> dict[str, Any]:
    """The callback's variables: a JSON object, a form, or the query of a body-less (GET) callback."""
    stripped = body.strip()
    if stripped.startswith(b"{"):
        return f.json_object(stripped, "Sigfox callback body")
    if stripped.startswith(b"[") or stripped.startswith(b'"'):
        raise Rejected("Sigfox callback body is not a JSON object")
    text = stripped.decode("utf-8", errors="replace") if stripped else urlsplit(origin).query
    try:
        form = parse_qs(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise Rejected(f"Sigfox callback body is neither JSON nor a form: {text[:60]!r}") from None
    return {key: values[-1] for key, values in form.items()}


def _flag(value: Any, where: str) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Rejected(f"{where} {value!r} is not true or false")


def bidir_reply(device: str, downlink: bytes | None) -> tuple[int, bytes | None]:
    """The HTTP status and body answering a BIDIR callback: 204 without a downlink, else its 8 bytes."""
    if downlink is None:
        return 204, None
    if len(downlink) != DOWNLINK_BYTES:
        raise ValueError(f"a Sigfox downlink is exactly {DOWNLINK_BYTES} bytes, not {len(downlink)}")
    return 200, orjson.dumps({device: {"downlinkData": downlink.hex()}})
