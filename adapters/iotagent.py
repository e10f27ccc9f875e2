"""The FIWARE IoT Agent JSON and UltraLight 2.0 wire conventions, so existing gateways only change URL.

MQTT (publish to the broker the adapter subscribes to):
    /json/<apikey>/<device>/attrs          JSON object, or an array of objects (multimeasure)
    /json/<apikey>/<device>/attrs/<attr>   one value (JSON, else the text itself)
    /ul/<apikey>/<device>/attrs            UltraLight 2.0 ``t|15|h|45#...``
    /ul/<apikey>/<device>/attrs/<attr>     one UL value
    /<apikey>/<device>/attrs[/<attr>]      the agents' legacy topics: JSON when the body is a JSON
                                           object or array, else UltraLight
    .../cmdexe                             a command's result: JSON {"<cmd>": result}, UL
                                           ``<device>@<cmd>|<result>``
HTTP: POST /iot/json?k=<apikey>&i=<device>[&t=<time>] (JSON), POST /iot/json/commands?k=&i= (JSON
command result), POST /iot/d?k=&i=[&t=] (UL measures, or a UL command result).

A measurement's time: a ``TimeInstant`` measure (rewritten as UTC ISO 8601), else the ``t``
query parameter; gateways may send local times with an offset or epoch seconds. A command result
becomes the measures ``<cmd>_status`` ("OK") and ``<cmd>_info`` (the result), the attributes the
IoT Agents maintain for a command.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import orjson

from adapters.codecs import measures_of, ultralight
from adapters.codecs.fields import about_device
from adapters.message import IOTA_JSON, IOTA_UL, DeviceMessage, Family, Measures, Rejected, to_utc

ATTRS = "attrs"
CMDEXE = "cmdexe"
TIME_INSTANT = "TimeInstant"

# What the MQTT client subscribes to (add a $share/<group>/ prefix to split the load), per family
# (adapters/topics.py picks them by NGSI_MQTT_FAMILIES). The legacy topics carry both families.
JSON_TOPICS: tuple[str, ...] = ("/json/+/+/attrs", "/json/+/+/attrs/+", "/json/+/+/cmdexe")
UL_TOPICS: tuple[str, ...] = ("/ul/+/+/attrs", "/ul/+/+/attrs/+", "/ul/+/+/cmdexe")
LEGACY_TOPICS: tuple[str, ...] = ("/+/+/attrs", "/+/+/attrs/+", "/+/+/cmdexe")
TOPICS: tuple[str, ...] = (*JSON_TOPICS, *UL_TOPICS, *LEGACY_TOPICS)
_PREFIXES = {"json": IOTA_JSON, "ul": IOTA_UL}


class Route(NamedTuple):
    """What an IoT Agent topic says: ``family`` None on legacy topics (the payload decides)."""

    kind: str  # ATTRS or CMDEXE
    family: Family | None
    apikey: str
    device: str
    attr: str | None


def classify(topic: str) -> Route:
    """The kind, family, apikey, device and attribute an IoT Agent topic names; Rejected if none."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[0] == "" and parts[1] in _PREFIXES:
        route = _route(_PREFIXES[parts[1]], parts[2:])
        if route is not None:
            return route
    route = _route(None, parts[1:]) if parts[0] == "" else None
    if route is None:
        raise Rejected(
            f"topic {topic!r} is not an IoT Agent topic (/[json|ul/]<apikey>/<device>/attrs|cmdexe)"
        )
    return route


def _route(family: Family | None, parts: list[str]) -> Route | None:
    if len(parts) < 3 or not parts[0] or not parts[1]:
        return None
    apikey, device, rest = parts[0], parts[1], parts[2:]
    if rest == [ATTRS]:
        return Route(ATTRS, family, apikey, device, None)
    if len(rest) == 2 and rest[0] == ATTRS and rest[1]:
        return Route(ATTRS, family, apikey, device, rest[1])
    if rest == [CMDEXE]:
        return Route(CMDEXE, family, apikey, device, None)
    return None


HTTP_PATHS = ("/iot/json", "/iot/json/commands", "/iot/d")


def parse(origin: str, body: bytes, received_at: datetime, headers: Mapping[str, str]) -> DeviceMessage:
    """A message from either transport, told apart by its origin (as a dead letter's replay needs):
    an HTTP southbound path with a query string (?k=&i=), else an MQTT topic."""
    path, query = origin.partition("?")[::2]
    if query and path.rstrip("/") in HTTP_PATHS:
        return parse_http(origin, body, received_at, headers)
    return parse_mqtt(origin, body, received_at)


def parse_mqtt(topic: str, body: bytes, received_at: datetime) -> DeviceMessage:
    """An IoT Agent MQTT message as a DeviceMessage; Rejected naming what is wrong."""
    route = classify(topic)
    family = route.family or (IOTA_JSON if _looks_like_json(body) else IOTA_UL)
    with about_device(route.device):
        if route.kind == CMDEXE:
            measures = _command_result(family, body, route.device)
        elif route.attr is not None:
            measures = [{route.attr: _single_value(family, body)}]
        else:
            measures = _measures(family, body)
        observed_at, measures = _times(measures, None)
    return DeviceMessage(
        family=family,
        origin=topic,
        device_id=route.device,
        received_at=received_at,
        apikey=route.apikey,
        observed_at=observed_at,
        measures=measures,
    )


def parse_http(origin: str, body: bytes, received_at: datetime, headers: Mapping[str, str]) -> DeviceMessage:
    """An IoT Agent HTTP southbound request (path with its query string) as a DeviceMessage."""
    url = urlsplit(origin)
    query = parse_qs(url.query, keep_blank_values=True)
    apikey, device = _param(query, "k", "apikey"), _param(query, "i", "device id")
    with about_device(device):
        family, measures = _http_measures(url.path.rstrip("/"), device, body)
        stamp = query.get("t", [None])[0]
        observed_at, measures = _times(measures, to_utc(stamp, where="query parameter t") if stamp else None)
    lower = {name.lower(): value for name, value in headers.items()}
    return DeviceMessage(
        family=family,
        origin=origin,
        device_id=device,
        received_at=received_at,
        apikey=apikey,
        tenant=lower.get("fiware-service") or None,
        service_path=lower.get("fiware-servicepath") or None,
        observed_at=observed_at,
        measures=measures,
    )


def _http_measures(path: str, device: str, body: bytes) -> tuple[Family, list[Measures]]:
    """The family and measures of a request to one of the HTTP_PATHS."""
    if path == HTTP_PATHS[0]:
        return IOTA_JSON, _measures(IOTA_JSON, body)
    if path == HTTP_PATHS[1]:
        return IOTA_JSON, _command_result(IOTA_JSON, body, device)
    if path == HTTP_PATHS[2]:
        text = _text(body)
        if text.strip().startswith(f"{device}@"):
            return IOTA_UL, _command_result(IOTA_UL, body, device)
        return IOTA_UL, ultralight.parse(text)
    raise Rejected(f"path {path!r} is not an IoT Agent southbound path (/iot/json, /iot/d)")


def _param(query: dict[str, list[str]], name: str, what: str) -> str:
    values = query.get(name)
    if not values or not values[0]:
        raise Rejected(f"query parameter {name} ({what}) is missing")
    return values[0]


def _looks_like_json(body: bytes) -> bool:
    return body.lstrip()[:1] in (b"{", b"[")


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected(f"UltraLight payload is not UTF-8 text (byte {error.start})") from None


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Rejected(f"IoT Agent JSON payload is not JSON: {error}") from None


def _measures(family: str, body: bytes) -> list[Measures]:
    if family == IOTA_JSON:
        return measures_of(_json(body), "IoT Agent JSON payload")
    return ultralight.parse(_text(body))


def _single_value(family: str, body: bytes) -> Any:
    """The value of an .../attrs/<attr> message: JSON when it parses (JSON family), else the text."""
    if family == IOTA_JSON:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    text = _text(body).strip()
    return ultralight.value_of(text) if family == IOTA_UL else text


def _command_result(family: str, body: bytes, device: str) -> list[Measures]:
    if family == IOTA_UL:
        reply = ultralight.parse_command_reply(_text(body))
        if reply.device != device:
            raise Rejected(f"command result names device {reply.device!r}, but came for device {device!r}")
        results: dict[str, Any] = {reply.command: reply.result}
    else:
        document = _json(body)
        if not isinstance(document, dict) or not document:
            raise Rejected('IoT Agent JSON command result is not an object {"<command>": <result>}')
        results = document
    measures: Measures = {}
    for command, result in results.items():
        measures[f"{command}_status"] = "OK"
        measures[f"{command}_info"] = result
    return [measures]


def _times(measures: list[Measures], stamp: datetime | None) -> tuple[datetime | None, list[Measures]]:
    """TimeInstant measures as UTC ISO 8601; the message time: ``t``, else the latest TimeInstant."""
    latest: datetime | None = None
    normalised: list[Measures] = []
    for measure in measures:
        if TIME_INSTANT in measure:
            moment = to_utc(measure[TIME_INSTANT], where=TIME_INSTANT)
            latest = moment if latest is None else max(latest, moment)
            measure = {**measure, TIME_INSTANT: moment.isoformat().replace("+00:00", "Z")}
        normalised.append(measure)
    return (stamp or latest), normalised


def cmd_topic(family: str, apikey: str, device: str, *, prefixed: bool = False) -> str:
    """The topic a device's commands are published on: /<apikey>/<device>/cmd, or /json/... /ul/..."""
    if not prefixed:
        return f"/{apikey}/{device}/cmd"
    return f"/{'json' if family == IOTA_JSON else 'ul'}/{apikey}/{device}/cmd"


def cmd_payload(family: str, device: str, command: str, value: Any) -> bytes:
    """A command as the IoT Agents send it: JSON {"<cmd>": value}, UL ``<device>@<cmd>|<value>``."""
    if family == IOTA_JSON:
        return orjson.dumps({command: value})
    return ultralight.format_command(device, command, value).encode()
