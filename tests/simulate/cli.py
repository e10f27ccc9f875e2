"""The simulator's command line: choose a scenario, pace it in simulated time, send it, print a summary."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TextIO

import orjson

from tests.simulate import flood, plows, tags
from tests.simulate.core import Outgoing, Scenario, iso_z, undecoded
from tests.simulate.provision import provision, provisioning_requests
from tests.simulate.transport import DryRun, HttpPoster, MqttPublisher, Tally, Unreachable

SCENARIOS = ("flood", "plows", "tags")
# Per scenario: tenant, apikey, network application, simulated duration, speed.
_DEFAULTS = {
    "flood": ("takamatsu", "takamatsu-flood", "takamatsu-flood", "24h", 600.0),
    "plows": ("aizuwakamatsu", "aizuwakamatsu-plows", "7c1e0d4a-3b8f-4e6a-9f1d-2a5b6c7d8e9f", "10m", 1.0),
    "tags": ("kakogawa", "kakogawa-mimamori", "", "5m", 1.0),
}
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
EPILOG = """examples:
  python -m tests.simulate flood --speed 600 --duration 24h --provision http://127.0.0.1:1026
  python -m tests.simulate plows --count 270 --duration 10m
  python -m tests.simulate tags --detectors 1475 --tags 3000 --speed 0 --messages 100000
  python -m tests.simulate flood --dry-run --duration 2h --seed 7 --start 2026-09-01T00:00:00Z
"""


def duration(text: str) -> timedelta:
    """An argparse type: '90', '90s', '30m', '1.5h' or '2d' as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 24h or 2d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def start_time(text: str) -> datetime:
    """An argparse type: an ISO 8601 date-time (UTC when it names no offset)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time") from None
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)


def positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` that is not negative."""

    def parse(text: str) -> float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} must not be negative")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.simulate",
        description="Publish realistic device streams over the real protocols (bounded runs).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--count", type=positive(int), help="gauges (flood, default 3) or plows (default 270)")
    p.add_argument("--detectors", type=positive(int), default=1475, help="tags: fixed detectors (1475)")
    p.add_argument("--tags", type=positive(int), default=3000, help="tags: BLE tags carried around (3000)")
    p.add_argument("--phones", type=positive(int), default=100, help="tags: volunteers' phones (100)")
    p.add_argument(
        "--mqtt-url",
        default=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"),
        help="MQTT broker (default $MQTT_URL or mqtt://127.0.0.1:1883)",
    )
    p.add_argument(
        "--http-url",
        default="http://127.0.0.1:1026",
        help="the broker's HTTP bindings: Sigfox callbacks, and every family with --via http",
    )
    p.add_argument(
        "--via",
        choices=("mqtt", "http"),
        default="mqtt",
        help="TTS, ChirpStack and IoT Agent JSON over MQTT (default) or their HTTP bindings",
    )
    p.add_argument("--tenant", help="broker tenant (fiware-service) for --provision")
    p.add_argument("--apikey", help="IoT Agent apikey (tags topics, service group)")
    p.add_argument("--app", help="TTS application id (flood) or ChirpStack application UUID (plows)")
    p.add_argument("--ns-tenant", default="ttn", help="The Things Stack tenant in the topic (ttn)")
    p.add_argument(
        "--duration",
        type=duration,
        help="simulated time to cover, e.g. 90s, 30m, 24h (default: flood 24h, plows 10m, tags 5m)",
    )
    p.add_argument("--messages", type=positive(int), help="stop after this many messages")
    p.add_argument(
        "--speed",
        type=positive(float),
        help="simulated seconds per real second; 0: unpaced (default: flood 600, else 1)",
    )
    p.add_argument("--rate", type=positive(float), help="at most this many messages per real second")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1, help="MQTT QoS (1: wait for each PUBACK)")
    p.add_argument("--window", type=positive(int), default=200, help="messages awaiting PUBACK at once")
    p.add_argument("--seed", type=int, default=1, help="the same seed and --start give the same messages")
    p.add_argument("--start", type=start_time, help="simulated start, ISO 8601 (default: now)")
    p.add_argument("--provision", metavar="URL", help="POST the devices to this broker's /iot/ API first")
    p.add_argument(
        "--undecoded",
        action="store_true",
        help="LoRaWAN uplinks without decoded_payload/object (no payload formatter): the broker decodes",
    )
    p.add_argument("--dry-run", action="store_true", help="print messages as JSON lines, send nothing")
    return p


@dataclass(slots=True)
class Summary:
    """What a run did: per family what was sent, confirmed and failed, and what stopped it."""

    scenario: str
    start: datetime
    end: datetime  # simulated time the run covered up to
    elapsed_s: float
    tallies: dict[str, tuple[str, Tally]] = field(default_factory=dict)  # family -> (destination, tally)
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C

    @property
    def sent(self) -> int:
        return sum(t.sent for _, t in self.tallies.values())

    @property
    def failed(self) -> int:
        return sum(t.failed for _, t in self.tallies.values()) + len(self.problems)

    def write(self, out: TextIO, speed: float) -> None:
        rate = self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0
        pace = f"{speed:g}x" if speed else "unpaced"
        head = f"{self.scenario}: {self.sent} messages in {self.elapsed_s:.2f} s ({rate:.1f} msg/s)"
        span = f"{iso_z(self.start)} .. {iso_z(self.end)} ({self.end - self.start})"
        print(
            f"{head}; simulated {span} at {pace}" + (" (interrupted)" if self.interrupted else ""), file=out
        )
        for family, (where, t) in sorted(self.tallies.items()):
            why = ", ".join(f"{r} x{n}" for r, n in t.reasons.most_common(3))
            counts = f"sent {t.sent:>7}  confirmed {t.confirmed:>7}  failed {t.failed}"
            counts += f"  downlinks {t.downlinks}" if t.downlinks else ""
            print(f"  {family:<10} {where:<40} {counts}" + (f" ({why})" if why else ""), file=out)
        for problem in self.problems:
            print(f"  error: {problem}", file=out)


def make_scenario(args: argparse.Namespace, start: datetime) -> Scenario:
    """The scenario the arguments name, with the defaults of its town."""
    _, apikey, app, _, _ = _DEFAULTS[args.scenario]
    apikey = args.apikey or apikey
    app = args.app or app
    if args.scenario == "flood":
        count = 3 if args.count is None else args.count
        scenario = flood.scenario(count, args.seed, start, app, args.ns_tenant, apikey)
    elif args.scenario == "plows":
        scenario = plows.scenario(270 if args.count is None else args.count, args.seed, start, app, apikey)
    else:
        scenario = tags.scenario(args.detectors, args.tags, args.seed, start, apikey, args.phones)
    if args.undecoded:
        scenario.messages = map(undecoded, scenario.messages)
    return scenario


class Pace:
    """Holds each message back until its simulated time (scaled by speed) and under the rate cap."""

    def __init__(self, start: datetime, speed: float, rate: float | None) -> None:
        self._start = start
        self._speed = speed
        self._rate = rate
        self._real_start = asyncio.get_running_loop().time()

    async def wait(self, at: datetime, count: int) -> None:
        target = (at - self._start).total_seconds() / self._speed if self._speed else 0.0
        if self._rate:
            target = max(target, count / self._rate)
        delay = self._real_start + target - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._real_start


class Destinations:
    """Routes each message to MQTT (it has a topic) or HTTP (Sigfox callbacks), or prints it (dry run)."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self._args = args
        self._dry = DryRun(out, args.http_url, via_http=args.via == "http") if args.dry_run else None
        self._mqtt: MqttPublisher | None = None
        self._http: HttpPoster | None = None

    async def open(self) -> None:
        """Connect to the MQTT broker now (every scenario publishes there), so a wrong URL fails at once."""
        if self._dry is None and self._args.via == "mqtt":
            client_id = f"simulate-{self._args.scenario}-{os.getpid()}"
            self._mqtt = MqttPublisher(
                self._args.mqtt_url, client_id, qos=self._args.qos, window=self._args.window
            )
            await self._mqtt.connect()

    async def send(self, message: Outgoing) -> None:
        if self._dry is not None:
            await self._dry.send(message)
        elif message.topic is None or self._args.via == "http":
            if self._http is None:
                # aiohttp opens at most 100 connections per session.
                self._http = HttpPoster(self._args.http_url, window=min(self._args.window, 100))
                await self._http.connect()
            await self._http.send(message)
        else:
            assert self._mqtt is not None, "open() first"
            await self._mqtt.send(message)

    async def drain(self) -> None:
        if self._mqtt is not None:
            await self._mqtt.drain()
        if self._http is not None:
            await self._http.drain()

    async def close(self) -> None:
        if self._mqtt is not None:
            await self._mqtt.close()
        if self._http is not None:
            await self._http.close()

    def tallies(self) -> dict[str, tuple[str, Tally]]:
        out: dict[str, tuple[str, Tally]] = {}
        if self._dry is not None:
            out.update({f: ("dry run", t) for f, t in self._dry.tally.items()})
        if self._mqtt is not None:
            out.update({f: (self._args.mqtt_url, t) for f, t in self._mqtt.tally.items()})
        if self._http is not None:
            out.update({f: (self._args.http_url, t) for f, t in self._http.tally.items()})
        return out


async def simulate(args: argparse.Namespace, out: TextIO | None = None) -> Summary:
    """Run one bounded scenario: provision if asked, then send its messages paced in simulated time.

    ``out`` receives the dry run's JSON lines (default: stdout).
    """
    out = out or sys.stdout
    tenant, _, _, default_duration, default_speed = _DEFAULTS[args.scenario]
    start = args.start or datetime.now(UTC).replace(microsecond=0)
    scenario = make_scenario(args, start)
    span = args.duration
    if span is None and args.messages is None:
        span = duration(default_duration)  # every run is bounded
    end = start + span if span is not None else None
    speed = default_speed if args.speed is None else args.speed
    summary = Summary(args.scenario, start, start, 0.0)
    if args.provision:
        summary.problems += await _provision(args, args.tenant or tenant, scenario, out)
        if summary.problems:
            return summary
    destinations = Destinations(args, out)
    pace: Pace | None = None
    try:
        await destinations.open()
        pace = Pace(start, speed, args.rate)
        count = await _send_all(scenario, destinations, pace, end, args.messages, summary)
        await destinations.drain()
        if not summary.interrupted and end is not None and (args.messages is None or count < args.messages):
            summary.end = end  # the whole span was covered
    except Unreachable as exc:
        summary.problems.append(str(exc))
    finally:
        await destinations.close()
    summary.elapsed_s = pace.elapsed() if pace is not None else 0.0
    summary.tallies = destinations.tallies()
    return summary


async def _send_all(
    scenario: Scenario,
    destinations: Destinations,
    pace: Pace,
    end: datetime | None,
    limit: int | None,
    summary: Summary,
) -> int:
    count = 0
    try:
        for message in scenario.messages:
            if (end is not None and message.at >= end) or (limit is not None and count >= limit):
                break
            await pace.wait(message.at, count)
            await destinations.send(message)
            count += 1
            summary.end = message.at
    except asyncio.CancelledError:
        # Ctrl-C: stop sending, still collect the PUBACKs and report what was sent (a second
        # Ctrl-C cancels that too).
        summary.interrupted = True
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    return count


async def _provision(args: argparse.Namespace, tenant: str, scenario: Scenario, out: TextIO) -> list[str]:
    if args.dry_run:
        for path, body in provisioning_requests(scenario):
            line = {"provision": args.provision.rstrip("/") + path, "fiware-service": tenant, "body": body}
            out.write(orjson.dumps(line).decode() + "\n")
        return []
    return await provision(args.provision, tenant, scenario)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m tests.simulate`: 0 if nothing failed."""
    args = build_parser().parse_args(argv)
    try:
        summary = asyncio.run(simulate(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # --dry-run piped into head
        return 0
    speed = _DEFAULTS[args.scenario][4] if args.speed is None else args.speed
    summary.write(sys.stderr if args.dry_run else sys.stdout, speed)
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0
