"""The asyncpg pool, with jsonb decoded and encoded by orjson on every connection."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy


def _encode_jsonb(value: Any) -> bytes:
    # Binary jsonb format: a version byte (1) followed by the JSON text.
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


async def create_pool(dsn: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """Open the pool the whole process shares."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=60,
    )
    assert pool is not None
    return pool


# What the SQL helpers accept: a connection from the pool (inside a transaction) or the pool itself.
Connection = asyncpg.Connection | PoolConnectionProxy
Executor = Connection | asyncpg.Pool
