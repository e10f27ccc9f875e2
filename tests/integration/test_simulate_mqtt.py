"""The simulator over the real protocols: bounded runs published to the local Mosquitto and POSTed over HTTP.

Each run is compared with the dry run of the same seed and start: what a subscriber receives
is exactly what the generator made, on the topics the network servers use.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import eventually
from tests.simulate import main, simulate
from tests.simulate.cli import build_parser

MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
START = "2026-09-01T00:00:00Z"
# `python -m tests.simulate` runs from a source checkout's root (the simulators are not installed).
_TREE_ROOT = Path(__file__).resolve().parents[2]


class Subscriber:
    """A paho subscriber on its own thread, collecting (topic, JSON body) pairs."""

    def __init__(self, topic: str) -> None:
        self.received: list[tuple[str, Any]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-test-{uuid.uuid4().hex[:8]}")
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, m: self.received.append((m.topic, orjson.loads(m.payload)))

    async def __aenter__(self) -> Subscriber:
        parts = urlsplit(MQTT_URL)
        self._client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self._client.loop_start()
        assert await asyncio.to_thread(self._subscribed.wait, 5), "no SUBACK from Mosquitto"
        return self

    async def __aexit__(self, *_: object) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def wait(self, count: int, within: float = 10.0) -> list[tuple[str, Any]]:
        await eventually(lambda: len(self.received) >= count, within=within, what=f"{count} messages")
        return self.received


async def dry_run(argv: list[str]) -> list[dict[str, Any]]:
    out = io.StringIO()
    await simulate(build_parser().parse_args([*argv, "--dry-run"]), out)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


@asynccontextmanager
async def http_recorder() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], Any]]]]:
    """A loopback HTTP server that answers 204 and keeps each request's headers and JSON body."""
    seen: list[tuple[dict[str, str], Any]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.json()))
        return web.Response(status=204 if request.path.endswith("/uplink") else 201)

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/")), seen
    finally:
        await server.close()


async def test_a_bounded_plow_run_reaches_mosquitto_as_chirpstack_uplinks_acknowledged_one_by_one() -> None:
    app = str(uuid.uuid4())
    argv = ["plows", "--count", "40", "--messages", "150", "--speed", "0", "--seed", "3", "--start", START]
    argv += ["--app", app, "--mqtt-url", MQTT_URL]
    expected = await dry_run(argv)
    async with Subscriber(f"application/{app}/device/+/event/up") as subscriber:
        summary = await simulate(build_parser().parse_args(argv))
        received = await subscriber.wait(150)
    assert [(line["topic"], line["body"]) for line in expected] == received
    ((where, tally),) = summary.tallies.values()
    assert where == MQTT_URL
    assert (tally.sent, tally.confirmed, tally.failed) == (150, 150, 0)
    assert {body["deviceInfo"]["applicationId"] for _, body in received} == {app}


def _callback_key(body: Any) -> tuple[str, int]:
    return body["device"], body["seqNumber"]


async def test_a_flood_run_publishes_tts_uplinks_and_posts_sigfox_callbacks() -> None:
    app = f"flood-{uuid.uuid4().hex[:8]}"
    async with http_recorder() as (base, posted), Subscriber(f"v3/{app}@ttn/devices/+/up") as subscriber:
        argv = ["flood", "--count", "4", "--duration", "12h", "--speed", "0", "--seed", "4", "--start", START]
        argv += ["--app", app, "--mqtt-url", MQTT_URL, "--http-url", base]
        expected = await dry_run(argv)
        summary = await simulate(build_parser().parse_args(argv))
        tts = [(line["topic"], line["body"]) for line in expected if line["family"] == "tts"]
        received = await subscriber.wait(len(tts))
    assert received == tts
    # Callbacks are posted through a window of concurrent requests: every one arrives, in any order.
    sigfox = [line["body"] for line in expected if line["family"] == "sigfox"]
    assert sorted((body for _, body in posted), key=_callback_key) == sorted(sigfox, key=_callback_key)
    assert all(headers["Content-Type"] == "application/json" for headers, _ in posted)
    assert summary.failed == 0
    assert summary.tallies["sigfox"][1].confirmed == len(posted) > 100
    # Half a day with the wave in it: both gauges families switch to flood mode.
    assert {b["uplink_message"]["decoded_payload"]["digital_in_3"] for _, b in received} == {0, 1}
    assert {int(b["data"][-2:], 16) & 1 for _, b in posted} == {0, 1}


async def test_a_tags_run_publishes_iot_agent_json_multimeasures_per_detector_and_phone() -> None:
    apikey = f"mimamori-{uuid.uuid4().hex[:8]}"
    argv = ["tags", "--detectors", "1475", "--tags", "2000", "--messages", "300", "--speed", "0"]
    argv += ["--apikey", apikey, "--seed", "5", "--start", START, "--mqtt-url", MQTT_URL]
    expected = await dry_run(argv)
    async with Subscriber(f"/json/{apikey}/+/attrs") as subscriber:
        summary = await simulate(build_parser().parse_args(argv))
        received = await subscriber.wait(300)
    assert [(line["topic"], line["body"]) for line in expected] == received
    assert summary.sent == 300
    assert summary.failed == 0
    keys = {topic.split("/")[3].split("-")[0]: set(body[0]) for topic, body in received}
    assert keys == {"det": {"tag", "rssi", "ts"}, "phone": {"tag", "rssi", "ts", "latitude", "longitude"}}


async def test_speed_paces_the_run_in_real_time() -> None:
    argv = ["plows", "--count", "10", "--duration", "40s", "--speed", "20", "--mqtt-url", MQTT_URL]
    summary = await simulate(build_parser().parse_args([*argv, "--app", str(uuid.uuid4())]))
    # 40 simulated seconds at 20x: two real seconds, the last message a little before the end.
    assert 1.7 <= summary.elapsed_s <= 4.0  # a busy machine may add a little, never take away
    assert summary.sent == 20
    assert summary.failed == 0


async def test_provisioning_posts_the_service_group_and_devices_with_the_fiware_service_header() -> None:
    async with http_recorder() as (base, posted):
        argv = ["flood", "--count", "2", "--messages", "0", "--provision", base, "--tenant", "takamatsu-sim"]
        summary = await simulate(build_parser().parse_args(argv))
    assert summary.problems == []
    assert [h["fiware-service"] for h, _ in posted] == ["takamatsu-sim", "takamatsu-sim"]
    assert posted[0][1]["services"][0]["apikey"] == "takamatsu-flood"
    tts, sigfox = posted[1][1]["devices"]
    assert (tts["protocol"], tts["codec"], tts["model"]) == ("tts", "cayennelpp", "FloodMonitoring")
    assert tts["dev_eui"] == tts["dev_eui"].lower()
    assert (sigfox["protocol"], sigfox["codec"]) == ("sigfox", "layout")
    assert [f["name"] for f in sigfox["layout"]] == ["level", "battery", "flood_mode"]
    params = sigfox["model_params"]
    assert params["alertLevel"] < params["dangerLevel"] < params["referenceLevel"]


def test_an_unreachable_mqtt_broker_is_reported_and_the_exit_status_is_1(capsys: Any) -> None:
    status = main(["plows", "--count", "2", "--messages", "5", "--mqtt-url", "mqtt://127.0.0.1:9"])
    assert status == 1
    assert "unreachable" in capsys.readouterr().out


async def test_rate_caps_the_messages_per_real_second() -> None:
    argv = ["tags", "--detectors", "200", "--tags", "500", "--messages", "40", "--speed", "0", "--rate", "50"]
    summary = await simulate(
        build_parser().parse_args([*argv, "--apikey", uuid.uuid4().hex, "--mqtt-url", MQTT_URL])
    )
    assert summary.sent == 40
    assert summary.failed == 0
    assert 0.75 <= summary.elapsed_s <= 2.5  # the 40th message waits until 39/50 s


@asynccontextmanager
async def private_mosquitto(tmp_path: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """A Mosquitto of our own on a free loopback port, so a test can stop it without harming others."""
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n")
    process = await asyncio.create_subprocess_exec("mosquitto", "-c", str(config))
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        yield f"mqtt://127.0.0.1:{port}", process
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def test_an_mqtt_broker_going_away_stops_the_run_and_reports_it(tmp_path: Path) -> None:
    async with private_mosquitto(tmp_path) as (url, process):
        argv = ["plows", "--count", "100", "--duration", "10m", "--speed", "30", "--mqtt-url", url]
        run = asyncio.create_task(simulate(build_parser().parse_args(argv)))
        await asyncio.sleep(1.0)
        process.terminate()
        summary = await asyncio.wait_for(run, 10)
    # 10 simulated minutes at 30x would take 20 s: the run stopped when the broker went.
    assert 0.5 < summary.elapsed_s < 5
    assert any("connection lost" in problem for problem in summary.problems)
    ((_, tally),) = summary.tallies.values()
    assert 50 < tally.sent < 3000
    assert tally.confirmed + tally.failed == tally.sent


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_run_and_still_prints_what_was_sent() -> None:
    argv = [sys.executable, "-m", "tests.simulate", "plows", "--count", "50", "--duration", "10m"]
    process = subprocess.Popen(
        [*argv, "--mqtt-url", MQTT_URL],
        stdout=subprocess.PIPE,
        text=True,
        cwd=_TREE_ROOT,
        # A shell starting the test command in the background ignores SIGINT, and children inherit
        # that: the run would go on for its 10 minutes, publishing into the other tests' topics.
        preexec_fn=_default_sigint,
    )
    try:
        time.sleep(4.0)  # started and sending (a plow reports within its first 20 s / 50)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert "(interrupted)" in out
    assert "chirpstack" in out
