"""Stored @context documents of each tenant: remote ones cached ('Cached'), client-added ones ('Hosted'),
inline ones a request carried ('ImplicitlyCreated', clause 5.13.1).

A tenant sees only its own rows. A remote document another tenant already fetched is shared
read-only: it is copied into the asking tenant's cache instead of being fetched again, so each
tenant lists, reloads and deletes only its own copy.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

HOSTED_PATH = "/ngsi-ld/v1/jsonldContexts/"
_COLUMNS = "id, url, kind, body, created_at, last_used_at, hits"


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

    def is_hosted(self, url: str) -> bool:
        """True for a URL naming a context hosted here (never fetched: it is some tenant's row)."""
        return url.startswith(self._base_url + HOSTED_PATH)

    async def find(self, tenant: str, url: str) -> dict[str, Any] | None:
        """The document ``tenant`` has for ``url``, or a copy of another's cached one (uses are counted
        by the resolver, see count_uses)."""
        body: dict[str, Any] | None = await self._pool.fetchval(
            "SELECT body FROM jsonld_contexts WHERE tenant = $1 AND url = $2", tenant, url
        )
        if body is None and not self.is_hosted(url):
            body = await self._pool.fetchval(
                "SELECT body FROM jsonld_contexts WHERE kind = 'Cached' AND url = $1 LIMIT 1", url
            )
            if body is not None:
                await self.remember(tenant, url, body)
        return body

    async def remember(self, tenant: str, url: str, document: dict[str, Any]) -> None:
        """Keep a fetched remote document for ``tenant`` (kind Cached)."""
        await self._pool.execute(
            "INSERT INTO jsonld_contexts (id, tenant, url, kind, body) VALUES ($1, $2, $3, 'Cached', $4)"
            " ON CONFLICT (tenant, url) DO UPDATE SET body = EXCLUDED.body",
            uuid.uuid4().hex,
            tenant,
            url,
            document,
        )

    async def host(self, tenant: str, document: dict[str, Any]) -> StoredContext:
        """Store a client-provided context (kind Hosted) of ``tenant`` under a new local id."""
        context_id = uuid.uuid4().hex
        row = await self._pool.fetchrow(
            "INSERT INTO jsonld_contexts (id, tenant, url, kind, body) VALUES ($1, $2, $3, 'Hosted', $4)"
            f" RETURNING {_COLUMNS}",
            context_id,
            tenant,
            self.hosted_url(context_id),
            document,
        )
        assert row is not None
        return StoredContext(**dict(row))

    async def keep_implicit(self, tenant: str, document: dict[str, Any]) -> str:
        """Keep an inline @context a request of ``tenant`` carried (kind ImplicitlyCreated, clause 5.13.1).

        Its id is a digest of the tenant and the document: the same inline context, sent again,
        is one row, only its use counted.
        """
        canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        context_id = hashlib.sha256(tenant.encode() + b"\x00" + canonical).hexdigest()[:32]
        await self._pool.execute(
            "INSERT INTO jsonld_contexts (id, tenant, url, kind, body)"
            " VALUES ($1, $2, $3, 'ImplicitlyCreated', $4) ON CONFLICT DO NOTHING",
            context_id,
            tenant,
            self.hosted_url(context_id),
            document,
        )
        return self.hosted_url(context_id)

    async def count_uses(self, tenant: str, uses: Mapping[str, int]) -> None:
        """Add ``uses`` (per URL) to the contexts' numberOfHits and set their lastUsage (clause 5.2.35)."""
        await self._pool.execute(
            "UPDATE jsonld_contexts c SET hits = c.hits + u.n, last_used_at = now()"
            " FROM unnest($2::text[], $3::bigint[]) AS u(url, n) WHERE c.tenant = $1 AND c.url = u.url",
            tenant,
            list(uses),
            list(uses.values()),
        )

    async def get(self, tenant: str, key: str) -> StoredContext | None:
        """A context of ``tenant`` by local id, or by its URL."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM jsonld_contexts WHERE tenant = $1 AND (id = $2 OR url = $2)", tenant, key
        )
        return None if row is None else StoredContext(**dict(row))

    async def list(self, tenant: str, kind: str | None) -> list[StoredContext]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM jsonld_contexts WHERE tenant = $1 AND ($2::text IS NULL OR kind = $2)"
            " ORDER BY created_at, id",
            tenant,
            kind,
        )
        return [StoredContext(**dict(row)) for row in rows]

    async def delete(self, tenant: str, context_id: str) -> None:
        await self._pool.execute(
            "DELETE FROM jsonld_contexts WHERE tenant = $1 AND id = $2", tenant, context_id
        )

    async def replace_body(self, tenant: str, context_id: str, document: dict[str, Any]) -> None:
        await self._pool.execute(
            "UPDATE jsonld_contexts SET body = $3, created_at = now() WHERE tenant = $1 AND id = $2",
            tenant,
            context_id,
            document,
        )
