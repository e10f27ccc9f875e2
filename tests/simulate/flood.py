"""River gauges through a flood event, over The Things Stack v3 (MQTT) and Sigfox callbacks (HTTP).

Levels follow the MLIT crisis-management gauges (危機管理型水位計): metres above the gauge's zero,
with the bank top at ``reference_level``; the wire carries the level relative to the bank top
(negative while the river is below it), which is what these gauges measure. A gauge reports every
10 minutes, and every 5 minutes (flood mode, flags bit 0) once the level passes its
observation-start level.
"""

from __future__ import annotations

import base64
import heapq
import math
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.simulate.core import (
    Outgoing,
    Scenario,
    SimDevice,
    cayenne_frame,
    device_rng,
    hex_id,
    iso_z,
)

# Where the broker serves the network servers' HTTP bindings (adapters/http.py).
TTS_WEBHOOK = "/adapters/tts"
SIGFOX_CALLBACK = "/adapters/sigfox/uplink"
# A Sigfox gauge asks for a downlink (BIDIR) this often: the network allows four a day.
SIGFOX_DOWNLINK_EVERY_S = 6 * 3600
# The command a Sigfox gauge takes in a BIDIR reply: 8 bytes, e.g. 0102025800000000 (interval 600 s).
SIGFOX_COMMANDS: tuple[dict[str, Any], ...] = ({"name": "interval", "type": "command"},)
NORMAL_INTERVAL_S = 600
FLOOD_INTERVAL_S = 300
# Leave flood mode a little below the start level, so noise at the threshold does not flap the mode.
HYSTERESIS_M = 0.05
# Takamatsu, along the Kasuga river (春日川), upstream to downstream.
_RIVER_START = (134.0780, 34.2950)
_RIVER_STEP = (-0.0040, 0.0075)
SIGFOX_LAYOUT: tuple[dict[str, Any], ...] = (
    {"name": "level", "offset": 0, "length": 2, "signed": True, "scale": 0.001},
    {"name": "battery", "offset": 2, "length": 2, "scale": 0.001},
    {"name": "flood_mode", "offset": 4, "length": 1, "bits": [0, 1]},
)


@dataclass(frozen=True, slots=True)
class Gauge:
    """One gauge and the flood wave that passes it (a gamma-shaped hydrograph)."""

    index: int
    device_id: str
    family: str  # "tts" | "sigfox"
    dev_eui: str
    sigfox_id: str
    lon: float
    lat: float
    reference_level: float  # bank top above the gauge zero, m
    start_level: float  # observation start
    alert_level: float
    danger_level: float
    base_level: float
    peak_level: float
    rise_start_s: float  # seconds after the simulation start
    time_to_peak_s: float

    def level(self, t: float) -> float:
        """The true level (m above gauge zero) ``t`` seconds after the simulation start."""
        if t <= self.rise_start_s:
            return self.base_level
        x = (t - self.rise_start_s) / self.time_to_peak_s
        shape = (x * math.exp(1.0 - x)) ** 2
        return self.base_level + (self.peak_level - self.base_level) * shape

    def to_device(self) -> SimDevice:
        """The gauge for provisioning, with the parameters adapters/models/flood.py reads."""
        tts = self.family == "tts"
        params: dict[str, Any] = {
            # The gauges send the level relative to the bank top; the bank top is also where a
            # distance sensor would hang, hence referenceLevel = bankHeight.
            "levelMode": "bankRelative",
            "levelMeasure": "analog_in_1" if tts else "level",
            "bankHeight": self.reference_level,
            "referenceLevel": self.reference_level,
            "alertLevel": self.alert_level,
            "dangerLevel": self.danger_level,
            "observationStartLevel": self.start_level,
            "floodModeMeasure": "digital_in_3" if tts else "flood_mode",
            "batteryMeasure": "analog_in_2" if tts else "battery",
            "batteryUnit": "V",
            "location": {"type": "Point", "coordinates": [self.lon, self.lat]},
        }
        return SimDevice(
            self.device_id if tts else self.sigfox_id,
            entity_name=f"urn:ngsi-ld:FloodMonitoring:{self.device_id}",
            entity_type="FloodMonitoring",
            protocol=self.family,
            codec="cayennelpp" if tts else "layout",
            model="FloodMonitoring",
            dev_eui=self.dev_eui if tts else None,
            layout=() if tts else SIGFOX_LAYOUT,
            model_params=params,
            commands=() if tts else SIGFOX_COMMANDS,
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """What a gauge measured and sends at one report."""

    t: float  # seconds after the simulation start
    level: float  # m above gauge zero, as measured (with noise)
    flood_mode: bool
    battery_v: float
    frame: int  # f_cnt (TTS) or seqNumber (Sigfox, 12 bits)


def make_gauges(count: int, seed: int) -> list[Gauge]:
    """``count`` gauges along the river, alternately on LoRaWAN (TTS) and Sigfox."""
    return [_gauge(i, seed) for i in range(count)]


def _gauge(i: int, seed: int) -> Gauge:
    rng = device_rng(seed, "gauge", i)
    reference = round(rng.uniform(4.0, 5.0), 2)
    alert = round(rng.uniform(1.3, 1.7), 2)
    danger = round(alert + rng.uniform(0.5, 0.8), 2)
    start = round(alert - 0.5, 2)
    base = round(start - rng.uniform(0.3, 0.6), 2)
    peak = min(danger + rng.uniform(0.2, 0.6), reference - 0.3)
    return Gauge(
        index=i,
        device_id=f"wl-kasuga-{i + 1:03d}",
        family="tts" if i % 2 == 0 else "sigfox",
        dev_eui="70b3d57ed005" + hex_id(rng, 4),
        sigfox_id=hex_id(rng, 6).upper(),
        lon=round(_RIVER_START[0] + _RIVER_STEP[0] * i + rng.uniform(-0.001, 0.001), 5),
        lat=round(_RIVER_START[1] + _RIVER_STEP[1] * i + rng.uniform(-0.001, 0.001), 5),
        reference_level=reference,
        start_level=start,
        alert_level=alert,
        danger_level=danger,
        base_level=base,
        peak_level=peak,
        # The wave reaches downstream gauges later.
        rise_start_s=3600 + 900 * i + rng.uniform(0, 600),
        time_to_peak_s=rng.uniform(4, 7) * 3600,
    )


def readings(gauge: Gauge, seed: int) -> Iterator[Reading]:
    """The gauge's reports, forever: every 10 min, every 5 min in flood mode."""
    rng = device_rng(seed, "gauge-noise", gauge.index)
    t = float(rng.randrange(NORMAL_INTERVAL_S))
    frame = rng.randrange(0, 4096) if gauge.family == "sigfox" else rng.randrange(0, 20_000)
    battery = rng.uniform(3.55, 3.65)
    flood_mode = False
    while True:
        level = gauge.level(t) + rng.gauss(0.0, 0.005)
        if level >= gauge.start_level:
            flood_mode = True
        elif level < gauge.start_level - HYSTERESIS_M:
            flood_mode = False
        yield Reading(t, level, flood_mode, battery, frame)
        frame = (frame + 1) % 4096 if gauge.family == "sigfox" else frame + 1
        battery -= 0.00005
        t += FLOOD_INTERVAL_S if flood_mode else NORMAL_INTERVAL_S


def gauge_messages(gauge: Gauge, seed: int, start: datetime, app: str, ns_tenant: str) -> Iterator[Outgoing]:
    rng = device_rng(seed, "gauge-radio", gauge.index)
    next_downlink = 0.0
    for reading in readings(gauge, seed):
        # The network server receives the uplink a moment after the gauge measured.
        at = start + timedelta(seconds=reading.t + rng.uniform(0.2, 1.5))
        if gauge.family == "tts":
            topic = f"v3/{app}@{ns_tenant}/devices/{gauge.device_id}/up"
            body = tts_uplink(gauge, reading, at, app, ns_tenant, rng)
            yield Outgoing("tts", at, body, topic, TTS_WEBHOOK)
        else:
            body = sigfox_callback(gauge, reading, at, rng)
            if reading.t >= next_downlink:
                body["ack"] = True
                next_downlink = reading.t + SIGFOX_DOWNLINK_EVERY_S
            yield Outgoing("sigfox", at, body, None, SIGFOX_CALLBACK)


def tts_measures(gauge: Gauge, reading: Reading) -> dict[str, Any]:
    """CayenneLPP measures: ch1 level relative to bank top (m), ch2 battery (V), ch3 flood mode."""
    return {
        "analog_in_1": round(reading.level - gauge.reference_level, 2),
        "analog_in_2": round(reading.battery_v, 2),
        "digital_in_3": int(reading.flood_mode),
    }


def tts_uplink(
    gauge: Gauge, reading: Reading, at: datetime, app: str, ns_tenant: str, rng: random.Random
) -> dict[str, Any]:
    """A The Things Stack v3 uplink message as its MQTT integration publishes it."""
    measures = tts_measures(gauge, reading)
    gw_time = iso_z(at - timedelta(milliseconds=230), digits=3)
    return {
        "end_device_ids": {
            "device_id": gauge.device_id,
            "application_ids": {"application_id": app},
            "dev_eui": gauge.dev_eui.upper(),
            "join_eui": "0000000000000000",
            "dev_addr": f"260B{gauge.index:04X}",
        },
        "correlation_ids": [f"as:up:{hex_id(rng, 26).upper()}"],
        "received_at": iso_z(at, digits=9),
        "uplink_message": {
            "f_port": 2,
            "f_cnt": reading.frame,
            "frm_payload": base64.b64encode(cayenne_frame(measures)).decode(),
            "decoded_payload": measures,
            "rx_metadata": [
                {
                    "gateway_ids": {"gateway_id": "takamatsu-gw-01", "eui": "AC1F09FFFE01A2B3"},
                    "time": gw_time,
                    "rssi": rng.randint(-118, -95),
                    "snr": round(rng.uniform(-8, 8), 1),
                    "location": {"latitude": 34.3401, "longitude": 134.0434, "altitude": 12},
                    "received_at": gw_time,
                }
            ],
            "settings": {
                "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 10, "coding_rate": "4/5"}},
                "frequency": "923200000",
                "time": gw_time,
            },
            "received_at": iso_z(at, digits=3),
            "network_ids": {"net_id": "000013", "tenant_id": ns_tenant, "cluster_id": "au1"},
        },
    }


def sigfox_frame(gauge: Gauge, reading: Reading) -> bytes:
    """i16 level relative to bank top (mm), u16 battery (mV), u8 flags (bit 0: flood mode); big-endian."""
    level_mm = round((reading.level - gauge.reference_level) * 1000)
    return struct.pack(">hHB", level_mm, round(reading.battery_v * 1000), int(reading.flood_mode))


def sigfox_callback(gauge: Gauge, reading: Reading, at: datetime, rng: random.Random) -> dict[str, Any]:
    """A Sigfox backend DATA/BIDIR custom callback body (numbers unquoted in the template).

    ``ack`` true asks for a downlink in the reply.
    """
    return {
        "device": gauge.sigfox_id,
        "time": int(at.timestamp()),
        "data": sigfox_frame(gauge, reading).hex(),
        "seqNumber": reading.frame,
        "deviceTypeId": "5f1a2b3c4d5e6f7a8b9c0d1e",
        "rssi": round(rng.uniform(-135, -110), 2),
        "snr": round(rng.uniform(5, 20), 2),
        "station": "7B2C",
        "ack": False,
    }


def scenario(count: int, seed: int, start: datetime, app: str, ns_tenant: str, apikey: str) -> Scenario:
    gauges = make_gauges(count, seed)
    streams = [gauge_messages(g, seed, start, app, ns_tenant) for g in gauges]
    return Scenario(
        name="flood",
        devices=[g.to_device() for g in gauges],
        messages=heapq.merge(*streams, key=lambda m: m.at),
        apikey=apikey,
        entity_type="FloodMonitoring",
    )
