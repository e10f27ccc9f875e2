"""History retention as the operator API asks for it: a tenant's policies, a purge run now."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from broker.errors import AlreadyRunning
from broker.store import retention
from broker.store.retention import Policy, Run
from broker.store.tenants import Tenants


async def set_policy(pool: asyncpg.Pool, tenants: Tenants, policy: Policy) -> bool:
    """Create or replace a policy of an existing tenant; True when it is new."""
    async with tenants.writing(pool, policy.tenant) as scope:
        await scope.require()
        return await retention.set_policy(scope.conn, policy)


async def purge_now(pool: asyncpg.Pool, default_keep: timedelta | None) -> Run:
    """One purge run now; AlreadyRunning when another process is running one."""
    run = await retention.purge(pool, default_keep)
    if run is None:
        raise AlreadyRunning("a history purge is already running; its run will be listed when it ends")
    return run
