"""The device side's store modules against the real PostgreSQL: secrets and the command queue.

Not NGSI-LD: device commands follow the FIWARE IoT Agents' conventions (README "Commands down to
devices"); the pseudonym key is the broker's own (README "Personal data").
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.device import CommandState
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


async def test_a_device_command_is_claimed_oldest_first_marked_and_answered(pool: asyncpg.Pool) -> None:
    # One transaction, rolled back: the session app's dispatcher claims every committed PENDING
    # command (its device unknown, it would mark it ERROR), and the NOTIFY of a rollback is not sent.
    tenant, device = f"t{uuid.uuid4().hex[:10]}", "gauge-1"
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await commands.queue(
                conn,
                tenant,
                [
                    NewCommand(device, "urn:ngsi-ld:Device:gauge-1", "interval", '"0102"'),
                    NewCommand(device, "urn:ngsi-ld:Device:gauge-1", "interval", '"0304"'),
                ],
            )
            first = await commands.claim_for_device(conn, tenant, device)
            assert first is not None
            assert (first.tenant, first.command, first.value) == (tenant, "interval", "0102")
            await commands.mark(conn, first.id, CommandState.SENT, None)
            second = await commands.claim_for_device(conn, tenant, device)
            assert second is not None
            assert second.value == "0304"  # the sent one is no longer PENDING
            await commands.answer(conn, tenant, device, "interval", "done")
            rows = await conn.fetch(
                "SELECT status, info FROM device_commands WHERE tenant = $1 ORDER BY id", tenant
            )
        finally:
            await transaction.rollback()
    # The answer completes the oldest command sent or pending: the first.
    assert [(r["status"], r["info"]) for r in rows] == [("OK", "done"), ("PENDING", None)]
