"""The csource_registrations table (clause 5.9): tenant-scoped rows of registrations in their stored form.

Writes of one tenant's registrations are serialised by a transaction-scoped advisory lock, so
that the exclusive-registration conflict check (clause 4.3.6.3) reads every rival that commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from broker.errors import AlreadyExists
from broker.store.pool import Connection, Executor

_COLUMNS = "id, body, mode, expires_at, created_at, modified_at"


@dataclass(frozen=True, slots=True)
class StoredRegistration:
    id: str
    body: dict[str, Any]
    mode: str
    expires_at: datetime | None
    created_at: datetime
    modified_at: datetime


def _stored(row: asyncpg.Record) -> StoredRegistration:
    return StoredRegistration(**dict(row))


async def lock_tenant(conn: Connection, tenant: str) -> None:
    """Serialise registration writes of ``tenant`` until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('csource_registrations'), hashtext($1))", tenant
    )


async def all_of(executor: Executor, tenant: str) -> list[StoredRegistration]:
    """Every registration of the tenant, in id order."""
    rows = await executor.fetch(
        f"SELECT {_COLUMNS} FROM csource_registrations WHERE tenant = $1 ORDER BY id", tenant
    )
    return [_stored(row) for row in rows]


async def fetch(executor: Executor, tenant: str, registration_id: str) -> StoredRegistration | None:
    row = await executor.fetchrow(
        f"SELECT {_COLUMNS} FROM csource_registrations WHERE tenant = $1 AND id = $2", tenant, registration_id
    )
    return None if row is None else _stored(row)


async def insert(
    conn: Connection,
    tenant: str,
    registration_id: str,
    body: dict[str, Any],
    mode: str,
    expires_at: datetime | None,
) -> None:
    """Store a new registration; AlreadyExists (409) when the tenant has one with this id."""
    inserted = await conn.fetchval(
        "INSERT INTO csource_registrations (tenant, id, body, mode, expires_at) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (tenant, id) DO NOTHING RETURNING true",
        tenant,
        registration_id,
        body,
        mode,
        expires_at,
    )
    if not inserted:
        raise AlreadyExists(f"registration {registration_id} already exists")


async def update(
    conn: Connection,
    tenant: str,
    registration_id: str,
    body: dict[str, Any],
    mode: str,
    expires_at: datetime | None,
) -> None:
    await conn.execute(
        "UPDATE csource_registrations SET body = $3, mode = $4, expires_at = $5, modified_at = now()"
        " WHERE tenant = $1 AND id = $2",
        tenant,
        registration_id,
        body,
        mode,
        expires_at,
    )


async def delete(conn: Connection, tenant: str, registration_id: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM csource_registrations WHERE tenant = $1 AND id = $2 RETURNING true",
        tenant,
        registration_id,
    )
    return bool(deleted)
