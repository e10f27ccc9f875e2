"""LISTEN survives a lost connection: a registry keeps seeing changes made by other processes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from broker.store.listener import Listener
from tests.conftest import database_url


async def test_a_listener_whose_connection_is_cut_listens_again_and_reloads() -> None:
    pool = await asyncpg.create_pool(database_url(), min_size=1, max_size=3)
    assert pool is not None
    received: list[object] = []
    reloads: list[float] = []

    async def reload() -> None:
        reloads.append(time.monotonic())

    def on_notify(_c: Any, _pid: int, _channel: str, payload: object) -> None:
        received.append(payload)

    listener = Listener(pool, "test_listener_channel", on_notify, reload, check_interval=0.1)
    await listener.start()
    try:
        await pool.execute("SELECT pg_notify('test_listener_channel', 'before')")
        await wait_for(lambda: "before" in received)
        backend = await listener._connection.fetchval("SELECT pg_backend_pid()")
        await pool.execute("SELECT pg_terminate_backend($1)", backend)

        await wait_for(lambda: listener.reconnects == 1)
        await pool.execute("SELECT pg_notify('test_listener_channel', 'after')")
        await wait_for(lambda: "after" in received)
    finally:
        await listener.stop()
        await pool.close()
    assert len(reloads) == 1


async def wait_for(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
