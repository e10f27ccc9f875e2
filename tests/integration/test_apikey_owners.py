"""Migration 0030 on a database holding an apikey two tenants already share (issue 12 item 7)."""

from __future__ import annotations

import asyncpg
import pytest

from broker.store.migrate import migration_files
from tests.conftest import database_url
from tests.e2e.test_process import fresh_schema

VERSION = 30


async def test_an_apikey_shared_before_the_migration_goes_to_its_first_tenant_and_no_new_sharing_is_possible() -> (
    None
):
    async with fresh_schema() as schema:
        conn = await asyncpg.connect(database_url(), server_settings={"search_path": f"{schema},public"})
        try:
            for version, _, sql in migration_files():
                if version < VERSION:
                    await conn.execute(sql)
            await conn.execute(
                "INSERT INTO service_groups (tenant, resource, apikey, created_at) VALUES"
                " ('east', '/iot/json', 'shared', now() - interval '1 day'), ('west', '/iot/d', 'shared', now())"
            )
            await conn.execute(
                "INSERT INTO devices (tenant, device_id, apikey) VALUES ('west', 'd1', 'own'), ('west', 'd0', '')"
            )
            (sql,) = [sql for version, _, sql in migration_files() if version == VERSION]
            await conn.execute(sql)

            owners = {r["apikey"]: r["tenant"] for r in await conn.fetch("SELECT * FROM apikey_owners")}
            assert owners == {"shared": "east", "own": "west"}
            assert await conn.fetchval("SELECT count(*) FROM service_groups WHERE apikey = 'shared'") == 2
            with pytest.raises(asyncpg.UniqueViolationError) as refused:
                await conn.execute(
                    "INSERT INTO service_groups (tenant, resource, apikey) VALUES ('west', '/iot/x', 'shared')"
                )
            assert refused.value.constraint_name == "apikey_owners_tenant"
            # The owner's last use gone, the tenant still sharing it inherits the key; nobody else gets it.
            await conn.execute("DELETE FROM service_groups WHERE tenant = 'east'")
            assert await conn.fetchval("SELECT tenant FROM apikey_owners WHERE apikey = 'shared'") == "west"
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(
                    "INSERT INTO devices (tenant, device_id, apikey) VALUES ('north', 'd', 'shared')"
                )
            await conn.execute("DELETE FROM service_groups WHERE tenant = 'west'")
            assert await conn.fetchval("SELECT count(*) FROM apikey_owners WHERE apikey = 'shared'") == 0
        finally:
            await conn.close()
