"""What an identity may see of a tenant that is not its own: sharing grants and open data.

A grant of tenant A to tenant B lets B's readers read A's entities of the granted types, only
the granted attributes of them when the grant names some; a grant to everyone ('*') is A's open
data, readable without credentials. ``Visibility`` is what the grants in force add up to for one
request; the read handlers apply it (broker/api/visibility.py): other types are absent, other
attributes left out. Grants are cached per process like keys (NGSI_AUTH_CACHE_SECONDS).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from broker.clock import SYSTEM, Clock
from broker.store import grants as stored
from broker.store.grants import EVERYONE, Grant


@dataclass(frozen=True, slots=True)
class Visibility:
    """The entity types a request may see, each with the attributes it may see (None: all)."""

    types: dict[str, frozenset[str] | None]

    def attrs_of(self, entity_types: Iterable[str]) -> frozenset[str] | None:
        """The attributes visible on an entity of ``entity_types`` (None: all); empty when none is."""
        visible: set[str] = set()
        for entity_type in entity_types:
            if entity_type not in self.types:
                continue
            attrs = self.types[entity_type]
            if attrs is None:
                return None
            visible |= attrs
        return frozenset(visible)

    def shows(self, entity_types: Iterable[str]) -> bool:
        return any(t in self.types for t in entity_types)

    @property
    def restricts_attrs(self) -> bool:
        return any(attrs is not None for attrs in self.types.values())


def visibility(grants: Iterable[Grant]) -> Visibility | None:
    """What ``grants`` add up to; None when there is none."""
    types: dict[str, frozenset[str] | None] = {}
    found = False
    for grant in grants:
        found = True
        for entity_type in grant.types:
            if grant.attrs is None or types.get(entity_type, frozenset()) is None:
                types[entity_type] = None
            else:
                types[entity_type] = (types.get(entity_type) or frozenset()) | frozenset(grant.attrs)
    return Visibility(types) if found else None


class Grants:
    """Makes, lists, revokes and looks up the grants, with a short per-process cache."""

    def __init__(self, pool: asyncpg.Pool, *, ttl: float = 5.0, clock: Clock = SYSTEM) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str | None], tuple[float, Visibility | None]] = {}

    async def create(
        self, tenant: str, grantee: str, types: list[str], attrs: list[str] | None, subscribe: bool
    ) -> Grant:
        grant = await stored.insert(
            self._pool, f"grant-{secrets.token_hex(8)}", tenant, grantee, types, attrs, subscribe
        )
        self._cache.clear()
        return grant

    async def listing(self, tenant: str) -> list[Grant]:
        return await stored.of_tenant(self._pool, tenant)

    async def get(self, grant_id: str) -> Grant | None:
        return await stored.by_id(self._pool, grant_id)

    async def revoke(self, grant_id: str, tenant: str | None) -> bool:
        revoked = await stored.revoke(self._pool, grant_id, tenant)
        self._cache.clear()
        return revoked

    async def seen_by(self, tenant: str, grantee: str | None) -> Visibility | None:
        """What ``grantee`` (a tenant; None: an anonymous caller) may read of ``tenant``."""
        key = (tenant, grantee)
        now = self._clock.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        grantees = [EVERYONE] if grantee is None else [EVERYONE, grantee]
        found = visibility(await stored.active(self._pool, tenant, grantees))
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[key] = (now, found)
        return found
