"""The simulators feeding the broker itself: provisioned over /iot, sent over Mosquitto and HTTP, stored.

Each test provisions the simulated devices in a fresh tenant with ``--provision`` (the payload
the simulator sends is what the README documents), runs a bounded scenario unpaced, and reads
the result through the NGSI-LD API: the last reading of every device is the entity's value, and
the history holds every reading once.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import random
import struct
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from adapters.codecs import cayenne
from tests.conftest import Api, eventually
from tests.simulate import simulate
from tests.simulate.cli import Summary, build_parser

MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
START = "2026-09-01T00:00:00Z"
ENVIRONMENT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"
)
TRANSPORTATION = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld"
)
DEVICE = "https://raw.githubusercontent.com/smart-data-models/dataModel.Device/master/context.jsonld"


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


def base_url(api: Api) -> str:
    return str(api.client.make_url("/")).rstrip("/")


async def run(argv: list[str]) -> list[dict[str, Any]]:
    """Run the scenario for real and return its messages as its dry run prints them."""
    messages, _ = await run_with_summary(argv)
    return messages


async def run_with_summary(argv: list[str]) -> tuple[list[dict[str, Any]], Summary]:
    out = io.StringIO()
    await simulate(build_parser().parse_args([*argv, "--dry-run"]), out)
    summary = await simulate(build_parser().parse_args(argv))
    assert summary.problems == []
    assert summary.failed == 0
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    messages = [line for line in lines if "provision" not in line]
    assert summary.sent == len(messages)
    return messages, summary


async def until(api: Api, path: str, ready: Callable[[Any], bool], context: str, within: float = 20.0) -> Any:
    """GET ``path`` until ``ready(body)`` holds."""

    async def check() -> Any:
        response = await api.request("GET", path, headers=link(context))
        if response.status != 200:
            return None
        body = await response.json(content_type=None)
        return body if ready(body) else None

    return await eventually(check, within=within, what=f"{path} as expected")


def common(api: Api, scenario: str) -> list[str]:
    seed = str(random.randrange(1 << 30))  # ids differ from run to run: the MQTT topics are shared
    base = base_url(api)
    # An apikey of the run's own: one tenant holds an apikey, and earlier runs' tenants remain.
    apikey = f"{scenario}-{uuid.uuid4().hex[:8]}"
    return [scenario, "--seed", seed, "--start", START, "--speed", "0", "--mqtt-url", MQTT_URL,
            "--provision", base, "--tenant", api.tenant, "--apikey", apikey]  # fmt: skip


async def test_a_simulated_flood_ends_as_flood_monitoring_entities_with_every_reading_in_their_history(
    api: Api,
) -> None:
    base = base_url(api)
    app = f"sim-{uuid.uuid4().hex[:8]}"
    argv = [*common(api, "flood"), "--count", "2", "--duration", "12h", "--app", app]
    messages = await run([*argv, "--http-url", base])
    tts = [m["body"] for m in messages if m["family"] == "tts"]
    sigfox = [m["body"] for m in messages if m["family"] == "sigfox"]
    provisioned = await api.request("GET", "/iot/devices", headers={"fiware-service": api.tenant})
    bank = {d["entity_name"]: d["model_params"]["bankHeight"] for d in (await provisioned.json())["devices"]}
    last_tts = tts[-1]["uplink_message"]["decoded_payload"]["analog_in_1"]
    last_sigfox = struct.unpack(">h", bytes.fromhex(sigfox[-1]["data"])[:2])[0] / 1000
    for number, reading, count in ((1, last_tts, len(tts)), (2, last_sigfox, len(sigfox))):
        entity_id = f"urn:ngsi-ld:FloodMonitoring:wl-kasuga-{number:03d}"
        level = round(bank[entity_id] + reading, 3)
        path = f"/ngsi-ld/v1/temporal/entities/{entity_id}?attrs=currentLevel,floodLevelStatus&lastN=1000"

        def complete(body: Any, count: int = count) -> bool:
            return len(body.get("currentLevel", [])) == count

        history = await until(api, path, complete, ENVIRONMENT)
        entity = await until(api, f"/ngsi-ld/v1/entities/{entity_id}", lambda _: True, ENVIRONMENT)
        assert abs(entity["currentLevel"]["value"] - level) < 0.0015
        assert entity["currentLevel"]["unitCode"] == "MTR"
        statuses = [i["value"] for i in history["floodLevelStatus"]]
        assert {"Normal", "Alert", "Danger"} <= set(statuses)


@pytest.mark.parametrize(("via", "options"), [("mqtt", []), ("http", []), ("mqtt", ["--undecoded"])])
async def test_simulated_plows_end_as_vehicles_at_their_last_reported_position(
    api: Api, via: str, options: list[str]
) -> None:
    argv = [*common(api, "plows"), "--count", "6", "--messages", "60", "--app", str(uuid.uuid4())]
    argv += ["--via", via, "--http-url", base_url(api), *options]
    messages = await run(argv)
    last: dict[str, dict[str, Any]] = {}
    for message in messages:
        last[message["body"]["deviceInfo"]["deviceName"]] = message["body"]
    assert len(last) == 6
    for name, body in last.items():
        # Without the network's "object", the broker decodes "data" with the provisioned codec.
        measures = cayenne.decode(base64.b64decode(body["data"]))
        assert ("object" in body) != ("--undecoded" in options)
        # A plow standing still reports the same position twice: wait for the last message's
        # speed too, or the one before it may be what is stored yet.
        entity = await until(
            api,
            f"/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:{name}",
            functools.partial(_at_position, measures["gps_1"], measures["analog_in_2"]),
            TRANSPORTATION,
        )
        assert entity["speed"]["unitCode"] == "KMH"


@pytest.mark.parametrize("via", ["mqtt", "http"])
async def test_simulated_tag_sightings_end_as_beacons_named_by_pseudonym_only(api: Api, via: str) -> None:
    argv = [*common(api, "tags"), "--detectors", "60", "--tags", "400", "--phones", "10", "--messages", "80"]
    argv += ["--via", via, "--http-url", base_url(api)]
    messages = await run([*argv, "--apikey", f"mimamori-{uuid.uuid4().hex[:8]}"])
    raw_tags = {s["tag"] for m in messages for s in m["body"]}
    path = "/ngsi-ld/v1/entities?type=Device&q=category==%22beacon%22&limit=1000&count=true"
    beacons = await until(api, path, lambda body: len(body) == len(raw_tags), DEVICE)
    text = orjson.dumps(beacons).decode()
    assert not any(tag in text for tag in raw_tags)
    assert all(b["id"].startswith("urn:ngsi-ld:Device:tag-") for b in beacons)


async def test_a_command_to_a_simulated_sigfox_gauge_rides_the_reply_to_its_next_bidir_callback(
    api: Api,
) -> None:
    base = base_url(api)
    argv = [*common(api, "flood"), "--count", "2", "--app", f"sim-{uuid.uuid4().hex[:8]}", "--http-url", base]
    await run([*argv, "--duration", "1h"])  # the gauges exist, each Sigfox gauge asked once already
    gauge = "urn:ngsi-ld:FloodMonitoring:wl-kasuga-002"
    interval = {"type": "Property", "value": "0102025800000000"}  # report every 600 s
    response = await api.request("PATCH", f"/ngsi-ld/v1/entities/{gauge}/attrs/interval", interval)
    assert response.status == 204, await response.text()

    # The same run again, longer: the first hour repeats (frames already seen), 6 h later it asks again.
    _, summary = await run_with_summary([*argv, "--duration", "7h"])

    assert summary.tallies["sigfox"][1].downlinks == 1
    await until(
        api, f"/ngsi-ld/v1/entities/{gauge}", lambda e: e["interval_status"]["value"] == "SENT", ENVIRONMENT
    )


def _at_position(gps: dict[str, float], speed: float, entity: Any) -> bool:
    """The entity shows the message of this position and speed."""
    position = entity.get("location", {}).get("value", {}).get("coordinates")
    return bool(
        position == [gps["longitude"], gps["latitude"]] and entity.get("speed", {}).get("value") == speed
    )
