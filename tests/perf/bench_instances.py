"""Many instances of one attribute (distinct datasetIds): the CPU a PATCH costs grows linearly.

Issue 11 defect 6: 12,000 instances in one PATCH took 19.7 s of event-loop CPU (1k 0.31 s, 4k 2.7 s,
8k 7.1 s). This prints, for each size, the process CPU of the steps a merge PATCH takes on the event
loop (parse, merge into an entity already holding them, history rows, rendering) and per instance;
with ``--http`` also the wall time of the PATCH itself through the app on DATABASE_URL
(NGSI_MAX_INSTANCES raised so the largest size is accepted).

    .venv/bin/python -m tests.perf.bench_instances [--sizes 1000,4000,8000,12000] [--http]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from broker.app import create_app
from broker.config import load
from broker.jsonld.context import core_term_map
from broker.model import ops
from broker.model.parse import parse_entity
from broker.model.render import View, render_entity
from broker.store.history_rows import rows_for

ENTITY = "urn:ngsi-ld:Gauge:bench"


def fragment(size: int, value: int) -> dict[str, Any]:
    return {
        "level": [
            {"type": "Property", "value": value, "datasetId": f"urn:ngsi-ld:Dataset:{n}"} for n in range(size)
        ]
    }


def cpu_of_steps(size: int) -> dict[str, float]:
    """Process CPU seconds of each in-memory step of a merge PATCH over ``size`` instances."""
    tm = core_term_map()
    figures: dict[str, float] = {}
    now = "2026-12-01T00:00:00.000Z"
    start = time.process_time()
    created = parse_entity({"id": ENTITY, "type": "Gauge", **fragment(size, 0)}, tm)
    before = ops.create(None, created, now).entity
    assert before is not None
    figures["parse"] = time.process_time() - start
    patch = parse_entity(fragment(size, 1), tm, require_id=False, require_type=False, allow_null=True)
    start = time.process_time()
    after = ops.merge(before, patch, now).entity
    assert after is not None
    figures["merge"] = time.process_time() - start
    start = time.process_time()
    rows = rows_for(before, after, now)
    figures["history"] = time.process_time() - start
    assert len(rows) == size
    start = time.process_time()
    render_entity(after, tm, View())
    figures["render"] = time.process_time() - start
    return figures


async def http_patch(sizes: list[int]) -> dict[int, float]:
    """Wall seconds of PATCH /entities/{id} with each size, the entity holding that many already."""
    dsn = os.environ.get("DATABASE_URL", "postgresql://ngsi:ngsi@127.0.0.1:5432/ngsi_bench")
    settings = load(
        {
            "DATABASE_URL": dsn,
            "NGSI_MQTT_INGEST": "false",
            "NGSI_MAX_INSTANCES": str(max(sizes)),
            "NGSI_MAX_BODY_BYTES": str(16 * 1024 * 1024),
        }
    )
    out: dict[int, float] = {}
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    headers = {"NGSILD-Tenant": tenant, "Content-Type": "application/json"}
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        for size in sizes:
            entity_id = f"{ENTITY}{size}"
            body = {"id": entity_id, "type": "Gauge", **fragment(size, 0)}
            created = await client.post("/ngsi-ld/v1/entities", data=orjson.dumps(body), headers=headers)
            assert created.status == 201, await created.text()
            start = time.perf_counter()
            patched = await client.patch(
                f"/ngsi-ld/v1/entities/{entity_id}", data=orjson.dumps(fragment(size, 1)), headers=headers
            )
            out[size] = time.perf_counter() - start
            assert patched.status == 204, await patched.text()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,2000,4000,8000,12000")
    parser.add_argument("--http", action="store_true")
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",")]
    print(f"{'instances':>9} {'parse':>8} {'merge':>8} {'history':>8} {'render':>8} {'us/inst':>8}")
    for size in sizes:
        figures = cpu_of_steps(size)
        total = sum(figures.values())
        print(
            f"{size:>9} "
            + " ".join(f"{figures[k]:>8.3f}" for k in ("parse", "merge", "history", "render"))
            + f" {total / size * 1e6:>8.1f}"
        )
    if args.http:
        for size, seconds in asyncio.run(http_patch(sizes)).items():
            print(
                f"PATCH of {size} instances through HTTP: {seconds:.3f} s ({seconds / size * 1e6:.1f} us each)"
            )


if __name__ == "__main__":
    main()
