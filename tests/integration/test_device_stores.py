"""The device side's store modules against the real PostgreSQL: secrets and the command queue.

Not NGSI-LD: device commands follow the FIWARE IoT Agents' conventions (README "Commands down to
devices"); the pseudonym key is the broker's own (README "Personal data").
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.store import commands, secrets
from adapters.store.commands import NewCommand
from broker.store import create_pool
from tests.conftest import database_url


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url(), min_size=1, max_size=3, connect_timeout=10.0)
    yield pool
    await pool.close()


async def test_a_secret_is_kept_by_the_first_start_and_read_by_every_later_one(pool: asyncpg.Pool) -> None:
    name = f"test-{uuid.uuid4().hex}"
    try:
        async with pool.acquire() as conn:
            first = await secrets.kept(conn, name, b"first")
            second = await secrets.kept(conn, name, b"second")
        assert (first, second) == (b"first", b"first")
    finally:
        await pool.execute("DELETE FROM hub_secrets WHERE name = $1", name)


async def test_a_device_command_is_claimed_by_one_transaction_only_and_answered_oldest_first(
    pool: asyncpg.Pool,
) -> None:
    tenant, device = f"t{uuid.uuid4().hex[:10]}", "gauge-1"
    async with pool.acquire() as conn, conn.transaction():
        await commands.queue(
            conn,
            tenant,
            [
                NewCommand(device, "urn:ngsi-ld:Device:gauge-1", "interval", '"0102"'),
                NewCommand(device, "urn:ngsi-ld:Device:gauge-1", "interval", '"0304"'),
            ],
        )
    async with pool.acquire() as a, a.transaction(), pool.acquire() as b, b.transaction():
        mine = await commands.claim_for_device(a, tenant, device)
        theirs = await commands.claim_for_device(b, tenant, device)
        assert mine is not None
        assert theirs is not None
        assert (mine.value, theirs.value) == ("0102", "0304")  # SKIP LOCKED: each takes its own
        await commands.mark(a, mine.id, "SENT", None)
    async with pool.acquire() as conn:
        await commands.answer(conn, tenant, device, "interval", "done")
        rows = await conn.fetch(
            "SELECT status, info FROM device_commands WHERE tenant = $1 ORDER BY id", tenant
        )
    # The first was sent and is answered; the second was claimed but not marked, so still queued.
    assert [(r["status"], r["info"]) for r in rows] == [("OK", "done"), ("PENDING", None)]
    await pool.execute("DELETE FROM device_commands WHERE tenant = $1", tenant)
