"""Every benchmark in one command, ending with one table: figure, target, raw limit, ratio, lost.

    .venv/bin/python -m tests.perf.run [--quick] [--only NAME[,NAME]] [--workers N]

NAME is one of: limits, ingest, write, memory, query, notify, temporal. The raw limits are
measured first, in the same run, so each ratio compares with this machine as it is now. Full
run: ingest 60 s, writes 20 s each, memory up to 1,000,000 entities, the query, notification and
temporal programs at their own defaults (about 25 minutes). --quick: ingest 10 s, writes
10 s, memory at 10k and 100k, smaller query/notify/temporal runs (about 6 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.perf import bench_ingest, bench_memory, bench_write, harness, limits

ALL = ("limits", "ingest", "write", "memory", "query", "notify", "temporal")


@dataclass
class Row:
    figure: str
    measured: str
    target: str
    raw: str = ""
    ratio: str = ""
    lost: str = ""
    verdict: str = ""


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.raw: dict[str, float] = {}

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  -> {row.figure}: {row.measured} ({row.verdict or 'no target'})", flush=True)

    def render(self) -> str:
        head = ("figure", "measured", "target", "raw limit (same run)", "ratio", "dropped / lost", "")
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for r in self.rows:
            cells = (r.figure, r.measured, r.target, r.raw, r.ratio, r.lost, r.verdict)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def ratio(value: float, raw: float | None) -> str:
    return f"{value / raw:.0%}" if raw else ""


async def run_limits(table: Table, seconds: float, workers: int) -> None:
    table.raw["pg"] = await limits.postgres_upsert_rate(seconds)
    hello = await limits.aiohttp_hello_rate(seconds, concurrency=64, workers=workers)
    table.raw["http"] = hello.rate
    with harness.mosquitto() as mqtt:
        table.raw["mqtt"] = await asyncio.to_thread(limits.mqtt_qos1_rate, mqtt.port, seconds)
    for key, text in (("pg", "rows/s"), ("http", "req/s"), ("mqtt", "msg/s")):
        print(f"  raw {key}: {table.raw[key]:,.0f} {text}")


async def run_ingest(table: Table, seconds: float, workers: int, offered: float) -> None:
    raw = table.raw.get("mqtt")
    f = await bench_ingest.measure(seconds, offered, workers)
    bench_ingest.report(f)
    met = f.rate >= bench_ingest.TARGET and (raw is None or f.rate >= bench_ingest.TARGET_RATIO * raw)
    table.add(
        Row(
            f"MQTT ingest, TTS gauges QoS 1, {seconds:.0f} s, offered {offered:,.0f}/s",
            f"{f.rate:,.0f} msg/s",
            ">= 10,000 msg/s and >= 65% of raw",
            f"{raw:,.0f} msg/s paho/Mosquitto" if raw else "",
            ratio(f.rate, raw),
            f"Mosquitto drop log lines: {f.mosquitto_drop_lines}; {f.not_stored:,} of {f.published:,} "
            f"still queued after {f.drained_seconds:.0f} s drain; dead letters {f.dead_letters}",
            "met" if met else "MISSED",
        )
    )


async def run_write(table: Table, seconds: float, workers: int) -> None:
    f = await bench_write.measure(seconds, workers)
    bench_write.report(f)
    up, patch = f.upsert, f.patch
    table.add(
        Row(
            "HTTP batch upsert, 100 entities a request, 16 connections",
            f"{up.item_rate:,.0f} entities/s (p99 {up.p99_ms:.0f} ms)",
            ">= 20,000 entities/s",
            f"{table.raw['pg']:,.0f} rows/s asyncpg upsert" if "pg" in table.raw else "",
            ratio(up.item_rate, table.raw.get("pg")),
            f"{up.errors} failed requests",
            "met" if up.item_rate >= bench_write.UPSERT_TARGET else "MISSED",
        )
    )
    ok = patch.rate >= bench_write.PATCH_TARGET and patch.p99_ms < bench_write.PATCH_P99_TARGET_MS
    table.add(
        Row(
            "PATCH attrs, one entity, 64 connections",
            f"{patch.rate:,.0f} req/s, p99 {patch.p99_ms:.1f} ms",
            ">= 3,000 req/s, p99 < 50 ms",
            f"{table.raw['http']:,.0f} req/s aiohttp hello" if "http" in table.raw else "",
            ratio(patch.rate, table.raw.get("http")),
            f"{patch.errors} failed requests",
            "met" if ok else "MISSED",
        )
    )


async def run_memory(table: Table, sizes: list[int], seconds: float, workers: int) -> None:
    results = await bench_memory.measure(sizes, seconds, workers=workers, report=bench_memory.print_size)
    for f in results:
        rss = max(f.rss_mb) if f.rss_mb else 0.0
        gets = f.queries
        table.add(
            Row(
                f"at {f.size:,} entities: RSS per process; upsert; get / near / count p95",
                f"{rss:.0f} MB; {f.upsert.item_rate:,.0f} ent/s; {gets['get by id'][1]:.1f} / "
                f"{gets['near 500 m'][1]:.1f} / {gets['count=true whole type'][1]:.1f} ms",
                "RSS < 300 MB (at 1M)",
                f"{table.raw['pg']:,.0f} rows/s" if "pg" in table.raw else "",
                ratio(f.upsert.item_rate, table.raw.get("pg")),
                f"{f.upsert.errors} failed requests",
                "met" if rss < bench_memory.RSS_TARGET_MB else "MISSED",
            )
        )
        target = bench_memory.QUERY_P95_TARGET_MS
        for name, extra in (("count=true whole type", ", exact"), ("near 500 m", "")):
            p50, p95, p99 = gets[name]
            exact = name.startswith("count") and f.count_exact is not True
            table.add(
                Row(
                    f"at {f.size:,} entities: {name}",
                    f"p50 {p50:.1f} / p95 {p95:.1f} / p99 {p99:.1f} ms"
                    + (f"; exact: {f.count_exact}" if name.startswith("count") else ""),
                    f"p95 < {target:.0f} ms{extra} (at 1M)",
                    f"GET /health p50 {f.floor_ms:.2f} ms",
                    f"x{p95 / f.floor_ms:.0f} floor" if f.floor_ms else "",
                    "",
                    "MISSED" if p95 >= target or exact else "met",
                )
            )


def run_program(table: Table, name: str, args: list[str]) -> None:
    """Run one of the query/notify/temporal programs and copy its verdict lines into the table."""
    path = harness.ROOT / "tests" / "perf" / f"bench_{name}.py"
    if not path.exists():
        table.add(Row(f"{name} (bench_{name}.py)", "not run: program missing", ""))
        return
    # The programs pass their environment to the broker they start: without this it would join the
    # shared Mosquitto's subscription group and take (and dead-letter) other brokers' device messages.
    env = {**os.environ, "DATABASE_URL": harness.bench_dsn(), "NGSI_MQTT_INGEST": "false"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(path), *args], env=env, capture_output=True, text=True, cwd=harness.ROOT
    )
    print(done.stdout[-6000:], done.stderr[-2000:] if done.returncode else "", sep="")
    found = False
    for line in done.stdout.splitlines():
        verdict = re.search(r"\b(met|MISSED)\s*$", line) or re.search(r": (met|MISSED)\b", line)
        if verdict:
            found = True
            table.add(
                Row(
                    f"{name}: {re.split(r'  |: ', line.strip())[0][:60]}",
                    _figures(line),
                    "see program",
                    verdict=verdict[1],
                )
            )
    if not found:
        status = f"exit {done.returncode}" if done.returncode else "no verdict lines"
        table.add(
            Row(f"{name} (bench_{name}.py)", status, "", verdict=f"{time.perf_counter() - started:.0f} s")
        )


def _figures(line: str) -> str:
    """p50 / p95 / p99 of a program's verdict line: its first three decimals (names hold only integers)."""
    numbers = re.findall(r"\d[\d,]*\.\d+", line)
    return " / ".join(numbers[:3]) + " ms (p50 / p95 / p99)" if len(numbers) >= 3 else line[:60]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(ALL))
    parser.add_argument("--workers", type=int, default=1, help="broker processes (NGSI_WORKERS)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    quick = args.quick
    table = Table()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, {platform.platform()}"
    )
    print(
        f"database {harness.bench_dsn()}, broker workers {args.workers}, {'quick' if quick else 'full'} run"
    )
    # Other work on the machine moves every figure: say how busy it was.
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    if "limits" in only:
        print("== raw limits", flush=True)
        await run_limits(table, 5 if quick else 10, args.workers)
    if "ingest" in only:
        print("== MQTT ingest", flush=True)
        await run_ingest(table, 10 if quick else 60, args.workers, offered=12_000)
        if not quick:
            # Offered near what one process stores: the sustainable rate without a growing backlog.
            await run_ingest(table, 30, args.workers, offered=1_500)
    if "write" in only:
        print("== HTTP writes", flush=True)
        await run_write(table, 10 if quick else 20, args.workers)
    if "memory" in only:
        print("== memory and cost growth", flush=True)
        sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
        await run_memory(table, sizes, 5 if quick else 10, args.workers)
    programs = {
        "query": ["--entities", "20000", "--other-tenants", "2", "--requests", "100"] if quick else [],
        "notify": ["--rate", "500", "--seconds", "10"] if quick else [],
        "temporal": ["--gauges", "200", "--readings", "2000", "--requests", "50"]
        if quick
        else ["--gauges", "1000", "--readings", "2000"],
    }
    for name, extra in programs.items():
        if name in only:
            print(f"== {name} (bench_{name}.py {' '.join(extra)})", flush=True)
            await asyncio.to_thread(run_program, table, name, extra)
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(table.render())


if __name__ == "__main__":
    asyncio.run(main())
