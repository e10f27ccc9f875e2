"""The per-(tenant, type) entity counters behind count=true over a whole type (migration 0055).

Each test compares the counter with count(*) over the entities themselves, through the API and in
SQL, after every kind of write: creates, deletes, batch operations, type changes, other tenants,
concurrent writers and the compactor running between them.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from broker.api.keys import POOL
from broker.query.entity_query import EntityQuery, Selector
from broker.query.types import AllOf, AnyOf, TypeName
from broker.store import type_counts
from broker.store.migrate import migration_files
from broker.store.pool import Executor
from broker.supervise import Supervisor
from tests.clock import ManualClock
from tests.conftest import Api, database_url, eventually, new_id

ENTITIES = "/ngsi-ld/v1/entities"
BATCH = "/ngsi-ld/v1/entityOperations"
VEHICLE = "https://uri.etsi.org/ngsi-ld/default-context/Vehicle"
GAUGE = "https://uri.etsi.org/ngsi-ld/default-context/FloodMonitoring"


def plow(entity_id: str, kind: str | list[str] = "Vehicle") -> dict[str, Any]:
    return {"id": entity_id, "type": kind, "speed": {"type": "Property", "value": 1}}


async def api_count(api: Api, kind: str) -> int:
    response = await api.request("GET", ENTITIES, params={"type": kind, "limit": "0", "count": "true"})
    assert response.status == 200, await response.text()
    return int(response.headers["NGSILD-Results-Count"])


async def scanned(pool: Executor, tenant: str, iri: str) -> int:
    """count(*) over the entities, the answer the counter must equal."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM entities WHERE tenant = $1 AND types @> ARRAY[$2]", tenant, iri
        )
    )


async def counted(pool: Executor, tenant: str, iri: str) -> int:
    return await type_counts.count_of(pool, tenant, iri)


async def test_count_follows_creates_deletes_and_batches_and_compaction_keeps_it(api: Api) -> None:
    pool = api.client.app[POOL]
    ids = [new_id("Vehicle") for _ in range(30)]
    for entity_id in ids[:5]:
        assert (await api.create(plow(entity_id))).status == 201
    response = await api.request("POST", f"{BATCH}/create", [plow(i) for i in ids[5:20]])
    assert response.status == 201, await response.text()
    response = await api.request("POST", f"{BATCH}/upsert", [plow(i) for i in ids[15:30]])
    assert response.status == 201, await response.text()
    assert await api_count(api, "Vehicle") == 30 == await scanned(pool, api.tenant, VEHICLE)

    assert (await api.request("DELETE", f"{ENTITIES}/{ids[0]}")).status == 204
    response = await api.request("POST", f"{BATCH}/delete", ids[1:10])
    assert response.status == 204, await response.text()
    assert await api_count(api, "Vehicle") == 20 == await scanned(pool, api.tenant, VEHICLE)

    await type_counts.compact(pool)
    assert await api_count(api, "Vehicle") == 20
    rows = await pool.fetchval(
        "SELECT count(*) FROM entity_type_counts WHERE tenant = $1 AND entity_type = $2", api.tenant, VEHICLE
    )
    assert rows == 1


async def test_a_type_change_moves_the_entity_between_counters(api: Api) -> None:
    pool = api.client.app[POOL]
    first, second = new_id("Vehicle"), new_id("Vehicle")
    response = await api.request("POST", f"{BATCH}/create", [plow(first), plow(second)])
    assert response.status == 201, await response.text()
    # an upsert (replace) that gives the entity a second type
    response = await api.request("POST", f"{BATCH}/upsert", [plow(first, ["Vehicle", "FloodMonitoring"])])
    assert response.status == 204, await response.text()
    assert await api_count(api, "FloodMonitoring") == 1 == await scanned(pool, api.tenant, GAUGE)
    assert await api_count(api, "Vehicle") == 2
    # a change of types in plain SQL is counted too (the triggers, not the store's Python, keep it)
    await pool.execute(
        "UPDATE entities SET types = ARRAY[$3] WHERE tenant = $1 AND id = $2", api.tenant, second, GAUGE
    )
    assert await api_count(api, "Vehicle") == 1 == await scanned(pool, api.tenant, VEHICLE)
    assert await api_count(api, "FloodMonitoring") == 2 == await scanned(pool, api.tenant, GAUGE)


async def test_counts_of_one_tenant_are_not_seen_by_another(api: Api) -> None:
    other = Api(api.client, f"{api.tenant}-other")
    response = await api.request("POST", f"{BATCH}/create", [plow(new_id("Vehicle")) for _ in range(3)])
    assert response.status == 201, await response.text()
    response = await other.request("POST", f"{BATCH}/create", [plow(new_id("Vehicle")) for _ in range(2)])
    assert response.status == 201, await response.text()
    assert await api_count(api, "Vehicle") == 3
    assert await api_count(other, "Vehicle") == 2


async def test_a_write_that_fails_leaves_the_counter_as_it_was(api: Api) -> None:
    pool = api.client.app[POOL]
    taken = new_id("Vehicle")
    assert (await api.create(plow(taken))).status == 201
    # a batch create with an existing id stores the others and not the duplicate (207)
    response = await api.request("POST", f"{BATCH}/create", [plow(taken), plow(new_id("Vehicle"))])
    assert response.status == 207, await response.text()
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(
            "INSERT INTO entities (tenant, id, types, created_at, modified_at, attrs)"
            " VALUES ($1, $2, ARRAY[$3], now(), now(), '{}')",
            api.tenant,
            new_id("Vehicle"),
            VEHICLE,
        )
        await transaction.rollback()
    assert await api_count(api, "Vehicle") == 2 == await scanned(pool, api.tenant, VEHICLE)


async def test_the_counter_is_exact_at_every_snapshot_under_concurrent_creates_deletes_and_compaction(
    api: Api,
) -> None:
    pool = api.client.app[POOL]
    tenant = api.tenant
    assert (await api.create(plow(new_id("Vehicle")))).status == 201  # the tenant row
    rng = random.Random(16)
    mismatches: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def writer(n: int) -> None:
        mine: list[str] = []
        for round_ in range(25):
            async with pool.acquire() as conn, conn.transaction():
                if mine and rng.random() < 0.4:
                    gone, mine[:] = mine[: len(mine) // 2 + 1], mine[len(mine) // 2 + 1 :]
                    await conn.execute(
                        "DELETE FROM entities WHERE tenant = $1 AND id = ANY($2::text[])", tenant, gone
                    )
                else:
                    fresh = [f"urn:ngsi-ld:Vehicle:w{n}-{round_}-{k}" for k in range(rng.randrange(1, 8))]
                    await conn.execute(
                        "INSERT INTO entities (tenant, id, types, created_at, modified_at, attrs)"
                        " SELECT $1, i, ARRAY[$3], now(), now(), '{}' FROM unnest($2::text[]) AS i",
                        tenant,
                        fresh,
                        VEHICLE,
                    )
                    mine.extend(fresh)

    async def compactor() -> None:
        while not done.is_set():
            await type_counts.compact(pool)
            await asyncio.sleep(0)

    async def reader() -> None:
        while not done.is_set():
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                # both in one snapshot: the counter must say what count(*) says
                count = await counted(conn, tenant, VEHICLE)
                truth = await scanned(conn, tenant, VEHICLE)
                if count != truth:
                    mismatches.append((count, truth))

    background = [asyncio.create_task(compactor()), asyncio.create_task(reader())]
    try:
        await asyncio.gather(*(writer(n) for n in range(6)))
    finally:
        done.set()
        await asyncio.gather(*background)
    assert mismatches == []
    assert await api_count(api, "Vehicle") == await scanned(pool, tenant, VEHICLE)
    assert await scanned(pool, tenant, VEHICLE) > 1  # the writers left some behind


def test_only_a_whole_type_query_takes_the_counter() -> None:
    vehicle = Selector(types=TypeName(VEHICLE))
    assert type_counts.whole_type(EntityQuery(selectors=(vehicle,))) == VEHICLE
    assert type_counts.whole_type(EntityQuery(selectors=(vehicle,), types_in=(VEHICLE, GAUGE))) == VEHICLE
    refused = [
        EntityQuery(selectors=(vehicle,), types_in=(GAUGE,)),
        EntityQuery(selectors=(vehicle,), types_not=(GAUGE,)),
        EntityQuery(selectors=(vehicle,), attrs=("speed",)),
        EntityQuery(selectors=(Selector(ids=("urn:x",), types=TypeName(VEHICLE)),)),
        EntityQuery(selectors=(Selector(id_pattern="x.*", types=TypeName(VEHICLE)),)),
        EntityQuery(selectors=(Selector(types=AnyOf((TypeName(VEHICLE), TypeName(GAUGE)))),)),
        EntityQuery(selectors=(Selector(types=AllOf((TypeName(VEHICLE), TypeName(GAUGE)))),)),
        EntityQuery(selectors=(vehicle, Selector(types=TypeName(GAUGE)))),
        EntityQuery(attrs=("speed",)),
    ]
    assert [type_counts.whole_type(q) for q in refused] == [None] * len(refused)


@pytest.fixture
async def own_schema() -> AsyncIterator[asyncpg.Pool]:
    """A pool on a schema of its own holding a bare entities table and migration 0055, so the app's
    own compactor (on the shared schema) never folds what a test watches."""
    schema = f"type_counts_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url())
    await admin.execute(f"CREATE SCHEMA {schema}")
    pool = await asyncpg.create_pool(
        database_url(), min_size=1, max_size=2, server_settings={"search_path": f"{schema},public"}
    )
    assert pool is not None
    await pool.execute("CREATE TABLE entities (tenant text, id text, types text[], PRIMARY KEY (tenant, id))")
    await pool.execute(next(text for _, name, text in migration_files() if name == "0055_type_counts.sql"))
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def test_the_compactor_folds_the_deltas_on_its_clock(own_schema: asyncpg.Pool) -> None:
    pool = own_schema
    for n in range(3):
        await pool.execute(
            "INSERT INTO entities SELECT 't', i, ARRAY[$2, $3] FROM unnest($1::text[]) AS i",
            [f"e{n}-{k}" for k in range(4)],
            VEHICLE,
            GAUGE,
        )
    await pool.execute("DELETE FROM entities WHERE id = 'e0-0'")

    async def rows() -> int:
        return int(await pool.fetchval("SELECT count(*) FROM entity_type_counts"))

    clock = ManualClock()
    supervisor = Supervisor(clock)
    supervisor.spawn(type_counts.COMPACTOR, type_counts.Compactor(pool, interval=10.0, clock=clock).run)
    try:
        await eventually(lambda: clock.sleepers == 1, what="the compactor asleep until its first round")
        assert await rows() == 8  # 3 inserts and 1 delete, 2 types each

        async def folded() -> bool:
            return await rows() == 2

        await clock.advance(10.0)
        await eventually(folded, what="one row left a type")
        assert await type_counts.count_of(pool, "t", VEHICLE) == 11
        assert await type_counts.count_of(pool, "t", GAUGE) == 11
        # a truncate empties the counters with the table
        await pool.execute("TRUNCATE entities")
        assert await rows() == 0
    finally:
        await supervisor.stop()


async def test_the_app_supervises_the_compactor(api: Api) -> None:
    body = await (await api.client.get("/health")).json()
    assert body["components"][type_counts.COMPACTOR]["running"] is True
