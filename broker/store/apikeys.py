"""The api_keys table: keys stored as hashes, with their tenant, roles, label and lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from broker.store.pool import Executor

_COLUMNS = "id, tenant, label, roles, hash, created_at, last_used_at, expires_at, revoked_at"


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: str
    tenant: str | None
    label: str
    roles: tuple[str, ...]
    hash: bytes
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


def _key(row: asyncpg.Record) -> StoredKey:
    return StoredKey(
        id=row["id"],
        tenant=row["tenant"],
        label=row["label"],
        roles=tuple(row["roles"]),
        hash=bytes(row["hash"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


async def insert(
    db: Executor,
    key_id: str,
    tenant: str | None,
    label: str,
    roles: list[str],
    digest: bytes,
    expires_at: datetime | None,
) -> StoredKey:
    row = await db.fetchrow(
        f"INSERT INTO api_keys (id, tenant, label, roles, hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        f" RETURNING {_COLUMNS}",
        key_id,
        tenant,
        label,
        roles,
        digest,
        expires_at,
    )
    assert row is not None
    return _key(row)


async def by_id(db: Executor, key_id: str) -> StoredKey | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
    return None if row is None else _key(row)


async def listing(db: Executor, tenant: str | None) -> list[StoredKey]:
    """The keys of ``tenant`` (None: every key of the instance), newest first."""
    if tenant is None:
        rows = await db.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at DESC, id")
    else:
        rows = await db.fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant = $1 ORDER BY created_at DESC, id", tenant
        )
    return [_key(row) for row in rows]


async def revoke(db: Executor, key_id: str, tenant: str | None) -> bool:
    """Revoke ``key_id`` (of ``tenant`` unless None); False when there is no such key not yet revoked."""
    status = await db.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
        " AND ($2::text IS NULL OR tenant = $2)",
        key_id,
        tenant,
    )
    return bool(status.endswith(" 1"))


async def touch(db: Executor, key_id: str) -> None:
    """Record that the key was used (called at most once per cache period per key)."""
    await db.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", key_id)


async def operators(db: Executor) -> int:
    """How many operator keys can be used now (not revoked, not expired)."""
    count = await db.fetchval(
        "SELECT count(*) FROM api_keys WHERE tenant IS NULL AND 'operator' = ANY(roles)"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    )
    return int(count)
