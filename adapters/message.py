"""What every southbound family produces: a DeviceMessage, and the error that sends one to dead letters.

The flow of one uplink:
    transport (MQTT message, HTTP webhook)                         adapters/mqtt.py, adapters/http.py
    -> family parser: raw bytes + topic/URL -> DeviceMessage      adapters/iotagent.py, lorawan.py, sigfox.py
    -> provisioning: which device, tenant, mapping, codec, model  adapters/provisioning/
    -> codec: payload bytes -> measures                           adapters/codecs/
    -> model: measures -> Smart Data Model entities (EntityUpdate) adapters/models/
    -> validate against schemas/                                  adapters/validate.py
    -> broker ingest (one transaction per micro-batch)            adapters/pipeline.py
Any step may raise Rejected; the pipeline then writes a dead letter with the raw message and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, quote


class Family(StrEnum):
    """The families a message can come from; a dead letter records it so a replay parses it the same
    way, and a device's protocol names the one it sends with."""

    IOTA_JSON = "iota-json"
    IOTA_UL = "iota-ul"
    TTS = "tts"
    CHIRPSTACK = "chirpstack"
    SIGFOX = "sigfox"


# The members under the short names the parsers, models and commands use.
IOTA_JSON, IOTA_UL, TTS = Family.IOTA_JSON, Family.IOTA_UL, Family.TTS
CHIRPSTACK, SIGFOX = Family.CHIRPSTACK, Family.SIGFOX
FAMILIES = tuple(Family)

# Measures as decoded: attribute or object_id -> value (number, string, bool, list or JSON object).
Measures = dict[str, Any]


class Rejected(Exception):
    """A message that cannot be accepted; ``reason`` is one sentence an operator can act on."""

    def __init__(self, reason: str, *, device: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.device = device


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """One uplink as the network delivered it, before provisioning is consulted.

    ``measures`` holds what the gateway or network server already decoded (IoT Agent JSON or
    UltraLight attributes, TTS decoded_payload, ChirpStack object), one dict per measurement
    (an IoT Agent multimeasure gives several); ``payload`` holds the raw bytes (frm_payload,
    ChirpStack data, Sigfox data) for the device's codec when nothing was decoded or the device
    asks for its own codec.
    """

    family: Family
    # Topic or URL path (with query) the message arrived on: kept in dead letters for a replay.
    origin: str
    device_id: str
    received_at: datetime
    # IoT Agent families: the service group key; LoRaWAN/Sigfox: None.
    apikey: str | None = None
    # LoRaWAN DevEUI, lower-case hex, when the network gives it.
    dev_eui: str | None = None
    # The tenant the transport names (fiware-service header, TTS tenant, ChirpStack tenant), if any.
    tenant: str | None = None
    service_path: str | None = None
    # Redelivery key within the device: LoRaWAN frame counter, Sigfox seqNumber, or a message id.
    frame: str | None = None
    # When the device or network says the measurement was taken (UTC); None: use received_at.
    observed_at: datetime | None = None
    measures: list[Measures] = field(default_factory=list)
    payload: bytes | None = None
    port: int | None = None
    # Link metadata: rssi, snr, gateway id and location when given.
    radio: dict[str, Any] = field(default_factory=dict)
    # Sigfox BIDIR: the network waits for a downlink in the HTTP reply.
    wants_reply: bool = False


def to_utc(value: Any, *, where: str = "time") -> datetime:
    """A time as sent by a gateway, as an aware UTC datetime.

    Accepts ISO 8601 with an offset ('2025-09-01T10:00:00+09:00'), with Z or nanoseconds
    (TTS, ChirpStack), without offset (taken as UTC), and epoch seconds or milliseconds as a
    number or a numeric string. Raises Rejected otherwise.
    """
    if isinstance(value, bool):
        raise Rejected(f"{where} {value!r} is not a time")
    if isinstance(value, str) and _is_number(value):
        value = float(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise Rejected(f"{where} {value!r} is not a time")
        seconds = value / 1000 if abs(value) >= 100_000_000_000 else value
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
        except OverflowError:
            raise Rejected(f"{where} {value!r} is out of range") from None
    if not isinstance(value, str):
        raise Rejected(f"{where} {value!r} is not a time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    text = _trim_fraction(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Rejected(f"{where} {value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _trim_fraction(text: str) -> str:
    """Cut fractional seconds to microseconds (TTS and ChirpStack send nanoseconds)."""
    dot = text.find(".", 19)
    if dot < 0:
        return text
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    digits = text[dot + 1 : end][:6]
    return text[: dot + 1] + (digits or "0") + text[end:]


# --- what the log may show of an origin --------------------------------------------------------

_IOTA_PREFIXES = ("json", "ul")
_IOTA_KINDS = ("attrs", "cmdexe")


def origin_apikey(origin: str) -> str | None:
    """The IoT Agent apikey an origin carries (``?k=`` of an HTTP path, a topic's segment), if any."""
    path, _, query = origin.partition("?")
    if query:
        params = parse_qs(query, keep_blank_values=True)
        for name in ("k", "apikey"):
            if params.get(name, [""])[0]:
                return params[name][0]
        return None
    parts = path.split("/")
    if len(parts) >= 5 and parts[0] == "" and parts[1] in _IOTA_PREFIXES:
        return parts[2] or None
    if len(parts) >= 4 and parts[0] == "" and parts[3] in _IOTA_KINDS:
        return parts[1] or None
    return None


def for_log(text: str, origin: str) -> str:
    """``text`` (the origin itself, or a reason about its message) with the origin's apikey as ***.

    API keys never reach the log: a gateway's key is a credential; the dead letter keeps it whole.
    """
    apikey = origin_apikey(origin)
    if apikey is None:
        return text
    for before, after in (("/", "/"), ("=", ""), ("'", "'"), ('"', '"')):
        text = text.replace(f"{before}{apikey}{after}", f"{before}***{after}")
    text = text.replace(f"={quote(apikey)}", "=***")
    return text
