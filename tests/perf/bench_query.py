"""Query latency at 100,000 entities: the figures of the query-engine issue.

Loads river gauges (FloodMonitoring) and snowplows (Vehicle) spread over Kagawa
prefecture into one tenant, plus smaller tenants beside it, through the real
HTTP API of a broker process; then times each query shape from a client on
loopback and prints p50/p95/p99, the ratio to the latency floor of the same
server (GET /health) and the EXPLAIN plan PostgreSQL uses.

    .venv/bin/python tests/perf/bench_query.py [--entities 100000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from broker.jsonld.context import core_term_map
from broker.query.entity_query import EntityQuery, Selector, where_sql
from broker.query.geo import parse_geo_query
from broker.query.params import Params
from broker.query.qlang import parse_q
from broker.query.types import parse_type_expr

DEFAULT_DB = "postgresql://ngsi:ngsi@127.0.0.1:5432/ngsi"
TENANT = "kagawa"
# Kagawa prefecture, roughly; Takamatsu city centre and a polygon around it.
WEST, EAST, SOUTH, NORTH = 133.45, 134.45, 34.05, 34.50
TAKAMATSU = (134.0466, 34.3401)
CITY = [[133.98, 34.28], [134.12, 34.28], [134.12, 34.38], [133.98, 34.38], [133.98, 34.28]]
TARGET_P95_MS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def entity(n: int, rng: random.Random) -> dict[str, Any]:
    lon, lat = rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)
    location = {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]},
    }
    if n % 2 == 0:
        return {
            "id": f"urn:ngsi-ld:FloodMonitoring:g{n:07d}",
            "type": "FloodMonitoring",
            "currentLevel": {
                "type": "Property",
                "value": round(rng.uniform(0, 3), 2),
                "unitCode": "MTR",
                "observedAt": "2026-11-22T01:00:00Z",
            },
            "alertLevel": {"type": "Property", "value": 1.4, "unitCode": "MTR"},
            "dangerLevel": {"type": "Property", "value": 2.0, "unitCode": "MTR"},
            "location": location,
        }
    return {
        "id": f"urn:ngsi-ld:Vehicle:p{n:07d}",
        "type": "Vehicle",
        "vehicleType": {"type": "Property", "value": "constructionOrMaintenanceVehicle"},
        "speed": {
            "type": "Property",
            "value": round(rng.uniform(0, 60), 1),
            "unitCode": "KMH",
            "observedAt": "2026-11-22T01:00:00Z",
        },
        "location": location,
    }


async def load(session: aiohttp.ClientSession, base: str, tenant: str, count: int, seed: int) -> float:
    """Batch-upsert ``count`` entities (100 a request, 4 in flight); return entities/s."""
    rng = random.Random(seed)
    batches = [[entity(n, rng) for n in range(i, min(i + 100, count))] for i in range(0, count, 100)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            async with session.post(
                f"{base}/ngsi-ld/v1/entityOperations/upsert", json=batch, headers={"NGSILD-Tenant": tenant}
            ) as response:
                if response.status not in (201, 204):
                    raise RuntimeError(f"upsert answered {response.status}: {await response.text()}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(4)))
    return count / (time.perf_counter() - started)


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


async def get_json(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> None:
    async with session.get(url, params=params, headers={"NGSILD-Tenant": TENANT}) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} {params} answered {response.status}: {await response.text()}")
        await response.read()


def scenarios(base: str, entities: int) -> dict[str, Callable[[aiohttp.ClientSession, int], Awaitable[None]]]:
    rng = random.Random(7)
    url = f"{base}/ngsi-ld/v1/entities"
    points = [
        (rng.uniform(WEST + 0.1, EAST - 0.1), rng.uniform(SOUTH + 0.05, NORTH - 0.05)) for _ in range(1000)
    ]
    ids = [f"urn:ngsi-ld:FloodMonitoring:g{2 * rng.randrange(entities // 2):07d}" for _ in range(1000)]
    polygon = str(CITY).replace(" ", "")
    return {
        "get by id": lambda s, i: get_json(s, f"{url}/{ids[i % 1000]}", {}),
        "type + q range": lambda s, i: get_json(s, url, {"type": "FloodMonitoring", "q": "currentLevel>1.4"}),
        "near 500 m": lambda s, i: get_json(
            s,
            url,
            {
                "type": "FloodMonitoring",
                "georel": "near;maxDistance==500",
                "geometry": "Point",
                "coordinates": f"[{points[i % 1000][0]:.5f},{points[i % 1000][1]:.5f}]",
            },
        ),
        "within city polygon": lambda s, i: get_json(
            s,
            url,
            {"type": "Vehicle", "georel": "within", "geometry": "Polygon", "coordinates": f"[{polygon}]"},
        ),
        "count=true whole type": lambda s, i: get_json(
            s, url, {"type": "Vehicle", "limit": "0", "count": "true"}
        ),
    }


def explain_queries() -> dict[str, tuple[EntityQuery, int]]:
    tm = core_term_map()
    gauge = (Selector(types=parse_type_expr("FloodMonitoring", tm)),)
    vehicle = (Selector(types=parse_type_expr("Vehicle", tm)),)
    near = parse_geo_query("near;maxDistance==500", "Point", f"[{TAKAMATSU[0]},{TAKAMATSU[1]}]", None)
    within = parse_geo_query("within", "Polygon", str([CITY]).replace(" ", ""), None)
    return {
        "type + q range": (EntityQuery(selectors=gauge, q=parse_q("currentLevel>1.4")), 21),
        "near 500 m": (EntityQuery(selectors=gauge, geo=near), 21),
        "within city polygon": (EntityQuery(selectors=vehicle, geo=within), 21),
        "count=true whole type": (EntityQuery(selectors=vehicle), 0),
    }


async def explain(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for name, (query, limit) in explain_queries().items():
            params = Params(TENANT)
            where = where_sql(query, core_term_map(), params)
            if limit:
                sql = f"SELECT e.id, e.attrs FROM entities e WHERE e.tenant = $1 AND {where} ORDER BY e.id LIMIT {limit}"
            else:
                sql = f"SELECT count(*) FROM entities e WHERE e.tenant = $1 AND {where}"
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF) {sql}", *params.values)
            print(f"\nEXPLAIN {name}:")
            for row in plan:
                print("   ", row[0])
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--other-tenants", type=int, default=10)
    parser.add_argument("--other-size", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark schema")
    args = parser.parse_args()

    base_dsn = os.environ.get("DATABASE_URL", DEFAULT_DB)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    print(f"schema {schema} (dropped at the end unless --keep)")
    dsn = f"{base_dsn}{'&' if '?' in base_dsn else '?'}search_path={schema},public"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": dsn, "NGSI_PORT": str(port), "NGSI_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "broker", env=env)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{base}/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            rate = await load(session, base, TENANT, args.entities, seed=1)
            print(
                f"loaded {args.entities} entities into {TENANT!r} at {rate:,.0f} entities/s (HTTP batch upsert)"
            )
            for t in range(args.other_tenants):
                await load(session, base, f"town-{t}", args.other_size, seed=100 + t)
            print(f"loaded {args.other_tenants} other tenants x {args.other_size} entities")
            # As autovacuum would after a bulk load: statistics and the visibility map.
            await admin.execute(f"VACUUM (ANALYZE) {schema}.entities")
            floor = await timed(args.requests, lambda i: get_json(session, f"{base}/health", {}))
            floor_p50 = percentiles(floor)[0]
            print(f"\nlatency floor (GET /health) p50 {floor_p50:.2f} ms\n")
            print(
                f"{'query':<24}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'p95/floor':>11}   target p95 < {TARGET_P95_MS} ms"
            )
            for name, call in scenarios(base, args.entities).items():
                await timed(20, functools.partial(_call_with, call, session))  # warm caches
                p50, p95, p99 = percentiles(
                    await timed(args.requests, functools.partial(_call_with, call, session))
                )
                verdict = "met" if p95 < TARGET_P95_MS else "MISSED"
                print(f"{name:<24}{p50:>9.2f}{p95:>9.2f}{p99:>9.2f}{p95 / floor_p50:>11.1f}   {verdict}")
        await explain(dsn)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=10)
        if not args.keep:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())


async def _call_with(
    call: Callable[[aiohttp.ClientSession, int], Awaitable[None]], session: aiohttp.ClientSession, i: int
) -> None:
    await call(session, i)
