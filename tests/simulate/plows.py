"""Snowplows driving a grid of streets in Aizuwakamatsu, reporting over ChirpStack v4 (MQTT) every 20 s.

Each plow drives along streets at a speed that changes between reports (slower with the blade
down), turning at crossings; the speed it reports is the speed it drove since the previous
report, so positions, speed and heading agree.
"""

from __future__ import annotations

import base64
import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.simulate.core import (
    LocalGrid,
    Outgoing,
    Scenario,
    SimDevice,
    cayenne_frame,
    chirpstack_object,
    device_rng,
    hex_id,
    iso_z,
    uuid_from,
)

REPORT_INTERVAL_S = 20.0
# ChirpStack's HTTP integration POSTs each event to the configured URL with ?event=<type>.
CHIRPSTACK_HTTP = "/adapters/chirpstack?event=up"
# Around Tsuruga Castle; 25 x 25 crossings 250 m apart (6 km square).
CITY = LocalGrid(centre_lat=37.4947, centre_lon=139.9298, columns=25, rows=25, spacing_m=250.0)
_BLADE_DOWN_KMH = (8.0, 25.0)
_BLADE_UP_KMH = (20.0, 45.0)
_HEADINGS = {(1, 0): 90.0, (-1, 0): 270.0, (0, 1): 0.0, (0, -1): 180.0}


@dataclass(frozen=True, slots=True)
class PlowReport:
    """One report: where the plow is and how it drove since its previous report."""

    t: float  # seconds after the simulation start
    lon: float
    lat: float
    altitude: float
    speed_kmh: float
    heading: float  # direction of travel, degrees from north
    blade: bool
    fcnt: int
    turned: bool  # passed a crossing since the previous report


class Plow:
    """A plow's position on the street grid, advanced one report interval at a time."""

    def __init__(self, index: int, seed: int, grid: LocalGrid = CITY) -> None:
        self.grid = grid
        self.rng = device_rng(seed, "plow", index)
        rng = self.rng
        self.node = (rng.randrange(grid.columns), rng.randrange(grid.rows))
        self.next = rng.choice(grid.neighbours(*self.node))
        self.offset = rng.uniform(0, grid.spacing_m)  # metres from ``node`` towards ``next``
        self.blade = rng.random() < 0.7
        self.speed_kmh = rng.uniform(*self._limits())

    def _limits(self) -> tuple[float, float]:
        return _BLADE_DOWN_KMH if self.blade else _BLADE_UP_KMH

    def drive(self, dt: float) -> bool:
        """Drive for ``dt`` seconds at a new speed; True if the plow passed a crossing."""
        rng = self.rng
        if rng.random() < 0.02:
            self.blade = not self.blade
        low, high = self._limits()
        if rng.random() < 0.05:
            self.speed_kmh = 0.0  # a red light or a heap of snow
        else:
            self.speed_kmh = min(high, max(low, (self.speed_kmh or low) + rng.gauss(0, 3)))
        remaining = self.speed_kmh / 3.6 * dt
        turned = False
        while self.offset + remaining >= self.grid.spacing_m:
            remaining -= self.grid.spacing_m - self.offset
            self._turn()
            turned = True
        self.offset += remaining
        return turned

    def _turn(self) -> None:
        """At a crossing: go on in any direction but back, unless the town ends here."""
        came_from = self.node
        self.node = self.next
        options = [n for n in self.grid.neighbours(*self.node) if n != came_from]
        self.next = self.rng.choice(options or [came_from])
        self.offset = 0.0

    def position(self) -> tuple[float, float]:
        (c0, r0), (c1, r1) = self.node, self.next
        x0, y0 = self.grid.node_xy(c0, r0)
        return self.grid.to_lonlat(x0 + (c1 - c0) * self.offset, y0 + (r1 - r0) * self.offset)

    def heading(self) -> float:
        return _HEADINGS[(self.next[0] - self.node[0], self.next[1] - self.node[1])]


def plow_reports(index: int, seed: int, grid: LocalGrid = CITY) -> Iterator[PlowReport]:
    """The plow's reports, forever, every 20 s from a per-plow offset."""
    plow = Plow(index, seed, grid)
    t = plow.rng.uniform(0, REPORT_INTERVAL_S)
    fcnt = plow.rng.randrange(1, 20_000)
    turned = False
    while True:
        lon, lat = plow.position()
        altitude = 215.0 + 8.0 * (lat - grid.centre_lat) * 100
        yield PlowReport(t, lon, lat, altitude, plow.speed_kmh, plow.heading(), plow.blade, fcnt, turned)
        turned = plow.drive(REPORT_INTERVAL_S)
        t += REPORT_INTERVAL_S
        fcnt += 1


def plow_measures(report: PlowReport) -> dict[str, Any]:
    """CayenneLPP measures at the codec's resolution: ch1 GPS, ch2 speed (km/h), ch3 blade down."""
    return {
        "gps_1": {
            "latitude": round(report.lat, 4),
            "longitude": round(report.lon, 4),
            "altitude": round(report.altitude, 2),
        },
        "analog_in_2": round(report.speed_kmh, 2),
        "digital_in_3": int(report.blade),
    }


@dataclass(frozen=True, slots=True)
class PlowIds:
    device_name: str
    dev_eui: str
    dev_addr: str


def plow_ids(index: int, seed: int) -> PlowIds:
    rng = device_rng(seed, "plow-ids", index)
    return PlowIds(f"plow-{index + 1:03d}", "0004a30b00" + hex_id(rng, 6), hex_id(rng, 8))


def chirpstack_uplink(
    ids: PlowIds, report: PlowReport, at: datetime, app: str, rng: random.Random
) -> dict[str, Any]:
    """A ChirpStack v4 'up' event as its MQTT integration publishes it (protobuf JSON mapping)."""
    measures = plow_measures(report)
    return {
        "deduplicationId": uuid_from(rng),
        "time": iso_z(at, digits=9).replace("Z", "+00:00"),
        "deviceInfo": {
            "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
            "tenantName": "Aizuwakamatsu City",
            "applicationId": app,
            "applicationName": "snowplow-nav",
            "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
            "deviceProfileName": "gps-tracker-cayenne",
            "deviceName": ids.device_name,
            "devEui": ids.dev_eui,
            "deviceClassEnabled": "CLASS_A",
            "tags": {"fleet": "snow"},
        },
        "devAddr": ids.dev_addr,
        "adr": True,
        "dr": 3,
        "fCnt": report.fcnt,
        "fPort": 1,
        "data": base64.b64encode(cayenne_frame(measures)).decode(),
        "object": chirpstack_object(measures),
        "rxInfo": [
            {
                "gatewayId": "0016c001f153a14c",
                "uplinkId": rng.getrandbits(32),
                "nsTime": iso_z(at - timedelta(milliseconds=7), digits=3),
                "rssi": rng.randint(-115, -80),
                "snr": round(rng.uniform(-5, 10), 1),
                "location": {"latitude": 37.4926, "longitude": 139.9294, "altitude": 220},
                "crcStatus": "CRC_OK",
            }
        ],
        "txInfo": {
            "frequency": 923400000,
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 9, "codeRate": "CR_4_5"}},
        },
    }


def _plow_messages(index: int, seed: int, start: datetime, app: str) -> Iterator[Outgoing]:
    ids = plow_ids(index, seed)
    rng = device_rng(seed, "plow-radio", index)
    topic = f"application/{app}/device/{ids.dev_eui}/event/up"
    for report in plow_reports(index, seed):
        at = start + timedelta(seconds=report.t + rng.uniform(0.05, 0.5))
        yield Outgoing("chirpstack", at, chirpstack_uplink(ids, report, at, app, rng), topic, CHIRPSTACK_HTTP)


def _device(index: int, seed: int) -> SimDevice:
    ids = plow_ids(index, seed)
    return SimDevice(
        ids.device_name,
        entity_name=f"urn:ngsi-ld:Vehicle:{ids.device_name}",
        entity_type="Vehicle",
        protocol="chirpstack",
        codec="cayennelpp",
        model="Vehicle",
        dev_eui=ids.dev_eui,
        model_params={
            "vehicleType": "constructionOrMaintenanceVehicle",
            "fleetVehicleId": ids.device_name,
            "gpsMeasure": "gps_1",
            "speedMeasure": "analog_in_2",
        },
    )


def scenario(count: int, seed: int, start: datetime, app: str, apikey: str) -> Scenario:
    streams = [_plow_messages(i, seed, start, app) for i in range(count)]
    return Scenario(
        name="plows",
        devices=[_device(i, seed) for i in range(count)],
        messages=heapq.merge(*streams, key=lambda m: m.at),
        apikey=apikey,
        entity_type="Vehicle",
    )
