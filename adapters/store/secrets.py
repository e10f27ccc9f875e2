"""The hub_secrets table: secrets the broker generates once and every process then shares."""

from __future__ import annotations

from broker.store.pool import Connection


async def kept(conn: Connection, name: str, generated: bytes) -> bytes:
    """The secret called ``name``; ``generated`` is kept as it if there is none yet (the first of
    several processes starting at once wins, the others read what it kept)."""
    await conn.execute(
        "INSERT INTO hub_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING", name, generated
    )
    value: bytes = await conn.fetchval("SELECT value FROM hub_secrets WHERE name = $1", name)
    return value
