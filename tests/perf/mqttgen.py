"""MQTT publishers and a raw subscriber, each in its own process (paho-mqtt, QoS 1).

Publishers send The Things Stack v3 uplinks of provisioned water-level gauges (the real
~1.5 KB message, a new frame counter and level each time), keeping at most ``inflight``
messages unacknowledged by Mosquitto. The raw subscriber acknowledges each message as it
arrives: publishers -> Mosquitto -> it is the machine's QoS 1 limit the broker is compared to.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "uplinks" / "tts_v3_uplink_waterlevel.json"
APPLICATION = "bench-flood"


def device_id(n: int) -> str:
    return f"wl-b{n:06d}"


def dev_eui(n: int) -> str:
    return f"70B3D5BE{n:08X}"


def entity_id(n: int) -> str:
    return f"urn:ngsi-ld:FloodMonitoring:bench-{n:06d}"


def topic(n: int) -> str:
    return f"v3/{APPLICATION}@ttn/devices/{device_id(n)}/up"


def provisioning(n: int) -> dict[str, Any]:
    """The /iot/devices entry of gauge ``n`` (a TTS gauge reporting mm relative to the bank top)."""
    return {
        "device_id": device_id(n),
        "dev_eui": dev_eui(n).lower(),
        "entity_name": entity_id(n),
        "entity_type": "FloodMonitoring",
        "protocol": "tts",
        "codec": None,
        "model": "FloodMonitoring",
        "model_params": {
            "levelMode": "bankRelative",
            "levelMeasure": "analog_in_1",
            "bankHeight": 2.0,
            "referenceLevel": 4.2,
            "alertLevel": 1.4,
            "dangerLevel": 2.0,
            "floodModeMeasure": "digital_in_3",
            "location": {"type": "Point", "coordinates": [134.0 + n % 100 / 1000, 34.3 + n // 100 / 10000]},
        },
    }


class Uplinks:
    """Message ``k`` of gauge ``n``: frame counter ``k``, a level that changes every time."""

    def __init__(self) -> None:
        self.sample = json.loads(SAMPLE.read_text())["message"]

    def message(self, n: int, k: int) -> bytes:
        body = copy.deepcopy(self.sample)
        body["end_device_ids"].update(device_id=device_id(n), dev_eui=dev_eui(n))
        body["end_device_ids"]["application_ids"]["application_id"] = APPLICATION
        body["uplink_message"]["f_cnt"] = k
        body["uplink_message"]["decoded_payload"] = {
            "analog_in_1": -2.0 + (k % 1000) / 1000,
            "analog_in_2": 3.61,
            "digital_in_3": 0,
        }
        return orjson.dumps(body)


@dataclass(frozen=True)
class Plan:
    """Publisher ``index`` of ``publishers`` sends to gauges n = index, index + publishers, ... < devices."""

    port: int
    devices: int
    seconds: float
    rate: float  # messages/s for this publisher; 0: as fast as Mosquitto acknowledges
    first_frame: int = 1
    inflight: int = 1000
    raw_topic: str = ""  # raw limit: one topic, no device bodies


def publish(plan: Plan, index: int, publishers: int) -> tuple[int, float]:
    """Publish for ``plan.seconds``; return (messages acknowledged by Mosquitto, seconds)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(plan.inflight)
    client.max_queued_messages_set(0)
    acked = [0]
    room = threading.Semaphore(plan.inflight)

    def on_publish(*_: Any) -> None:
        acked[0] += 1
        room.release()

    client.on_publish = on_publish
    client.connect("127.0.0.1", plan.port)
    client.loop_start()
    uplinks = Uplinks()
    mine = list(range(index, plan.devices, publishers))
    templates = {n: uplinks.message(n, 0) for n in mine}
    sent = 0
    started = time.perf_counter()
    deadline = started + plan.seconds
    try:
        while (now := time.perf_counter()) < deadline:
            if plan.rate and sent >= plan.rate * (now - started):
                time.sleep(0.002)
                continue
            if not room.acquire(timeout=0.1):
                continue
            n = mine[sent % len(mine)]
            frame = plan.first_frame + sent // len(mine)
            if plan.raw_topic:
                client.publish(plan.raw_topic, templates[n], qos=1)
            else:
                client.publish(topic(n), uplinks_fast(templates[n], frame), qos=1)
            sent += 1
        elapsed = time.perf_counter() - started
        settle = time.perf_counter() + 10
        while acked[0] < sent and time.perf_counter() < settle:
            time.sleep(0.01)
    finally:
        client.disconnect()
        client.loop_stop()
    return acked[0], elapsed


def uplinks_fast(template: bytes, frame: int) -> bytes:
    """The template (frame 0, level -2.0) with frame counter ``frame`` and its own level."""
    level = f"{-2.0 + (frame % 1000) / 1000:.3f}".encode()
    return template.replace(b'"f_cnt":0,', b'"f_cnt":%d,' % frame, 1).replace(b"-2.0,", level + b",", 1)


def run_publishers(plan: Plan, publishers: int) -> tuple[int, float]:
    """Run ``publishers`` processes; total messages acknowledged by Mosquitto and the longest run time."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(publishers) as pool:
        parts = pool.starmap(publish, [(plan, i, publishers) for i in range(publishers)])
    return sum(p[0] for p in parts), max(p[1] for p in parts)


def subscribe_count(port: int, topic_filter: str, seconds: float, ready: Any, result: Any) -> None:
    """Raw subscriber: count QoS 1 messages received (acknowledged at once) during ``seconds``."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    count = [0]
    client.on_message = lambda *_: count.__setitem__(0, count[0] + 1)
    client.connect("127.0.0.1", port)
    client.subscribe(topic_filter, qos=1)
    client.loop_start()
    time.sleep(0.5)
    ready.set()
    while count[0] == 0:
        time.sleep(0.001)
    started = time.perf_counter()
    first = count[0]
    time.sleep(seconds)
    result.put((count[0] - first) / (time.perf_counter() - started))
    client.loop_stop()
    client.disconnect()
