"""LoRaWAN network servers: The Things Stack v3 and ChirpStack v4 uplinks, and their downlinks.

The Things Stack: MQTT topic v3/{application id}@{tenant id}/devices/{device id}/up (no @tenant
on an open-source TTS), and the same JSON posted by its webhook. ChirpStack v4: MQTT topic
application/{application id}/device/{DevEUI}/event/{up|status|join|...}, and its HTTP
integration (?event=up). Both omit fields at their zero value (f_cnt / fCnt 0 is absent).

What a message becomes: the network's decoded payload as measures (a ChirpStack CayenneLPP
object converted to TTS's flat naming), the raw frame as payload for the device's own codec,
the best gateway's rssi/snr/id/location as radio. The redelivery key (issue 11 defect 3) tells a
redelivery from another reading, never a constant: the frame counter plus the network's id of
that uplink (TTS "as:up:" correlation id, ChirpStack deduplicationId); without an id, the counter
plus the time the network server received the uplink (the same in every redelivery, another
after a rejoin resets the counter); without either (a TTS webhook field mask), the counter plus
a digest of the payload within a window of the time we received it, so a counter that goes back
to a value it had in an earlier window starts a new session instead of being taken for a repeat.
TTS's float32 artifacts are tidied (see _tidy). Other events (join, ack, downlink status...) are
ignored (None). A ChirpStack status event with a battery level gives the measure
``batteryLevel`` as a fraction 0..1 (ChirpStack sends percent); a device on external power, or
one that cannot measure, gives nothing.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from adapters.codecs import cayenne
from adapters.codecs import fields as f
from adapters.message import CHIRPSTACK, TTS, DeviceMessage, Measures, Rejected, to_utc

# MQTT subscriptions: uplinks only (TTS publishes joins and downlink events on their own topics).
TTS_TOPICS: tuple[str, ...] = ("v3/+/devices/+/up",)
CHIRPSTACK_TOPICS: tuple[str, ...] = (
    "application/+/device/+/event/up",
    "application/+/device/+/event/status",
)

# Keys in DeviceMessage.radio naming what a downlink needs besides the device.
TTS_APPLICATION = "tts_application_id"
CHIRPSTACK_APPLICATION = "chirpstack_application_id"


# --- The Things Stack v3 -------------------------------------------------------------------------


def parse_tts(origin: str, body: bytes, received_at: datetime) -> DeviceMessage | None:
    """A TTS uplink (MQTT topic or webhook path as origin); None for other message types."""
    topic = _tts_topic(origin)
    if topic is not None and topic[3] != "up":
        return None
    message = f.json_object(body, "TTS message")
    ids = f.obj(message, "end_device_ids", "", required=True)
    device = str(f.text(ids, "device_id", "end_device_ids.", required=True))
    if "uplink_message" not in message and topic is None:
        return None  # a webhook's join_accept, downlink_ack...: nothing to store
    with f.about_device(device):
        return _tts_uplink(origin, topic, message, device, received_at)


def _tts_uplink(
    origin: str,
    topic: tuple[str, str | None, str, str] | None,
    message: dict[str, Any],
    device: str,
    received_at: datetime,
) -> DeviceMessage:
    ids = message["end_device_ids"]
    uplink = f.obj(message, "uplink_message", "", required=True)
    application = f.text(f.obj(ids, "application_ids", "end_device_ids."), "application_id", "")
    tenant = f.text(
        f.obj(uplink, "network_ids", "uplink_message."), "tenant_id", "uplink_message.network_ids."
    )
    if topic is not None:
        if topic[2] != device:
            raise Rejected(f"end_device_ids.device_id {device!r} is not the topic's device {topic[2]!r}")
        application, tenant = topic[0], topic[1] or tenant
    dev_eui = f.text(ids, "dev_eui", "end_device_ids.")
    counter = f.integer(uplink, "f_cnt", "uplink_message.")
    time_field = "uplink_message.received_at" if uplink.get("received_at") else "received_at"
    time = f.text(uplink, "received_at", "uplink_message.") or f.text(message, "received_at", "")
    radio = _best_gateway(uplink.get("rx_metadata"), "uplink_message.rx_metadata", _tts_gateway)
    if application:
        radio[TTS_APPLICATION] = application
    return DeviceMessage(
        family=TTS,
        origin=origin,
        device_id=device,
        received_at=received_at,
        dev_eui=f.eui(dev_eui, "end_device_ids.dev_eui") if dev_eui else None,
        tenant=tenant,
        frame=_frame(
            counter,
            _tts_uplink_id(message.get("correlation_ids")),
            time,
            _digest(uplink.get("frm_payload"), uplink.get("decoded_payload")),
            received_at,
        ),
        observed_at=to_utc(time, where=time_field) if time else None,
        measures=[
            _tidy(m) for m in _decoded(uplink.get("decoded_payload"), "uplink_message.decoded_payload")
        ],
        payload=f.b64(uplink, "frm_payload", "uplink_message."),
        port=f.integer(uplink, "f_port", "uplink_message."),
        radio=radio,
    )


def _tts_topic(origin: str) -> tuple[str, str | None, str, str] | None:
    """(application, tenant, device, event) of a v3/... topic; None for a webhook path."""
    parts = origin.split("/")
    if len(parts) < 5 or parts[0] != "v3" or parts[2] != "devices":
        return None
    application, _, tenant = parts[1].partition("@")
    return application, tenant or None, parts[3], "/".join(parts[4:])


def _tts_uplink_id(correlation_ids: Any) -> str | None:
    if isinstance(correlation_ids, list):
        for cid in correlation_ids:
            if isinstance(cid, str) and cid.startswith("as:up:"):
                return cid.removeprefix("as:up:")
    return None


def _tts_gateway(item: dict[str, Any], where: str) -> dict[str, Any]:
    ids = f.obj(item, "gateway_ids", where)
    return {
        "rssi": f.number(item, "rssi", where),
        "snr": f.number(item, "snr", where),
        "gateway_id": f.text(ids, "gateway_id", f"{where}gateway_ids."),
        "gateway_location": f.location(item.get("location"), f"{where}location"),
    }


# --- ChirpStack v4 -------------------------------------------------------------------------------


def parse_chirpstack(origin: str, body: bytes, received_at: datetime) -> DeviceMessage | None:
    """A ChirpStack event (MQTT topic, or HTTP path with ?event=) as a DeviceMessage; None if ignored."""
    topic = _chirpstack_topic(origin)
    event = topic[2] if topic else parse_qs(urlsplit(origin).query).get("event", ["up"])[0]
    if event not in ("up", "status"):
        return None
    message = f.json_object(body, "ChirpStack event")
    info = f.obj(message, "deviceInfo", "", required=True)
    dev_eui = f.eui(str(f.text(info, "devEui", "deviceInfo.", required=True)), "deviceInfo.devEui")
    with f.about_device(dev_eui):
        return _chirpstack_event(origin, topic, event, message, dev_eui, received_at)


def _chirpstack_event(
    origin: str,
    topic: tuple[str, str, str] | None,
    event: str,
    message: dict[str, Any],
    dev_eui: str,
    received_at: datetime,
) -> DeviceMessage | None:
    info = message["deviceInfo"]
    application = f.text(info, "applicationId", "deviceInfo.")
    if topic is not None:
        if topic[1].lower() != dev_eui:
            raise Rejected(f"deviceInfo.devEui {dev_eui} is not the topic's DevEUI {topic[1]!r}")
        application = topic[0]
    time = f.text(message, "time", "")
    dedup = f.text(message, "deduplicationId", "")
    if event == "status":
        battery = _battery(message)
        if battery is None:
            return None
        frame, measures, radio = (f"status:{dedup}" if dedup else None), [battery], {}
    else:
        frame = _frame(
            f.integer(message, "fCnt", ""),
            dedup,
            time or _ns_time(message.get("rxInfo")),
            _digest(message.get("data"), message.get("object")),
            received_at,
        )
        measures = _chirpstack_measures(message.get("object"))
        radio = _best_gateway(message.get("rxInfo"), "rxInfo", _chirpstack_gateway)
        if application:
            radio[CHIRPSTACK_APPLICATION] = application
    return DeviceMessage(
        family=CHIRPSTACK,
        origin=origin,
        device_id=dev_eui,
        received_at=received_at,
        dev_eui=dev_eui,
        tenant=f.text(info, "tenantId", "deviceInfo."),
        frame=frame,
        observed_at=to_utc(time, where="time") if time else None,
        measures=measures,
        payload=f.b64(message, "data", "") if event == "up" else None,
        port=f.integer(message, "fPort", "") if event == "up" else None,
        radio=radio,
    )


def _chirpstack_topic(origin: str) -> tuple[str, str, str] | None:
    """(application id, DevEUI, event) of an application/... topic; None for an HTTP path."""
    parts = origin.split("/")
    if len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or parts[4] != "event":
        return None
    return parts[1], parts[3], parts[5]


def _chirpstack_measures(obj: Any) -> list[Measures]:
    if obj is not None and cayenne.is_chirpstack_shaped(obj):
        return [cayenne.from_chirpstack(obj)]
    return _decoded(obj, "object")


def _battery(message: dict[str, Any]) -> Measures | None:
    if message.get("batteryLevelUnavailable") or message.get("externalPowerSource"):
        return None
    level = f.number(message, "batteryLevel", "")
    if level is None:
        return None
    if not 0 <= level <= 100:
        raise Rejected(f"batteryLevel {level} is not a percentage")
    return {"batteryLevel": level / 100}


def _chirpstack_gateway(item: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        "rssi": f.number(item, "rssi", where),
        "snr": f.number(item, "snr", where),
        "gateway_id": f.text(item, "gatewayId", where),
        "gateway_location": f.location(item.get("location"), f"{where}location"),
    }


def _tidy(value: Any) -> Any:
    """TTS's CayenneLPP formatter widens float32 to double (27.2 arrives as 27.200000762939453):
    a number that is exactly a float32 becomes the shortest decimal of that float32. A double
    that is not a float32 (from a JavaScript formatter) is left as it is."""
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        try:
            packed = struct.pack(">f", value)
        except OverflowError:
            return value
        if struct.unpack(">f", packed)[0] == value:
            for digits in range(1, 10):
                shorter = float(f"{value:.{digits}g}")
                if struct.pack(">f", shorter) == packed:
                    return shorter
        return value
    if isinstance(value, dict):
        return {key: _tidy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tidy(item) for item in value]
    return value


# How one gateway's metadata is read: rssi, snr, gateway_id, gateway_location (None when absent).
_Reader = Callable[[dict[str, Any], str], dict[str, Any]]


# --- shared --------------------------------------------------------------------------------------


# Without a network id or time, a repeat of the same counter and payload within this many seconds
# of the first is a redelivery: longer than a network server's retries, shorter than the time a
# counter reset takes to come back to the same value. Without a counter either (a field mask
# leaves only the decoded payload) the window is short, since a steady reading repeats its payload.
_WINDOW_WITH_COUNTER = 3600
_WINDOW_WITHOUT_COUNTER = 60


def _frame(
    counter: int | None, uplink_id: str | None, network_time: str | None, digest: str, received_at: datetime
) -> str:
    """The uplink's redelivery key (see the module docstring); f_cnt / fCnt 0 is omitted on the wire."""
    number = counter or 0
    if uplink_id:
        return f"{number}:{uplink_id}"
    if network_time:
        return f"{number}@{network_time}"
    window = _WINDOW_WITH_COUNTER if counter is not None else _WINDOW_WITHOUT_COUNTER
    return f"{number}#{digest}@{int(received_at.timestamp()) // window * window}"


def _digest(payload: Any, decoded: Any) -> str:
    """A short digest of what the uplink carries (its raw frame, else what the network decoded)."""
    if isinstance(payload, str):
        data = payload.encode()
    else:
        try:
            data = orjson.dumps(decoded, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            data = repr(decoded).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _ns_time(rx_info: Any) -> str | None:
    """When ChirpStack's network server received the uplink (rxInfo[].nsTime), if it says."""
    if isinstance(rx_info, list):
        for item in rx_info:
            if isinstance(item, dict) and isinstance(item.get("nsTime"), str):
                return str(item["nsTime"])
    return None


def _decoded(value: Any, where: str) -> list[Measures]:
    """What the network decoded, as one measurement ([] when it decoded nothing)."""
    if value is None or value == {}:
        return []
    if not isinstance(value, dict):
        raise Rejected(f"{where} is not an object")
    return [value]


def _best_gateway(items: Any, where: str, read: _Reader) -> dict[str, Any]:
    """The link metadata of the gateway that heard the uplink best (highest rssi), and how many did."""
    if items is None:
        return {}
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise Rejected(f"{where} is not an array of objects")
    heard = [read(item, f"{where}[{index}].") for index, item in enumerate(items)]
    if not heard:
        return {}
    best = max(heard, key=lambda g: g["rssi"] if g["rssi"] is not None else float("-inf"))
    radio = {key: value for key, value in best.items() if value is not None}
    radio["gateways"] = len(heard)
    return radio


# --- downlinks -----------------------------------------------------------------------------------


def tts_downlink(
    application: str,
    tenant: str | None,
    device: str,
    port: int,
    payload: bytes,
    *,
    priority: str = "NORMAL",
    confirmed: bool = False,
) -> tuple[str, bytes]:
    """The MQTT topic and body that queue a downlink on The Things Stack (push: after others)."""
    _check_port(port)
    owner = f"{application}@{tenant}" if tenant else application
    downlink: dict[str, Any] = {
        "f_port": port,
        "frm_payload": base64.b64encode(payload).decode(),
        "priority": priority,
    }
    if confirmed:
        downlink["confirmed"] = True
    return f"v3/{owner}/devices/{device}/down/push", orjson.dumps({"downlinks": [downlink]})


def chirpstack_downlink(
    application: str, dev_eui: str, port: int, payload: bytes, *, confirmed: bool = False
) -> tuple[str, bytes]:
    """The MQTT topic and body that enqueue a downlink on ChirpStack v4."""
    _check_port(port)
    body = {
        "devEui": dev_eui.lower(),
        "confirmed": confirmed,
        "fPort": port,
        "data": base64.b64encode(payload).decode(),
    }
    return f"application/{application}/device/{dev_eui.lower()}/command/down", orjson.dumps(body)


def _check_port(port: int) -> None:
    if not 1 <= port <= 223:
        raise ValueError(f"LoRaWAN application port {port} is not in 1..223")
