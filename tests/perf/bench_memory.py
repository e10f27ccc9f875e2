"""Memory and cost growth: broker RSS, write rate and query latency at 10k, 100k and 1M stored entities.

The bulk is generated in SQL (INSERT ... SELECT generate_series) from the row the broker itself
stored for one snowplow, so rows are exactly the broker's shape; at each size the broker then
takes a batch-upsert run (wrk, updates of stored snowplows) and sequential queries (get by id,
type + q, near 500 m, count=true over the type, a page of 1,000), and its RSS is read after.

    .venv/bin/python -m tests.perf.bench_memory [--sizes 10000,100000,1000000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg

from tests.perf import harness, loadgen

TENANT = "bench"
SPEED = "https://uri.etsi.org/ngsi-ld/default-context/speed"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
RSS_TARGET_MB = 300.0
# Issue 16: count=true over the whole type and near 500 m, p95 at 1M entities.
QUERY_P95_TARGET_MS = 20.0

_GENERATE = f"""
INSERT INTO entities (tenant, id, types, scopes, created_at, modified_at, attrs, location)
SELECT t.tenant, 'urn:ngsi-ld:Vehicle:p' || lpad(n::text, 7, '0'), t.types, NULL, t.created_at, t.modified_at,
       jsonb_set(jsonb_set(t.attrs, '{{{SPEED},0,value}}', to_jsonb(round((random() * 60)::numeric, 1))),
                 '{{{LOCATION},0,value,coordinates}}', jsonb_build_array(g.lon, g.lat)),
       ST_SetSRID(ST_MakePoint(g.lon, g.lat), 4326)
FROM entities t, generate_series($2::int, $3::int - 1) AS n,
     LATERAL (SELECT round((133.45 + random() + n * 0)::numeric, 6)::float8 AS lon,
                     round((34.05 + random() * 0.45 + n * 0)::numeric, 6)::float8 AS lat) AS g
WHERE t.tenant = $1 AND t.id = 'urn:ngsi-ld:Vehicle:template'
"""
_GEOMETRIES = """
INSERT INTO entity_geometries (tenant, entity_id, attr, dataset_id, geom)
SELECT tenant, id, $4, '', location FROM entities
WHERE tenant = $1 AND id >= $2 AND id < $3
"""


@dataclass
class SizeFigures:
    size: int
    load_seconds: float
    upsert: loadgen.Outcome
    queries: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)
    # GET /health p50 of the same server: the latency floor the queries are compared with.
    floor_ms: float = 0.0
    # count=true's NGSILD-Results-Count against count(*) over the stored rows (None: not compared).
    count_exact: bool | None = None


async def generate(admin: asyncpg.Connection, schema: str, first: int, last: int) -> float:
    """Add snowplows ``first`` .. ``last - 1`` by SQL in chunks; seconds taken."""
    started = time.perf_counter()
    await admin.execute(f"SET search_path = {schema}, public")
    for low in range(first, last, 100_000):
        high = min(low + 100_000, last)
        await admin.execute(_GENERATE, TENANT, low, high)
        await admin.execute(
            _GEOMETRIES,
            TENANT,
            f"urn:ngsi-ld:Vehicle:p{low:07d}",
            f"urn:ngsi-ld:Vehicle:p{high:07d}",
            LOCATION,
        )
    await admin.execute("VACUUM (ANALYZE) entities")
    await admin.execute("VACUUM (ANALYZE) entity_geometries")
    return time.perf_counter() - started


async def timed(
    session: aiohttp.ClientSession, requests: int, url: Callable[[int], str]
) -> tuple[float, float, float]:
    samples = []
    for i in range(requests):
        started = time.perf_counter()
        async with session.get(url(i), headers={"NGSILD-Tenant": TENANT}) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url(i)} answered {response.status}")
        samples.append((time.perf_counter() - started) * 1000)
    return harness.percentiles(samples)


def query_urls(base: str, size: int) -> dict[str, Callable[[int], str]]:
    rng = random.Random(5)
    ids = [rng.randrange(size) for _ in range(1000)]
    points = [(rng.uniform(133.55, 134.35), rng.uniform(34.1, 34.45)) for _ in range(1000)]
    url = f"{base}/ngsi-ld/v1/entities"
    return {
        "get by id": lambda i: f"{url}/urn:ngsi-ld:Vehicle:p{ids[i % 1000]:07d}",
        "type + q (page of 20)": lambda i: f"{url}?type=Vehicle&q=speed%3E30",
        "near 500 m": lambda i: (
            f"{url}?type=Vehicle&georel=near%3BmaxDistance%3D%3D500&geometry=Point"
            f"&coordinates=%5B{points[i % 1000][0]:.5f},{points[i % 1000][1]:.5f}%5D"
        ),
        "count=true whole type": lambda i: f"{url}?type=Vehicle&limit=0&count=true",
        "page of 1,000": lambda i: f"{url}?type=Vehicle&limit=1000&offset={(i * 1000) % max(1, size - 1000)}",
    }


async def count_is_exact(
    admin: asyncpg.Connection, session: aiohttp.ClientSession, base: str, schema: str
) -> bool:
    """Whether count=true over the type says what count(*) over the stored rows says."""
    url = f"{base}/ngsi-ld/v1/entities?type=Vehicle&limit=0&count=true"
    async with session.get(url, headers={"NGSILD-Tenant": TENANT}) as response:
        said = int(response.headers["NGSILD-Results-Count"])
    stored = await admin.fetchval(
        f"SELECT count(*) FROM {schema}.entities WHERE tenant = $1"
        " AND types @> ARRAY['https://uri.etsi.org/ngsi-ld/default-context/Vehicle']",
        TENANT,
    )
    return bool(said == stored)


async def template(base: str) -> None:
    body = loadgen.vehicle(0, random.Random(1)) | {"id": "urn:ngsi-ld:Vehicle:template"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/ngsi-ld/v1/entities", json=body, headers={"NGSILD-Tenant": TENANT}) as response,
    ):
        if response.status != 201:
            raise RuntimeError(f"creating the template answered {response.status}: {await response.text()}")


async def measure(
    sizes: list[int],
    seconds: float,
    requests: int = 100,
    workers: int = 1,
    report: Callable[[SizeFigures], None] | None = None,
) -> list[SizeFigures]:
    results: list[SizeFigures] = []
    async with (
        harness.bench_schema("benchm") as (admin, schema, dsn),
        harness.broker(dsn, workers) as running,
    ):
        await template(running.base)
        stored = 0
        for size in sizes:
            load = await generate(admin, schema, stored, size)
            stored = size
            upsert = await loadgen.run_async(
                loadgen.Workload("upsert", running.base, entities=size), concurrency=16, seconds=seconds
            )
            figures = SizeFigures(size, load, upsert)
            async with aiohttp.ClientSession() as session:
                await timed(session, 10, lambda i: f"{running.base}/health")
                figures.floor_ms = (await timed(session, requests, lambda i: f"{running.base}/health"))[0]
                for name, url in query_urls(running.base, size).items():
                    await timed(session, 10, url)
                    figures.queries[name] = await timed(session, requests, url)
                figures.count_exact = await count_is_exact(admin, session, running.base, schema)
            figures.rss_mb = running.rss_mb()
            results.append(figures)
            if report is not None:
                report(figures)
    return results


def print_size(f: SizeFigures) -> None:
    print(f"\n{f.size:,} entities (generated in {f.load_seconds:.0f} s)")
    print(
        f"  batch upsert {f.upsert.item_rate:,.0f} entities/s (p99 {f.upsert.p99_ms:.0f} ms, failed {f.upsert.errors})"
    )
    for name, (p50, p95, p99) in f.queries.items():
        print(f"  {name:<24} p50 {p50:7.2f}  p95 {p95:7.2f}  p99 {p99:7.2f} ms")
    print(f"  floor GET /health p50 {f.floor_ms:.2f} ms; count=true exact: {f.count_exact}")
    rss = ", ".join(f"{r:.0f}" for r in f.rss_mb)
    print(f"  broker RSS MB per process: {rss} (target < {RSS_TARGET_MB:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    run: Awaitable[list[SizeFigures]] = measure(sizes, args.seconds, args.requests, args.workers, print_size)
    asyncio.run(run)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
