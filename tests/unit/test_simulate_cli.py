"""The simulator's command line: bounds, dry run output, summary and argument errors."""

from __future__ import annotations

import orjson
import pytest

from tests.simulate import main
from tests.simulate.cli import build_parser, duration

START = "2026-09-01T00:00:00Z"


def test_a_dry_run_prints_each_message_as_a_json_line_and_the_summary_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["plows", "--dry-run", "--count", "4", "--messages", "9", "--speed", "0", "--start", START]) == 0
    )
    out, err = capsys.readouterr()
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert len(lines) == 9
    assert {line["family"] for line in lines} == {"chirpstack"}
    assert all(line["topic"].startswith("application/7c1e0d4a-") for line in lines)
    assert lines[0]["at"].startswith("2026-09-01T00:00:")
    assert "plows: 9 messages" in err
    assert "chirpstack" in err


def test_a_flood_dry_run_sends_sigfox_callbacks_to_the_http_url(capsys: pytest.CaptureFixture[str]) -> None:
    base = "http://hub.example:1026"
    assert main(["flood", "--dry-run", "--duration", "1h", "--speed", "0", "--http-url", base]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    sigfox = [line for line in lines if line["family"] == "sigfox"]
    assert sigfox
    assert all(line["url"] == base + "/adapters/sigfox/uplink" and "topic" not in line for line in sigfox)
    assert all("url" not in line for line in lines if line["family"] == "tts")
    # One hour before the flood wave: every gauge reports every 10 minutes.
    assert len(lines) == 3 * 6


@pytest.mark.parametrize(
    ("scenario", "path"),
    [
        ("flood", "/adapters/tts"),
        ("plows", "/adapters/chirpstack?event=up"),
        ("tags", "/iot/json?k=kakogawa-mimamori&i="),
    ],
)
def test_via_http_sends_every_family_to_its_http_binding_on_the_broker(
    scenario: str, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [scenario, "--dry-run", "--via", "http", "--messages", "40", "--speed", "0", "--count", "5"]
    assert main(argv) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 40
    assert all("topic" not in line for line in lines)
    urls = {line["url"] for line in lines if line["family"] != "sigfox"}
    assert urls
    assert all(url.startswith("http://127.0.0.1:1026" + path) for url in urls)


def test_the_duration_bounds_a_run_in_simulated_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["plows", "--dry-run", "--count", "3", "--duration", "2m", "--speed", "0", "--start", START])
        == 0
    )
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 * 6
    assert max(line["at"] for line in lines) < "2026-09-01T00:02:00"


def test_provisioning_in_a_dry_run_prints_the_service_group_then_the_devices_in_batches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["tags", "--dry-run", "--messages", "0", "--detectors", "250", "--phones", "60"]
    argv += ["--provision", "http://hub:1026/"]
    assert main([*argv, "--tenant", "kakogawa-test"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["provision"] for line in lines] == ["http://hub:1026/iot/services"] + 4 * [
        "http://hub:1026/iot/devices"
    ]
    assert {line["fiware-service"] for line in lines} == {"kakogawa-test"}
    assert lines[0]["body"]["services"][0]["apikey"] == "kakogawa-mimamori"
    devices = [d for line in lines[1:] for d in line["body"]["devices"]]
    assert len(devices) == 310
    assert devices[0] == {
        "device_id": "det-cam-0001",
        "entity_name": "urn:ngsi-ld:Device:det-cam-0001",
        "entity_type": "Device",
        "apikey": "kakogawa-mimamori",
        "protocol": "iota-json",
        "codec": "json",
        "model": "BeaconDetector",
        "model_params": devices[0]["model_params"],
    }
    assert devices[0]["model_params"]["location"]["type"] == "Point"
    # A volunteer's phone has no fixed place: it sends its position with each sighting.
    assert devices[-1]["device_id"] == "phone-0060"
    assert devices[-1]["model_params"] == {}


@pytest.mark.parametrize(
    "argv",
    [
        ["rivers"],
        ["flood", "--duration", "soon"],
        ["flood", "--count", "-1"],
        ["flood", "--start", "yesterday"],
        ["flood", "--qos", "2"],
    ],
)
def test_bad_arguments_exit_with_status_2_and_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_durations_read_seconds_minutes_hours_and_days() -> None:
    assert [duration(t).total_seconds() for t in ("90", "90s", "30m", "1.5h", "2d")] == [
        90,
        90,
        1800,
        5400,
        172_800,
    ]
