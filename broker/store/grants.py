"""The grants table: what one tenant lets another (or everyone: '*') read of its entities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from broker.store.pool import Executor

EVERYONE = "*"
_COLUMNS = "id, tenant, grantee, types, attrs, subscribe, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    tenant: str
    grantee: str
    types: tuple[str, ...]
    attrs: tuple[str, ...] | None
    subscribe: bool
    created_at: datetime
    revoked_at: datetime | None


def _grant(row: asyncpg.Record) -> Grant:
    attrs = row["attrs"]
    return Grant(
        id=row["id"],
        tenant=row["tenant"],
        grantee=row["grantee"],
        types=tuple(row["types"]),
        attrs=None if attrs is None else tuple(attrs),
        subscribe=row["subscribe"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def insert(
    db: Executor,
    grant_id: str,
    tenant: str,
    grantee: str,
    types: list[str],
    attrs: list[str] | None,
    subscribe: bool,
) -> Grant:
    row = await db.fetchrow(
        f"INSERT INTO grants (id, tenant, grantee, types, attrs, subscribe) VALUES ($1, $2, $3, $4, $5, $6)"
        f" RETURNING {_COLUMNS}",
        grant_id,
        tenant,
        grantee,
        types,
        attrs,
        subscribe,
    )
    assert row is not None
    return _grant(row)


async def of_tenant(db: Executor, tenant: str) -> list[Grant]:
    """Every grant ``tenant`` made, revoked ones too, newest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM grants WHERE tenant = $1 ORDER BY created_at DESC, id", tenant
    )
    return [_grant(row) for row in rows]


async def by_id(db: Executor, grant_id: str) -> Grant | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM grants WHERE id = $1", grant_id)
    return None if row is None else _grant(row)


async def active(db: Executor, tenant: str, grantees: list[str]) -> list[Grant]:
    """The grants of ``tenant`` to any of ``grantees`` in force now."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM grants"
        " WHERE tenant = $1 AND grantee = ANY($2::text[]) AND revoked_at IS NULL",
        tenant,
        grantees,
    )
    return [_grant(row) for row in rows]


async def revoke(db: Executor, grant_id: str, tenant: str | None) -> bool:
    status = await db.execute(
        "UPDATE grants SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
        " AND ($2::text IS NULL OR tenant = $2)",
        grant_id,
        tenant,
    )
    return bool(status.endswith(" 1"))
