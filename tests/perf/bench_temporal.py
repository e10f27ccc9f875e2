"""History and temporal API at 10 million rows: the figures of the temporal issue.

1. The cost history adds to the write path: batch upserts of 100 changed gauges a request
   against two broker processes on one schema, one with history (NGSI_HISTORY=true) and one
   without, in alternating rounds.
2. 10M history rows generated in SQL (generate_series): 1,000 river gauges read every 10
   minutes for ~69 days, in day partitions as a broker running that long would have them.
3. Through HTTP on loopback, p50/p95/p99 and the ratio to the server's floor (GET /health) of:
   lastN=1 over 1,000 entities, a gauge's 24 h averaged per 10 minutes, its 24 h as instances,
   and lastN=1 of one gauge; then the EXPLAIN of the lastN statement.

    .venv/bin/python tests/perf/bench_temporal.py [--gauges 1000] [--readings 10000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DEFAULT_DB = "postgresql://ngsi:ngsi@127.0.0.1:5432/ngsi"
TENANT = "kagawa"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
TARGET_P95_MS = 50.0
STEP = timedelta(minutes=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gauge_id(n: int) -> str:
    return f"urn:ngsi-ld:FloodMonitoring:g{n:05d}"


async def start_broker(dsn: str, history: bool) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "NGSI_PORT": str(port),
        "NGSI_LOG_LEVEL": "WARNING",
        "NGSI_HISTORY": "true" if history else "false",
        "NGSI_MQTT_INGEST": "false",
        # One process (as bench_query.py measures), with few connections: the database is shared.
        "NGSI_WORKERS": "1",
        "NGSI_DB_POOL_MIN": "2",
        "NGSI_DB_POOL_MAX": "10",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "broker", env=env)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"{base}/ready") as response:
                    if response.status == 200:
                        return process, base
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the broker did not become ready")


def readings(first: int, count: int, value: float, stamp: str) -> list[dict[str, Any]]:
    return [
        {
            "id": gauge_id(n),
            "type": "FloodMonitoring",
            "currentLevel": {
                "type": "Property",
                "value": value + n / 1000,
                "unitCode": "MTR",
                "observedAt": stamp,
            },
        }
        for n in range(first, first + count)
    ]


async def upsert_round(
    session: aiohttp.ClientSession, base: str, tenant: str, gauges: int, value: float
) -> float:
    """Every gauge gets a new reading, 100 per request, 4 requests in flight; return gauges/s."""
    stamp = datetime.now(UTC).isoformat()
    batches = [readings(i, min(100, gauges - i), value, stamp) for i in range(0, gauges, 100)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            async with session.post(
                f"{base}/ngsi-ld/v1/entityOperations/upsert",
                json=batch,
                params={"options": "update"},
                headers={"NGSILD-Tenant": tenant},
            ) as response:
                if response.status not in (201, 204):
                    raise RuntimeError(f"upsert answered {response.status}: {await response.text()}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(4)))
    return gauges / (time.perf_counter() - started)


async def write_cost(session: aiohttp.ClientSession, with_history: str, without: str, gauges: int) -> None:
    """Alternating rounds of 'every gauge reads a new level' against both brokers."""
    for base in (with_history, without):
        await upsert_round(session, base, "writecost", gauges, 0.0)  # create the entities, warm up
    rates: dict[str, list[float]] = {with_history: [], without: []}
    for round_no in range(1, 7):
        for base in (with_history, without) if round_no % 2 else (without, with_history):
            rates[base].append(await upsert_round(session, base, "writecost", gauges, float(round_no)))
    on, off = statistics.median(rates[with_history]), statistics.median(rates[without])
    print(
        f"write path, batch upsert of 100 changed gauges a request, {gauges} gauges a round, 6 rounds each:"
    )
    print(f"  without history {off:>9,.0f} entity updates/s (median)")
    print(
        f"  with history    {on:>9,.0f} entity updates/s (median)  -> history costs {100 * (1 - on / off):.1f} %"
    )


async def day_partitions(conn: asyncpg.Connection, first: date) -> None:
    """Give each day from ``first`` its partition, as a broker running since then would have."""
    days = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'attribute_history'::regclass AND c.relname ~ '^attribute_history_p[0-9]{8}$'"
        " ORDER BY c.relname LIMIT 1"
    )
    oldest = datetime.strptime(days[0]["relname"][-8:], "%Y%m%d").date()
    await conn.execute("ALTER TABLE attribute_history DETACH PARTITION attribute_history_past")
    await conn.execute("DROP TABLE attribute_history_past")
    await conn.execute(
        "CREATE TABLE attribute_history_past PARTITION OF attribute_history"
        f" FOR VALUES FROM (MINVALUE) TO ('{first.isoformat()} 00:00:00+00')"
    )
    day = first
    while day < oldest:
        upper = day + timedelta(days=1)
        await conn.execute(
            f"CREATE TABLE attribute_history_p{day:%Y%m%d} PARTITION OF attribute_history"
            f" FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ('{upper.isoformat()} 00:00:00+00')"
        )
        day = upper


_GENERATE = """
INSERT INTO attribute_history (tenant, entity_id, types, attr, dataset_id, instance, ts,
                               observed_at, created_at, modified_at)
SELECT $1, 'urn:ngsi-ld:FloodMonitoring:g' || lpad(g::text, 5, '0'), ARRAY[$2], $3, '',
       jsonb_build_object('type', 'Property', 'value', round((1 + sin(r / 50.0 + g))::numeric, 3),
                          'unitCode', 'MTR',
                          'observedAt', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                          'createdAt', $5::text, 'modifiedAt', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
       t, t, $4::timestamptz, t
FROM generate_series($6::int, $7::int) AS g,
     generate_series(0, $8::int - 1) AS r,
     LATERAL (SELECT $9::timestamptz - (($8::int - 1 - r) * interval '10 minutes') AS t) AS tt
"""


async def generate(dsn: str, gauges: int, per_gauge: int, end: datetime) -> float:
    """Fill attribute_history with gauges x per_gauge rows (in parallel chunks); return rows/s."""
    start = end - (per_gauge - 1) * STEP
    conn = await asyncpg.connect(dsn)
    await day_partitions(conn, start.date())
    await conn.execute("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", TENANT)
    await conn.execute(
        "INSERT INTO history_streams (tenant, id, attr, dataset_id, types)"
        " SELECT $1, 'urn:ngsi-ld:FloodMonitoring:g' || lpad(g::text, 5, '0'), $2, '', ARRAY[$3]"
        " FROM generate_series(0, $4::int - 1) AS g",
        TENANT,
        VOCAB + "currentLevel",
        VOCAB + "FloodMonitoring",
        gauges,
    )
    await conn.close()
    chunk = max(1, gauges // 20)
    queue = [(g, min(g + chunk, gauges) - 1) for g in range(0, gauges, chunk)]
    created = start.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    async def worker() -> None:
        worker_conn = await asyncpg.connect(dsn)
        try:
            while queue:
                low, high = queue.pop(0)
                await worker_conn.execute(
                    _GENERATE,
                    TENANT,
                    VOCAB + "FloodMonitoring",
                    VOCAB + "currentLevel",
                    start,
                    created,
                    low,
                    high,
                    per_gauge,
                    end,
                )
                print(f"  gauges {low}-{high} done", flush=True)
        finally:
            await worker_conn.close()

    started = time.perf_counter()
    await asyncio.gather(worker(), worker())
    return gauges * per_gauge / (time.perf_counter() - started)


async def timed(requests: int, call: Callable[[int], Awaitable[None]]) -> list[float]:
    samples = []
    for i in range(requests):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


async def get_json(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], check: Callable[[Any], bool]
) -> None:
    async with session.get(url, params=params, headers={"NGSILD-Tenant": TENANT}) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} {params} answered {response.status}: {await response.text()}")
        body = await response.json(content_type=None)
        if not check(body):
            raise RuntimeError(f"{url} {params}: unexpected answer {str(body)[:300]}")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def scenarios(
    base: str, gauges: int, end: datetime
) -> dict[str, Callable[[aiohttp.ClientSession, int], Awaitable[None]]]:
    url = f"{base}/ngsi-ld/v1/temporal/entities"
    day = {
        "timerel": "between",
        "timeAt": iso(end - timedelta(hours=24)),
        "endTimeAt": iso(end),
    }
    return {
        "lastN=1, 1,000 gauges": lambda s, i: get_json(
            s,
            url,
            {"type": "FloodMonitoring", "lastN": "1", "limit": "1000"},
            lambda b: len(b) == min(1000, gauges) and all(len(e["currentLevel"]) == 1 for e in b),
        ),
        "24 h avg per 10 min": lambda s, i: get_json(
            s,
            f"{url}/{gauge_id(i % gauges)}",
            {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "PT10M", **day},
            lambda b: len(b["currentLevel"]["avg"]) == 144,
        ),
        "24 h of instances": lambda s, i: get_json(
            s, f"{url}/{gauge_id(i % gauges)}", day, lambda b: len(b["currentLevel"]) == 144
        ),
        "lastN=1, one gauge": lambda s, i: get_json(
            s, f"{url}/{gauge_id(i % gauges)}", {"lastN": "1"}, lambda b: len(b["currentLevel"]) == 1
        ),
    }


async def explain(conn: asyncpg.Connection, gauges: int) -> None:
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    plan = await conn.fetch(
        "EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF, SUMMARY ON)"
        " SELECT s.id, h.* FROM history_streams s CROSS JOIN LATERAL ("
        "  SELECT h.id, h.instance, h.ts FROM attribute_history h"
        "  WHERE h.tenant = s.tenant AND h.entity_id = s.id AND h.attr = s.attr AND h.dataset_id = s.dataset_id"
        "  AND h.deleted_at IS NULL AND h.ts >= $3 ORDER BY h.ts DESC LIMIT 1) h"
        " WHERE s.tenant = $1 AND s.id = ANY($2::text[])",
        TENANT,
        [gauge_id(n) for n in range(min(1000, gauges))],
        datetime.now(UTC) - timedelta(days=2),
    )
    print("\nEXPLAIN lastN=1 over 1,000 streams (first step: the last two days, see read.instances):")
    for row in plan[:12]:
        print("   ", row[0] if len(row[0]) < 140 else row[0][:137] + "...")
    print("    ...")
    for row in plan[-3:]:
        print("   ", row[0])


async def measure(base: str, gauges: int, end: datetime, requests: int) -> None:
    async with aiohttp.ClientSession() as session:
        floor = await timed(requests, lambda i: _health(session, base))
        floor_p50 = percentiles(floor)[0]
        print(f"\nlatency floor (GET /health) p50 {floor_p50:.2f} ms\n")
        print(
            f"{'query':<26}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'p95/floor':>11}   target p95 < {TARGET_P95_MS} ms"
        )
        for name, call in scenarios(base, gauges, end).items():
            await timed(10, functools.partial(_call_with, call, session))
            p50, p95, p99 = percentiles(await timed(requests, functools.partial(_call_with, call, session)))
            verdict = "met" if p95 < TARGET_P95_MS else "MISSED"
            print(f"{name:<26}{p50:>9.2f}{p95:>9.2f}{p99:>9.2f}{p95 / floor_p50:>11.1f}   {verdict}")


async def _call_with(
    call: Callable[[aiohttp.ClientSession, int], Awaitable[None]], session: aiohttp.ClientSession, i: int
) -> None:
    await call(session, i)


async def _health(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(f"{base}/health") as response:
        await response.read()


async def prepare(admin: asyncpg.Connection, dsn: str, schema: str, args: argparse.Namespace) -> datetime:
    """Load the history (unless reusing a kept schema); return the time of the newest reading."""
    if args.reuse:
        end: datetime = await admin.fetchval(f"SELECT max(ts) FROM {schema}.attribute_history")
        return end
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = args.gauges * args.readings
    print(
        f"\ngenerating {rows:,} history rows ({args.gauges} gauges x {args.readings} readings, 10 min apart)"
    )
    rate = await generate(dsn, args.gauges, args.readings, end)
    print(f"generated at {rate:,.0f} rows/s (INSERT ... SELECT generate_series, 2 connections)")
    started = time.perf_counter()
    await admin.execute(f"VACUUM (ANALYZE) {schema}.attribute_history")
    await admin.execute(f"ANALYZE {schema}.history_streams")
    print(f"VACUUM ANALYZE took {time.perf_counter() - started:.0f} s")
    return end


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gauges", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=10_000, help="history rows per gauge")
    parser.add_argument(
        "--write-gauges", type=int, default=5000, help="gauges per write-cost round (0: skip)"
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark schema")
    parser.add_argument("--reuse", metavar="SCHEMA", help="measure the queries on a schema kept by --keep")
    args = parser.parse_args()

    base_dsn = os.environ.get("DATABASE_URL", DEFAULT_DB)
    schema = args.reuse or f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_dsn)
    if not args.reuse:
        await admin.execute(f"CREATE SCHEMA {schema}")
    print(f"schema {schema} (dropped at the end unless --keep)")
    dsn = f"{base_dsn}{'&' if '?' in base_dsn else '?'}search_path={schema},public"
    processes = []
    try:
        with_history, base = await start_broker(dsn, history=True)
        processes.append(with_history)
        if args.write_gauges and not args.reuse:
            without_history, base_off = await start_broker(dsn, history=False)
            processes.append(without_history)
            async with aiohttp.ClientSession() as session:
                await write_cost(session, base, base_off, args.write_gauges)
            without_history.terminate()
            await without_history.wait()
        end = await prepare(admin, dsn, schema, args)
        parts = await admin.fetchval(
            f"SELECT count(*) FROM pg_inherits WHERE inhparent = '{schema}.attribute_history'::regclass"
        )
        total = await admin.fetchval(f"SELECT count(*) FROM {schema}.attribute_history")
        print(f"{total:,} rows in {parts} partitions")
        await measure(base, args.gauges, end, args.requests)
        await admin.execute(f"SET search_path = {schema}, public")
        await explain(admin, args.gauges)
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
            await asyncio.wait_for(process.wait(), timeout=10)
        if not args.keep:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
