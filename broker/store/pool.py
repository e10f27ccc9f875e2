"""The asyncpg pool, with jsonb decoded and encoded by orjson on every connection."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)


def _encode_jsonb(value: Any) -> bytes:
    # Binary jsonb format: a version byte (1) followed by the JSON text.
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release a connection to the pool as it is.

    asyncpg's default reset runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release: a round trip that cost 8.6 % of a PATCH's samples. Nothing here leaves session
    state behind: settings are SET LOCAL, advisory locks are transaction-level, cursors live in
    transactions, and LISTEN connections (broker/store/listener.py) unlisten themselves.
    """


async def create_pool(dsn: str, *, min_size: int, max_size: int, connect_timeout: float) -> asyncpg.Pool:
    """Open the pool the whole process shares, retrying while the database is not up yet.

    A broker started together with (or just before) its PostgreSQL should wait
    for it rather than die; after ``connect_timeout`` seconds the last error is raised.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    delay = 0.2
    while True:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                reset=_keep_session,
                command_timeout=60,
            )
            assert pool is not None
            return pool
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning("database not reachable yet (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


# What the SQL helpers accept: a connection from the pool (inside a transaction) or the pool itself.
Connection = asyncpg.Connection | PoolConnectionProxy
Executor = Connection | asyncpg.Pool
