"""API keys: made once, shown once, stored as a hash, checked per request through a short cache.

A key reads ``ngsk_<id>_<secret>``: the id (16 hex digits) finds the row, the secret (256 random
bits) proves the holder; the row keeps only SHA-256 of the whole key, compared in constant time.
Checked keys are cached per process for ``ttl`` seconds (NGSI_AUTH_CACHE_SECONDS), so a busy
client costs one dictionary lookup and one hash per request, not a database round trip, and the
requests that find an entry stale together share one read; a revocation therefore reaches the
other processes within that time (this one at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from broker.auth.model import Identity, Role
from broker.clock import SYSTEM, Clock
from broker.store import apikeys
from broker.store.apikeys import StoredKey

PREFIX = "ngsk"
_ID_HEX = 16
_CACHE_MAX = 10_000
_ROLES = frozenset(Role)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def key_id_of(token: str) -> str | None:
    """The id part of a presented key, or None when it is not shaped like one of ours."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != _ID_HEX or not secret:
        return None
    try:
        int(key_id, 16)
    except ValueError:
        return None
    return key_id


@dataclass(frozen=True, slots=True)
class _Cached:
    fetched: float
    key: StoredKey | None


class KeyRing:
    """Creates, lists, revokes and checks the instance's API keys."""

    def __init__(self, pool: asyncpg.Pool, *, ttl: float = 5.0, clock: Clock = SYSTEM) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._reading: dict[str, asyncio.Future[StoredKey | None]] = {}

    @property
    def clock(self) -> Clock:
        return self._clock

    async def create(
        self,
        tenant: str | None,
        roles: Iterable[Role],
        label: str = "",
        expires_at: datetime | None = None,
    ) -> tuple[StoredKey, str]:
        """A new key: its row and the key itself, which is never shown again."""
        key_id = secrets.token_hex(_ID_HEX // 2)
        token = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        stored = await apikeys.insert(
            self._pool, key_id, tenant, label, sorted(set(roles)), digest(token), expires_at
        )
        return stored, token

    async def listing(self, tenant: str | None) -> list[StoredKey]:
        return await apikeys.listing(self._pool, tenant)

    async def get(self, key_id: str) -> StoredKey | None:
        return await apikeys.by_id(self._pool, key_id)

    async def revoke(self, key_id: str, tenant: str | None) -> bool:
        revoked = await apikeys.revoke(self._pool, key_id, tenant)
        self._cache.pop(key_id, None)
        return revoked

    async def identify(self, token: str) -> Identity | None:
        """The identity ``token`` proves, or None (unknown, wrong secret, revoked or expired)."""
        key_id = key_id_of(token)
        if key_id is None:
            return None
        key = await self._lookup(key_id)
        if key is None or not hmac.compare_digest(key.hash, digest(token)):
            return None
        if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= self._clock.now()):
            return None
        return Identity("key", key.id, key.tenant, frozenset(Role(r) for r in key.roles if r in _ROLES))

    async def _lookup(self, key_id: str) -> StoredKey | None:
        now = self._clock.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached.fetched < self._ttl:
            return cached.key
        # One read per key however many requests find its entry stale at once (64 connections of
        # one client would otherwise read and touch the row 64 times every period).
        reading = self._reading.get(key_id)
        if reading is None:
            reading = self._reading[key_id] = asyncio.ensure_future(self._read(key_id, now))
            reading.add_done_callback(lambda _: self._reading.pop(key_id, None))
        return await asyncio.shield(reading)

    async def _read(self, key_id: str, now: float) -> StoredKey | None:
        key = await apikeys.by_id(self._pool, key_id)
        if key is not None and key.revoked_at is None:
            await apikeys.touch(self._pool, key_id)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # guessed ids must not grow the cache without bound
        self._cache[key_id] = _Cached(now, key)
        return key
