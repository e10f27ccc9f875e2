"""The cost of authentication on the PATCH path (issue 12): NGSI_AUTH=off against on, same run.

One schema and its snowplows (a short batch upsert), then PATCH `/entities/{id}/attrs` runs with
64 wrk connections, alternating a broker with authentication off and one with it on (an API key of
a writer of the tenant in every request, the rate limiter in the path at a rate it never reaches),
so drift of a loaded machine falls on both sides. Prints each run and the ratio of the medians;
target: within 10 %.

    .venv/bin/python -m tests.perf.bench_auth [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from broker.auth.keys import KeyRing
from broker.auth.model import Role
from broker.store import create_pool, migrate
from tests.perf import harness, loadgen
from tests.perf.bench_write import STORED_RUN

TARGET_RATIO = 0.90
ENTITIES = 20_000
_ON = {"NGSI_AUTH": "on", "NGSI_RATE_LIMITS": "writer=1000000,operator=0"}


async def keys(dsn: str) -> str:
    """An operator key (the broker does not start with auth on without one) and a writer's key."""
    pool = await create_pool(dsn, min_size=1, max_size=2, connect_timeout=10)
    try:
        await migrate(pool)
        ring = KeyRing(pool)
        await ring.create(None, [Role.OPERATOR], "bench operator")
        _, writer = await ring.create("bench", [Role.WRITER], "bench writer")
    finally:
        await pool.close()
    return writer


async def measure(seconds: float, rounds: int) -> tuple[list[float], list[float], list[float], list[float]]:
    off: list[float] = []
    on: list[float] = []
    off_p99: list[float] = []
    on_p99: list[float] = []
    async with harness.bench_schema("bencha") as (admin, schema, dsn):
        writer = await keys(dsn)
        async with harness.broker(dsn) as running:
            await loadgen.run_async(
                loadgen.Workload("upsert", running.base, batch=100, entities=ENTITIES),
                concurrency=8,
                seconds=5,
            )
        # PATCH only within the run of numbers stored without a gap (as bench_write does).
        stored = int(await admin.fetchval(f"SELECT count(*) FROM {schema}.entities WHERE tenant = 'bench'"))
        run = await admin.fetchrow(STORED_RUN.format(schema=schema), stored)
        assert run is not None
        first, end = run
        for _ in range(rounds):
            for auth, rates, p99s in ((False, off, off_p99), (True, on, on_p99)):
                env = _ON if auth else {"NGSI_AUTH": "off"}
                async with harness.broker(dsn, 1, **env) as running:
                    outcome = await loadgen.run_async(
                        loadgen.Workload(
                            "patch",
                            running.base,
                            entities=max(1, end - first),
                            first=first,
                            key=writer if auth else "",
                        ),
                        concurrency=64,
                        seconds=seconds,
                    )
                label = "on " if auth else "off"
                print(
                    f"  auth {label}: {outcome.rate:,.0f} PATCH/s, p50 {outcome.p50_ms:.1f} ms, "
                    f"p99 {outcome.p99_ms:.1f} ms, failed {outcome.errors}"
                )
                if outcome.errors:
                    raise RuntimeError(f"{outcome.errors} PATCH requests failed with auth {label}")
                rates.append(outcome.rate)
                p99s.append(outcome.p99_ms)
    return off, on, off_p99, on_p99


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    off, on, off_p99, on_p99 = await measure(args.seconds, args.rounds)
    ratio = statistics.median(on) / statistics.median(off)
    verdict = "ok" if ratio >= TARGET_RATIO else "MISSED"
    print(
        f"PATCH with auth on: {statistics.median(on):,.0f}/s vs off {statistics.median(off):,.0f}/s: "
        f"ratio {ratio:.2f} (target >= {TARGET_RATIO:.2f}) {verdict}; p99 on {statistics.median(on_p99):.1f} ms, "
        f"off {statistics.median(off_p99):.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
