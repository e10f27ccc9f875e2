"""The cost of metrics on the PATCH and device-ingest paths (issue 15): NGSI_METRICS=off against on.

PATCH: one schema and its snowplows (a short batch upsert), then PATCH `/entities/{id}/attrs` with
64 wrk connections, alternating a broker with metrics off and one with them on, so drift of a
loaded machine falls on both sides. Ingest: TTS gauges' QoS 1 uplinks through a private
Mosquitto (tests/perf/bench_ingest.py), off and on alternately; the figure compared is the
broker's CPU per stored message (the offered rate is below what it sustains, so the rate itself
says little). Then the counting calls alone, as one PATCH and one device message make them,
timed in this process. Prints each run and the ratios of the medians; target: within 5 %.

    .venv/bin/python -m tests.perf.bench_metrics [--seconds 8] [--rounds 2] [--ingest-rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys

from tests.perf import bench_ingest, harness, loadgen
from tests.perf.bench_write import STORED_RUN

TARGET_RATIO = 0.95
ENTITIES = 20_000

# The calls one PATCH and one device message make (route, transaction, message), timed with the
# values on and switched off, in a fresh interpreter each (the switch is for the process).
_CALLS = """
import sys, time
from broker import metrics
if sys.argv[1] == "off":
    metrics.switch_off()
route = "/ngsi-ld/v1/entities/{entity_id}/attrs"
n = 200_000
start = time.perf_counter()
for _ in range(n):
    metrics.http_request("PATCH", route, 204, 0.004)
    metrics.write_transaction("committed")
patch = (time.perf_counter() - start) / n
start = time.perf_counter()
for _ in range(n):
    metrics.device_message("tts", "mqtt", "accepted")
device = (time.perf_counter() - start) / n
print(patch * 1e6, device * 1e6)
"""


def calls_us(mode: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _CALLS, mode], capture_output=True, text=True, check=True)
    patch, device = out.stdout.split()
    return float(patch), float(device)


async def patch_runs(seconds: float, rounds: int) -> tuple[dict[bool, list[float]], dict[bool, list[float]]]:
    """PATCH/s and broker CPU microseconds per PATCH of each run, by metrics on (True) / off."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    async with harness.bench_schema("benchm") as (admin, schema, dsn):
        async with harness.broker(dsn) as running:
            await loadgen.run_async(
                loadgen.Workload("upsert", running.base, batch=100, entities=ENTITIES),
                concurrency=8,
                seconds=5,
            )
        stored = int(await admin.fetchval(f"SELECT count(*) FROM {schema}.entities WHERE tenant = 'bench'"))
        run = await admin.fetchrow(STORED_RUN.format(schema=schema), stored)
        assert run is not None
        first, end = run
        for _ in range(rounds):
            for enabled in (False, True):
                async with harness.broker(dsn, 1, NGSI_METRICS="on" if enabled else "off") as running:
                    cpu_before = running.cpu_seconds()
                    outcome = await loadgen.run_async(
                        loadgen.Workload("patch", running.base, entities=max(1, end - first), first=first),
                        concurrency=64,
                        seconds=seconds,
                    )
                    used = running.cpu_seconds() - cpu_before
                label = "on " if enabled else "off"
                per_patch = 1e6 * used / max(1, outcome.requests)
                print(
                    f"  PATCH metrics {label}: {outcome.rate:,.0f}/s, p50 {outcome.p50_ms:.1f} ms, "
                    f"p99 {outcome.p99_ms:.1f} ms, broker CPU {per_patch:.0f} us per PATCH, failed {outcome.errors}"
                )
                if outcome.errors:
                    raise RuntimeError(f"{outcome.errors} PATCH requests failed with metrics {label}")
                rates[enabled].append(outcome.rate)
                cpu[enabled].append(per_patch)
    return rates, cpu


async def ingest_cpu(seconds: float, rounds: int, rate: float) -> tuple[list[float], list[float]]:
    off: list[float] = []
    on: list[float] = []
    for _ in range(rounds):
        for enabled, cpu in ((False, off), (True, on)):
            figures = await bench_ingest.measure(
                seconds, rate, devices=500, drain=20, NGSI_METRICS="on" if enabled else "off"
            )
            label = "on " if enabled else "off"
            print(
                f"  ingest metrics {label}: {figures.rate:,.0f} msg/s stored in the window, "
                f"{figures.cpu_ms_per_message:.3f} ms CPU per message, not stored {figures.not_stored}"
            )
            cpu.append(figures.cpu_ms_per_message)
    return off, on


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ingest-rate", type=float, default=2000, help="device messages/s offered")
    args = parser.parse_args()
    rates, patch_cpu = await patch_runs(args.seconds, args.rounds)
    cpu_off, cpu_on = await ingest_cpu(max(args.seconds, 6), args.rounds, args.ingest_rate)
    (patch_on, device_on), (patch_off, device_off) = calls_us("on"), calls_us("off")
    med = statistics.median
    ratios = (
        ("PATCH (CPU per request)", med(patch_cpu[False]) / med(patch_cpu[True])),
        ("PATCH (rate, noisy on a shared machine)", med(rates[True]) / med(rates[False])),
        ("ingest (CPU per message)", med(cpu_off) / med(cpu_on)),
    )
    for name, value in ratios:
        verdict = "ok" if value >= TARGET_RATIO else "MISSED"
        print(f"{name} with metrics on / off: ratio {value:.3f} (target >= {TARGET_RATIO:.2f}) {verdict}")
    print(
        f"PATCH: {med(rates[True]):,.0f}/s on vs {med(rates[False]):,.0f}/s off; broker CPU "
        f"{med(patch_cpu[True]):.0f} vs {med(patch_cpu[False]):.0f} us per PATCH; ingest CPU "
        f"{med(cpu_on):.3f} vs {med(cpu_off):.3f} ms per message"
    )
    print(
        f"the counting calls alone: {patch_on:.2f} us per PATCH ({patch_off:.2f} us switched off), "
        f"{device_on:.2f} us per device message ({device_off:.2f} us switched off)"
    )


if __name__ == "__main__":
    asyncio.run(main())
