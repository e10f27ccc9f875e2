"""Stored @context documents: remote ones cached ('Cached') and client-added ones ('Hosted')."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

HOSTED_PATH = "/ngsi-ld/v1/jsonldContexts/"


@dataclass(frozen=True, slots=True)
class StoredContext:
    id: str
    url: str
    kind: str
    body: dict[str, Any]
    created_at: datetime
    last_used_at: datetime | None
    hits: int


class ContextStore:
    """The jsonld_contexts table; hosted contexts get URLs under this broker's base URL."""

    def __init__(self, pool: asyncpg.Pool, base_url: str) -> None:
        self._pool = pool
        self._base_url = base_url

    def hosted_url(self, context_id: str) -> str:
        return f"{self._base_url}{HOSTED_PATH}{context_id}"

    async def find(self, url: str) -> dict[str, Any] | None:
        """The document stored for ``url`` (counting the use), or None."""
        body: dict[str, Any] | None = await self._pool.fetchval(
            "UPDATE jsonld_contexts SET hits = hits + 1, last_used_at = now() WHERE url = $1 RETURNING body",
            url,
        )
        return body

    async def remember(self, url: str, document: dict[str, Any]) -> None:
        """Keep a fetched remote document (kind Cached)."""
        await self._pool.execute(
            "INSERT INTO jsonld_contexts (id, url, kind, body) VALUES ($1, $2, 'Cached', $3)"
            " ON CONFLICT (url) DO UPDATE SET body = EXCLUDED.body",
            uuid.uuid4().hex,
            url,
            document,
        )

    async def host(self, document: dict[str, Any]) -> StoredContext:
        """Store a client-provided context (kind Hosted) under a new local id."""
        context_id = uuid.uuid4().hex
        row = await self._pool.fetchrow(
            "INSERT INTO jsonld_contexts (id, url, kind, body) VALUES ($1, $2, 'Hosted', $3) RETURNING *",
            context_id,
            self.hosted_url(context_id),
            document,
        )
        assert row is not None
        return StoredContext(**dict(row))

    async def get(self, key: str) -> StoredContext | None:
        """A stored context by local id, or by its URL."""
        row = await self._pool.fetchrow("SELECT * FROM jsonld_contexts WHERE id = $1 OR url = $1", key)
        return None if row is None else StoredContext(**dict(row))

    async def list(self, kind: str | None) -> list[StoredContext]:
        rows = await self._pool.fetch(
            "SELECT * FROM jsonld_contexts WHERE $1::text IS NULL OR kind = $1 ORDER BY created_at, id", kind
        )
        return [StoredContext(**dict(row)) for row in rows]

    async def delete(self, context_id: str) -> None:
        await self._pool.execute("DELETE FROM jsonld_contexts WHERE id = $1", context_id)

    async def replace_body(self, context_id: str, document: dict[str, Any]) -> None:
        await self._pool.execute(
            "UPDATE jsonld_contexts SET body = $2, created_at = now() WHERE id = $1", context_id, document
        )
