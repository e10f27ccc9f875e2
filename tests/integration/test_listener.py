"""LISTEN survives a lost connection: a registry keeps seeing changes made by other processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from broker.store.listener import Listener
from broker.supervise import Supervisor
from tests.clock import ManualClock
from tests.conftest import database_url, eventually

CHANNEL = "test_listener_channel"


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url(), min_size=1, max_size=3)
    assert created is not None
    yield created
    await created.close()


class Heard:
    """What a listener's owner sees: payloads, and how often it reloaded."""

    def __init__(self, failing_reloads: int = 0) -> None:
        self.payloads: list[object] = []
        self.reloads = 0
        self.failing_reloads = failing_reloads

    def on_notify(self, _c: Any, _pid: int, _channel: str, payload: object) -> None:
        self.payloads.append(payload)

    async def reload(self) -> None:
        self.reloads += 1
        if self.reloads <= self.failing_reloads:
            raise RuntimeError("reload fault injected by the test")


async def cut(listener: Listener, pool: asyncpg.Pool) -> None:
    """Terminate the backend of the listener's connection, as a database restart would."""
    backend = await listener._connection.fetchval("SELECT pg_backend_pid()")
    await pool.execute("SELECT pg_terminate_backend($1)", backend)


async def test_a_listener_whose_connection_is_cut_listens_again_and_reloads(pool: asyncpg.Pool) -> None:
    heard = Heard()
    listener = Listener(pool, CHANNEL, heard.on_notify, heard.reload, check_interval=0.1)
    await listener.start()
    try:
        await pool.execute("SELECT pg_notify($1, 'before')", CHANNEL)
        await eventually(lambda: "before" in heard.payloads)
        await cut(listener, pool)
        await eventually(lambda: listener.reconnects == 1, what="listening again")
        await pool.execute("SELECT pg_notify($1, 'after')", CHANNEL)
        await eventually(lambda: "after" in heard.payloads)
    finally:
        await listener.stop()
    assert heard.reloads == 1


async def test_a_supervised_listener_is_a_probe_that_names_it_until_it_listens_again(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    supervisor = Supervisor(clock)
    heard = Heard()
    listener = Listener(pool, CHANNEL, heard.on_notify, heard.reload, clock=clock)
    await listener.start(supervisor, "test.listener")
    try:
        await eventually(lambda: supervisor.problems() == {}, what="the watch running")
        await cut(listener, pool)
        lost = {"test.listener": f"LISTEN {CHANNEL} lost; listening again once the database answers"}
        await eventually(lambda: supervisor.problems() == lost, what="the lost LISTEN named")
        await clock.advance(1.0)  # the listener's check
        await eventually(lambda: supervisor.problems() == {}, what="listening again")
        await pool.execute("SELECT pg_notify($1, 'after')", CHANNEL)
        await eventually(lambda: "after" in heard.payloads)
        assert (listener.reconnects, heard.reloads) == (1, 1)
    finally:
        await listener.stop()
        await supervisor.stop()
    assert "test.listener" not in supervisor.report()


async def test_a_reload_that_fails_is_tried_again_and_stops_no_unsupervised_watch(pool: asyncpg.Pool) -> None:
    heard = Heard(failing_reloads=1)
    listener = Listener(pool, CHANNEL, heard.on_notify, heard.reload, check_interval=0.1)
    await listener.start()
    try:
        await cut(listener, pool)
        await eventually(lambda: listener.reconnects == 1, what="listening again after a failed reload")
        assert heard.reloads == 2
        await pool.execute("SELECT pg_notify($1, 'after')", CHANNEL)
        await eventually(lambda: "after" in heard.payloads)
    finally:
        await listener.stop()  # the fault was the watch's to survive: stopping raises nothing
