"""The HTTP load generator: wrk (C, closed loop, Lua-scripted bodies), installed from Debian when missing.

An asyncio/aiohttp client tops out near 4,000 requests/s per process on this machine, which
would measure the client, not the broker; wrk does ~10x that. The same wrk drives the
hello-world server of the raw limit and the broker, so the ratio compares like with like.
Workloads are Lua scripts: GET, batch upsert (``batch`` snowplows a request, ids cycling
through ``entities``), PATCH of one attribute of a random snowplow among ``entities``.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

TYPE = "Vehicle"


@dataclass(frozen=True)
class Workload:
    kind: str  # get | upsert | patch
    base: str
    tenant: str = "bench"
    path: str = "/health"
    batch: int = 100
    entities: int = 100_000
    first: int = 0  # patch: the lowest snowplow number
    key: str = ""  # an API key sent as Authorization: Bearer (NGSI_AUTH=on)


@dataclass
class Outcome:
    requests: int
    errors: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    items_per_request: int = 1

    @property
    def item_rate(self) -> float:
        return self.rate * self.items_per_request


def vehicle(n: int, rng: random.Random) -> dict[str, Any]:
    """A snowplow entity like the reference service's (about 400 bytes as JSON)."""
    return {
        "id": f"urn:ngsi-ld:Vehicle:p{n:07d}",
        "type": TYPE,
        "vehicleType": {"type": "Property", "value": "constructionOrMaintenanceVehicle"},
        "speed": {
            "type": "Property",
            "value": round(rng.uniform(0, 60), 1),
            "unitCode": "KMH",
            "observedAt": "2026-11-22T01:00:00Z",
        },
        "location": {
            "type": "GeoProperty",
            "value": {
                "type": "Point",
                "coordinates": [round(rng.uniform(133.45, 134.45), 6), round(rng.uniform(34.05, 34.5), 6)],
            },
        },
    }


_COMMON = """
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread) thread:set("tid", #threads); table.insert(threads, thread) end
function init(args) math.randomseed(tid * 7919 + 1); counter = tid * %(batch)d end
function response(status, headers, body)
  if status >= 300 and not printed then printed = true; io.stderr:write(status .. " " .. body:sub(1, 200) .. "\\n") end
end
wrk.headers["Content-Type"] = "application/json"
wrk.headers["NGSILD-Tenant"] = "%(tenant)s"
"""

_VEHICLE = (
    '{"id":"urn:ngsi-ld:Vehicle:p%%07d","type":"Vehicle",'
    '"vehicleType":{"type":"Property","value":"constructionOrMaintenanceVehicle"},'
    '"speed":{"type":"Property","value":%%.1f,"unitCode":"KMH","observedAt":"2026-11-22T01:00:00Z"},'
    '"location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[%%.6f,%%.6f]}}}'
)

_SCRIPTS = {
    "get": "",
    "upsert": """
function request()
  local parts = {}
  for i = 0, %(batch)d - 1 do
    local n = (counter + i) %% %(entities)d
    parts[#parts + 1] = string.format('"""
    + _VEHICLE
    + """', n, math.random() * 60, 133.45 + math.random(), 34.05 + math.random() * 0.45)
  end
  counter = counter + %(batch)d * %(threads)d
  return wrk.format("POST", "/ngsi-ld/v1/entityOperations/upsert", nil, "[" .. table.concat(parts, ",") .. "]")
end
""",
    "patch": """
function request()
  local n = %(first)d + math.random(0, %(entities)d - 1)
  local body = string.format('{"speed":{"type":"Property","value":%%.1f}}', math.random() * 60)
  return wrk.format("PATCH", string.format("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:p%%07d/attrs", n), nil, body)
end
""",
}


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get (Debian package wrk) when missing."""
    found = shutil.which("wrk")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "wrk"], check=True)
        found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


def _unit_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        return float("nan")
    value, unit = float(match[1]), match[2]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse(output: str, seconds: float, items: int) -> Outcome:
    requests = int(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(bad[1]) if bad else 0
    if socket_errors:
        errors += sum(int(socket_errors[i]) for i in range(1, 5))
    # The distribution's lines start with the percentile ("Req/Sec ... 72.50%" must not match).
    p50 = _unit_ms(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)[1])  # type: ignore[index]
    p99 = _unit_ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)[1])  # type: ignore[index]
    good = requests - errors
    return Outcome(good, errors, seconds, good / requests * rate if requests else 0.0, p50, p99, items)


def run(workload: Workload, *, concurrency: int, seconds: float, threads: int = 2) -> Outcome:
    """Run wrk for ``seconds`` with ``concurrency`` connections; blocks."""
    wrk = ensure_wrk()
    values: dict[str, int | str] = {
        "batch": workload.batch if workload.kind == "upsert" else 1,
        "tenant": workload.tenant,
        "entities": workload.entities,
        "first": workload.first,
        "threads": threads,
    }
    script = (_COMMON + _SCRIPTS[workload.kind]) % values
    if workload.key:
        script += f'wrk.headers["Authorization"] = "Bearer {workload.key}"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as file:
        file.write(script)
        file.flush()
        command = [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", file.name]
        done = subprocess.run(
            [*command, workload.base + workload.path], capture_output=True, text=True, timeout=seconds + 60
        )
    if done.returncode != 0 or "requests in" not in done.stdout:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    outcome = parse(done.stdout, seconds, int(values["batch"]))
    if done.stderr.strip():
        print(f"    first failed answer: {done.stderr.strip().splitlines()[0]}")
    return outcome


async def run_async(workload: Workload, *, concurrency: int, seconds: float) -> Outcome:
    return await asyncio.to_thread(run, workload, concurrency=concurrency, seconds=seconds)
