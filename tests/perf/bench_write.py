"""HTTP writes: batch upsert (100 snowplows a request) and single-entity PATCH attrs (64 clients).

A broker process (``--workers``) on a fresh schema, driven by wrk on loopback. The upsert ids
cycle through ``--entities`` snowplows, so a long run updates what it created; the PATCH run
picks among the snowplows the upsert run stored. Every write is stored with its history.

    .venv/bin/python -m tests.perf.bench_write [--seconds 20] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from tests.perf import harness, loadgen

UPSERT_TARGET = 20_000.0
PATCH_TARGET = 3_000.0
PATCH_P99_TARGET_MS = 50.0
# The stored run of snowplow numbers: its first and the first missing after it.
STORED_RUN = """
WITH lo AS (SELECT min(substr(id, 23)::int) AS n FROM {schema}.entities WHERE tenant = 'bench')
SELECT lo.n, (SELECT min(g) FROM generate_series(lo.n, lo.n + $1::int) AS g
              WHERE NOT EXISTS (SELECT 1 FROM {schema}.entities
                                WHERE tenant = 'bench' AND id = 'urn:ngsi-ld:Vehicle:p' || lpad(g::text, 7, '0')))
FROM lo
"""


@dataclass
class WriteFigures:
    upsert: loadgen.Outcome
    patch: loadgen.Outcome
    stored: int
    rss_mb: list[float]
    # Broker CPU seconds during each run (the load of a shared machine moves these less than rates).
    upsert_cpu_seconds: float = 0.0
    patch_cpu_seconds: float = 0.0


async def measure(
    seconds: float,
    workers: int = 1,
    entities: int = 100_000,
    upsert_clients: int = 16,
    patch_clients: int = 64,
) -> WriteFigures:
    async with (
        harness.bench_schema("benchw") as (admin, schema, dsn),
        harness.broker(dsn, workers) as running,
    ):
        cpu_at_start = running.cpu_seconds()
        upsert = await loadgen.run_async(
            loadgen.Workload("upsert", running.base, batch=100, entities=entities),
            concurrency=upsert_clients,
            seconds=seconds,
        )
        upsert_cpu = running.cpu_seconds() - cpu_at_start
        stored = int(await admin.fetchval(f"SELECT count(*) FROM {schema}.entities WHERE tenant = 'bench'"))
        # The two wrk threads store alternate stripes of ids and stop at different places: PATCH only
        # within the run of numbers stored without a gap, so every PATCH names a stored entity.
        run = await admin.fetchrow(STORED_RUN.format(schema=schema), stored)
        assert run is not None
        first, end = run
        cpu_at_start = running.cpu_seconds()
        patch = await loadgen.run_async(
            loadgen.Workload("patch", running.base, entities=max(1, end - first), first=first),
            concurrency=patch_clients,
            seconds=seconds,
        )
        patch_cpu = running.cpu_seconds() - cpu_at_start
        return WriteFigures(upsert, patch, stored, running.rss_mb(), upsert_cpu, patch_cpu)


def report(figures: WriteFigures) -> None:
    up, patch = figures.upsert, figures.patch
    print(
        f"batch upsert: {up.item_rate:,.0f} entities/s ({up.rate:,.0f} req/s, p50 {up.p50_ms:.1f} ms, "
        f"p99 {up.p99_ms:.1f} ms, failed {up.errors}); target {UPSERT_TARGET:,.0f}"
    )
    print(
        f"PATCH attrs: {patch.rate:,.0f} req/s, p50 {patch.p50_ms:.1f} ms, p99 {patch.p99_ms:.1f} ms, "
        f"failed {patch.errors}; target {PATCH_TARGET:,.0f} req/s, p99 < {PATCH_P99_TARGET_MS:.0f} ms"
    )
    print(f"entities stored: {figures.stored:,}; broker RSS MB: {[round(r) for r in figures.rss_mb]}")
    upserted = up.requests * up.items_per_request
    patched = patch.requests
    if upserted and patched:
        print(
            f"broker CPU: {1e6 * figures.upsert_cpu_seconds / upserted:,.0f} us per upserted entity, "
            f"{1e6 * figures.patch_cpu_seconds / patched:,.0f} us per PATCH"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--entities", type=int, default=100_000)
    args = parser.parse_args()
    report(await measure(args.seconds, args.workers, args.entities))


if __name__ == "__main__":
    asyncio.run(main())
