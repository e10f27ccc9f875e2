"""What every scenario produces: timed messages, the devices behind them, and the geometry they share."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.codecs import cayenne

EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message a simulated device sends, at a simulated time.

    ``topic`` names its MQTT topic (None: the family has no MQTT binding, as Sigfox); ``path``
    where the family's HTTP binding POSTs it on the broker (webhook, callback, IoT Agent HTTP).
    """

    family: str  # adapters.message family: "tts", "chirpstack", "sigfox", "iota-json"
    at: datetime
    body: Any
    topic: str | None
    path: str


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A simulated device as the broker's provisioning API should know it."""

    device_id: str
    entity_name: str
    entity_type: str
    protocol: str  # adapters.message family
    codec: str  # "cayennelpp" | "layout" | "json"
    model: str  # "FloodMonitoring" | "Vehicle" | "BeaconDetector"
    dev_eui: str | None = None
    layout: tuple[dict[str, Any], ...] = ()
    model_params: dict[str, Any] = field(default_factory=dict)
    # IoT Agent 'commands' the device accepts (a PATCH of the attribute is sent down to it).
    commands: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class Scenario:
    """A scenario's devices and its message stream, ordered by simulated time."""

    name: str
    devices: list[SimDevice]
    messages: Iterator[Outgoing]
    # Default service group for provisioning: the IoT Agent apikey and entity type of the devices.
    apikey: str
    entity_type: str


def device_rng(seed: int, kind: str, index: int) -> random.Random:
    """A generator per device, so one device's stream does not depend on how many others run."""
    return random.Random(f"{seed}/{kind}/{index}")


def iso_z(moment: datetime, *, digits: int = 0) -> str:
    """UTC ISO 8601 with a Z, with ``digits`` of fractional seconds (0, 3 or 9 as the networks send)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        fraction = f"{moment.microsecond:06d}000"[:digits]
        text += "." + fraction
    return text + "Z"


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


@dataclass(frozen=True, slots=True)
class LocalGrid:
    """A grid of streets (or detector posts) around a centre; metres east/north of its south-west corner."""

    centre_lat: float
    centre_lon: float
    columns: int
    rows: int
    spacing_m: float

    def node_xy(self, column: int, row: int) -> tuple[float, float]:
        return column * self.spacing_m, row * self.spacing_m

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        """Metres on the grid to (longitude, latitude): equirectangular, exact enough over a town."""
        x0 = (self.columns - 1) * self.spacing_m / 2
        y0 = (self.rows - 1) * self.spacing_m / 2
        lat = self.centre_lat + (y - y0) / _M_PER_DEG_LAT
        lon = self.centre_lon + (x - x0) / (_M_PER_DEG_LAT * math.cos(math.radians(self.centre_lat)))
        return lon, lat

    def neighbours(self, column: int, row: int) -> list[tuple[int, int]]:
        out = []
        for dc, dr in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            c, r = column + dc, row + dr
            if 0 <= c < self.columns and 0 <= r < self.rows:
                out.append((c, r))
        return out


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def bearing_deg(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Initial bearing from the first point to the second, degrees clockwise from north in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def hex_id(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def uuid_from(rng: random.Random) -> str:
    """A version-4-shaped UUID drawn from ``rng`` (uuid.uuid4 would break determinism)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"


def undecoded(message: Outgoing) -> Outgoing:
    """The message as a network server without a payload formatter sends it: raw bytes only.

    TTS then omits ``decoded_payload`` and ChirpStack ``object``; the broker decodes
    ``frm_payload``/``data`` with the device's codec instead.
    """
    if message.family == "tts":
        uplink = {k: v for k, v in message.body["uplink_message"].items() if k != "decoded_payload"}
        body = {**message.body, "uplink_message": uplink}
    elif message.family == "chirpstack":
        body = {k: v for k, v in message.body.items() if k != "object"}
    else:
        return message
    return Outgoing(message.family, message.at, body, message.topic, message.path)


def chirpstack_object(measures: dict[str, Any]) -> dict[str, Any]:
    """TTS-style flat CayenneLPP names nested as ChirpStack v4's codec does: {"analogInput": {"2": 12.5}}."""
    nested: dict[str, Any] = {}
    for name, value in measures.items():
        prefix, _, channel = name.rpartition("_")
        kind = cayenne.BY_NAME[prefix].chirpstack
        if kind is None:
            raise ValueError(f"ChirpStack does not decode CayenneLPP {prefix!r}")
        nested.setdefault(kind, {})[channel] = value
    return nested


def cayenne_frame(measures: dict[str, Any]) -> bytes:
    """The CayenneLPP bytes of ``measures`` (TTS flat naming), by the project's codec."""
    return cayenne.encode(measures)
