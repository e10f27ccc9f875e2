"""Entity queries are planned for their own values (custom plans), and `near` stays exact under them.

asyncpg prepares every statement; after five runs PostgreSQL may switch to a generic plan that
cannot see how big a tenant's type is or how small a geo box is (at 1M entities `near` AND-ed the
whole type's GIN bitmap into a GiST look-up: 134 ms instead of 2.4 ms). broker/store/query.py
sets plan_cache_mode in its read-only transaction.
"""

from __future__ import annotations

import random

from broker.api.keys import POOL
from broker.store.query import read_only
from tests.conftest import Api, new_id

ENTITIES = "/ngsi-ld/v1/entities"


async def test_the_read_only_transaction_plans_every_statement_for_its_values(api: Api) -> None:
    async with read_only(api.client.app[POOL]) as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        assert await conn.fetchval("SHOW statement_timeout") == "10s"
    # the temporal API's stream reads keep one plan per connection (planning ~70 partitions is dear)
    async with read_only(api.client.app[POOL], generic=True) as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await conn.fetchval("SHOW statement_timeout") == "10s"


async def test_near_answers_what_a_brute_force_distance_says_query_after_query(api: Api) -> None:
    rng = random.Random(16)
    gauges = [
        {
            "id": new_id("FloodMonitoring"),
            "type": "FloodMonitoring",
            "location": {
                "type": "GeoProperty",
                "value": {
                    "type": "Point",
                    "coordinates": [
                        round(134.0 + rng.uniform(0, 0.02), 6),
                        round(34.3 + rng.uniform(0, 0.02), 6),
                    ],
                },
            },
        }
        for _ in range(60)
    ]
    response = await api.request("POST", "/ngsi-ld/v1/entityOperations/create", gauges)
    assert response.status == 201, await response.text()
    pool = api.client.app[POOL]
    found = 0
    # more runs than PostgreSQL's five custom plans before it may cache a generic one
    for _ in range(8):
        lon, lat = 134.0 + rng.uniform(0, 0.02), 34.3 + rng.uniform(0, 0.02)
        metres = rng.choice([200, 500, 1000])
        response = await api.request(
            "GET",
            ENTITIES,
            params={
                "type": "FloodMonitoring",
                "georel": f"near;maxDistance=={metres}",
                "geometry": "Point",
                "coordinates": f"[{lon},{lat}]",
                "limit": "1000",
            },
        )
        assert response.status == 200, await response.text()
        got = sorted(e["id"] for e in await response.json(content_type=None))
        rows = await pool.fetch(
            "SELECT id FROM entities WHERE tenant = $1 AND ST_Distance(location::geography,"
            " ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography) <= $4 ORDER BY id",
            api.tenant,
            lon,
            lat,
            float(metres),
        )
        assert got == [r["id"] for r in rows]
        found += len(got)
    assert found > 0
