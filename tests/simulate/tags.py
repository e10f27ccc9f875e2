"""BLE watch-tags carried by people walking between fixed detectors in Kakogawa (IoT Agent JSON over MQTT).

Detectors stand at the crossings of a street grid; people walk along the streets, sometimes
stopping a while (school, home, a shop). Every scan interval each detector publishes the tags it
heard, as an IoT Agent JSON multimeasure array on /json/<apikey>/<detector>/attrs. A tag is heard
only within the detection radius of a detector, with an RSSI that falls with distance. Volunteers'
phones walk the same streets and publish what they hear nearby the same way, with their own
latitude/longitude in each sighting (a phone has no fixed place).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.simulate.core import LocalGrid, Outgoing, Scenario, SimDevice, device_rng, hex_id, iso_z

SCAN_INTERVAL_S = 10
DETECTION_RADIUS_M = 30.0
PHONE_RANGE_M = 20.0
_SPACING_M = 200.0
_CENTRE = (34.7566, 134.8406)  # Kakogawa, lat/lon


def detector_grid(count: int) -> LocalGrid:
    """The smallest near-square grid with ``count`` crossings; detectors fill it row by row."""
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    return LocalGrid(_CENTRE[0], _CENTRE[1], columns, rows, _SPACING_M)


def detector_id(index: int) -> str:
    return f"det-cam-{index + 1:04d}"


def phone_id(index: int) -> str:
    return f"phone-{index + 1:04d}"


@dataclass(frozen=True, slots=True)
class Leg:
    """A walker going from one crossing to the next (or staying at one) between two times."""

    start: tuple[int, int]
    end: tuple[int, int]
    t0: float
    t1: float


class Walker:
    """One person carrying a tag (or a volunteer's phone); positions are asked for at increasing times."""

    def __init__(self, index: int, seed: int, grid: LocalGrid, kind: str = "tag") -> None:
        self.grid = grid
        self.rng = device_rng(seed, kind, index)
        self.tag = hex_id(self.rng, 12)
        self.speed_ms = self.rng.uniform(0.9, 1.6)
        node = (self.rng.randrange(grid.columns), self.rng.randrange(grid.rows))
        self.leg = Leg(node, node, 0.0, self.rng.uniform(0, 600))

    def _next_leg(self) -> Leg:
        here = self.leg.end
        if self.leg.start != here and self.rng.random() < 0.25:
            return Leg(here, here, self.leg.t1, self.leg.t1 + self.rng.uniform(60, 900))
        around = self.grid.neighbours(*here)
        target = self.rng.choice([n for n in around if n != self.leg.start] or around)
        return Leg(here, target, self.leg.t1, self.leg.t1 + self.grid.spacing_m / self.speed_ms)

    def position(self, t: float) -> tuple[float, float]:
        """Metres on the grid at ``t`` seconds after the start; ``t`` must not go back in time."""
        while t >= self.leg.t1:
            self.leg = self._next_leg()
        (c0, r0), (c1, r1) = self.leg.start, self.leg.end
        f = (t - self.leg.t0) / (self.leg.t1 - self.leg.t0)
        x0, y0 = self.grid.node_xy(c0, r0)
        x1, y1 = self.grid.node_xy(c1, r1)
        return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f


def heard_by(grid: LocalGrid, count: int, x: float, y: float) -> tuple[int, float] | None:
    """The detector (index, distance in m) that hears a tag at (x, y), if one is in range."""
    column, row = round(x / grid.spacing_m), round(y / grid.spacing_m)
    index = row * grid.columns + column
    if index >= count:
        return None
    nx, ny = grid.node_xy(column, row)
    distance = math.hypot(x - nx, y - ny)
    return (index, distance) if distance <= DETECTION_RADIUS_M else None


def _rssi(rng: random.Random, distance: float, at_1m: float) -> int:
    """A BLE signal strength (dBm) falling with distance, with some fading."""
    rssi = at_1m - 20 * math.log10(max(distance, 1.0)) + rng.gauss(0, 2)
    return max(-100, min(-40, round(rssi)))


def sightings(
    detectors: int, tags: int, seed: int, start: datetime, apikey: str, phones: int = 0
) -> Iterator[Outgoing]:
    """Each scan interval, one multimeasure message per detector or phone that heard a tag, forever."""
    grid = detector_grid(detectors)
    walkers = [Walker(i, seed, grid) for i in range(tags)]
    volunteers = [Walker(i, seed, grid, "phone") for i in range(phones)]
    rng = device_rng(seed, "scan", 0)
    step = 0
    while True:
        t0 = step * SCAN_INTERVAL_S
        # Phones scan at the start of the interval, detectors at a moment within it: positions
        # are asked for in time order.
        batch = _phone_batches(volunteers, walkers, t0, start, apikey, rng) if volunteers else []
        batch += _detector_batches(walkers, grid, detectors, t0, start, apikey, rng)
        yield from sorted(batch, key=lambda m: m.at)
        step += 1


def _detector_batches(
    walkers: list[Walker],
    grid: LocalGrid,
    detectors: int,
    t0: int,
    start: datetime,
    apikey: str,
    rng: random.Random,
) -> list[Outgoing]:
    heard: dict[int, list[tuple[int, str, int]]] = {}
    for walker in walkers:
        ts = t0 + rng.randrange(SCAN_INTERVAL_S)
        hit = heard_by(grid, detectors, *walker.position(ts))
        if hit is not None:
            index, distance = hit
            heard.setdefault(index, []).append((ts, walker.tag, _rssi(rng, distance, -59)))
    out = []
    for index in sorted(heard):
        body: list[dict[str, Any]] = [
            {"tag": tag, "rssi": rssi, "ts": iso_z(start + timedelta(seconds=ts))}
            for ts, tag, rssi in sorted(heard[index])
        ]
        # Detectors publish their batch after the scan, spread over the next interval.
        at = start + timedelta(seconds=t0 + SCAN_INTERVAL_S * (1 + index / detectors))
        out.append(_iota(at, body, apikey, detector_id(index)))
    return out


def _phone_batches(
    phones: list[Walker], walkers: list[Walker], t0: int, start: datetime, apikey: str, rng: random.Random
) -> list[Outgoing]:
    """What each phone hears at ``t0``: tags within PHONE_RANGE_M of it, found through a coarse grid."""
    cells: dict[tuple[int, int], list[tuple[str, float, float]]] = {}
    for walker in walkers:
        x, y = walker.position(t0)
        cells.setdefault((int(x // PHONE_RANGE_M), int(y // PHONE_RANGE_M)), []).append((walker.tag, x, y))
    ts = iso_z(start + timedelta(seconds=t0))
    out = []
    for index, phone in enumerate(phones):
        px, py = phone.position(t0)
        cx, cy = int(px // PHONE_RANGE_M), int(py // PHONE_RANGE_M)
        near = [t for dx in (-1, 0, 1) for dy in (-1, 0, 1) for t in cells.get((cx + dx, cy + dy), ())]
        lon, lat = phone.grid.to_lonlat(px, py)
        body = [
            {
                "tag": tag,
                "rssi": _rssi(rng, d, -65),
                "ts": ts,
                "latitude": round(lat, 6),
                "longitude": round(lon, 6),
            }
            for tag, x, y in sorted(near)
            if (d := math.hypot(x - px, y - py)) <= PHONE_RANGE_M
        ]
        if body:
            at = start + timedelta(seconds=t0 + SCAN_INTERVAL_S * (1 + index / len(phones)))
            out.append(_iota(at, body, apikey, phone_id(index)))
    return out


def _iota(at: datetime, body: list[dict[str, Any]], apikey: str, device: str) -> Outgoing:
    """A multimeasure on the IoT Agent JSON MQTT topic, or its HTTP binding."""
    path = f"/iot/json?{urlencode({'k': apikey, 'i': device})}"
    return Outgoing("iota-json", at, body, f"/json/{apikey}/{device}/attrs", path)


def _device(index: int, grid: LocalGrid) -> SimDevice:
    lon, lat = grid.to_lonlat(*grid.node_xy(index % grid.columns, index // grid.columns))
    name = detector_id(index)
    return SimDevice(
        name,
        entity_name=f"urn:ngsi-ld:Device:{name}",
        entity_type="Device",
        protocol="iota-json",
        codec="json",
        model="BeaconDetector",
        model_params={"location": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}},
    )


def _phone(index: int) -> SimDevice:
    name = phone_id(index)
    return SimDevice(
        name,
        entity_name=f"urn:ngsi-ld:Device:{name}",
        entity_type="Device",
        protocol="iota-json",
        codec="json",
        model="BeaconDetector",
    )


def scenario(detectors: int, tags: int, seed: int, start: datetime, apikey: str, phones: int = 0) -> Scenario:
    grid = detector_grid(detectors)
    return Scenario(
        name="tags",
        devices=[_device(i, grid) for i in range(detectors)] + [_phone(i) for i in range(phones)],
        messages=sightings(detectors, tags, seed, start, apikey, phones),
        apikey=apikey,
        entity_type="Device",
    )
