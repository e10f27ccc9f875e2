"""Numbered SQL migrations, applied at start under an advisory lock.

Files ``migrations/NNNN_name.sql`` run in order, each in its own transaction,
and are recorded in ``schema_migrations``. Two processes starting at once take
the same transaction-level advisory lock, so the second waits and then finds
nothing left to do.
"""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# An arbitrary constant that names "schema migration" among advisory locks.
_MIGRATION_LOCK = 0x6E67_7369_6C64
_CREATE_LEDGER = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
)


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled migration, in order."""
    found = []
    for entry in resources.files("broker.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    return found


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the migrations this database lacks; return the names applied."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        for version, name, sql in migration_files():
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute(_CREATE_LEDGER)
                done = await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", version)
                if done:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
                applied.append(name)
                log.info("applied migration %s", name)
    return applied
