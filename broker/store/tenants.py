"""Tenants: created by their first write, required to exist by every read.

Which tenants exist is cached per process; tenants are never deleted, so a
positive answer stays true.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from broker.errors import BadRequestData, NonexistentTenant
from broker.store.pool import Connection, Executor

DEFAULT_TENANT = ""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_tenant_name(name: str) -> str:
    """Return a valid tenant name or raise BadRequestData."""
    if name != DEFAULT_TENANT and not _NAME.match(name):
        raise BadRequestData(
            f"tenant {name!r} is not valid: use 1-128 letters, digits, '_', '-' or '.', starting alphanumeric"
        )
    return name


class TenantWrite:
    """A write transaction addressed to one tenant (see ``Tenants.writing``)."""

    def __init__(self, tenants: Tenants, conn: Connection, tenant: str) -> None:
        self._tenants = tenants
        self.conn = conn
        self.tenant = tenant
        self.ensured = False

    async def ensure(self) -> None:
        """Create the tenant in this transaction if it does not exist yet (announced once it commits)."""
        await self._tenants.ensure(self.conn, self.tenant)
        self.ensured = True

    async def require(self) -> None:
        """NonexistentTenant unless the tenant exists."""
        await self._tenants.require(self.conn, self.tenant)


class Tenants:
    """Which tenants exist, with a per-process cache of the ones seen."""

    @asynccontextmanager
    async def writing(self, pool: asyncpg.Pool, tenant: str) -> AsyncIterator[TenantWrite]:
        """A transaction writing to ``tenant``; a tenant it ensured is remembered once it has committed.

        Remembering it earlier would let another writer skip the insert while the row is still
        invisible to it; remembering it after a rollback would keep a tenant that does not exist.
        """
        async with pool.acquire() as conn:
            async with conn.transaction():
                scope = TenantWrite(self, conn, tenant)
                yield scope
            if scope.ensured:
                self.created(tenant)

    def __init__(self) -> None:
        self._known: set[str] = {DEFAULT_TENANT}

    async def ensure(self, conn: Connection, tenant: str) -> None:
        """Create ``tenant`` if it does not exist yet (a write to a new tenant creates it).

        Runs inside the caller's transaction; the caller calls ``created`` once it has
        committed, so no other writer skips the insert while the row is still invisible.
        """
        if tenant not in self._known:
            await conn.execute("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", tenant)

    def created(self, tenant: str) -> None:
        """Remember that ``tenant`` exists (after the transaction that ensured it committed)."""
        self._known.add(tenant)

    async def require(self, conn: Executor, tenant: str) -> None:
        """Raise NonexistentTenant unless ``tenant`` exists."""
        if tenant in self._known:
            return
        if await conn.fetchval("SELECT 1 FROM tenants WHERE name = $1", tenant) is None:
            raise NonexistentTenant(f"tenant {tenant!r} does not exist")
        self._known.add(tenant)

    async def names(self, pool: asyncpg.Pool) -> list[str]:
        rows = await pool.fetch("SELECT name FROM tenants ORDER BY name")
        return [row["name"] for row in rows]
