"""Requests per identity, as token buckets (issue 12 item 7): a burst, then a steady rate, then 429.

Each identity (an API key's id; an anonymous caller's address) has a bucket of ``burst`` tokens
refilled at ``rate`` per second; a request takes one, and with none left is answered 429 with
Retry-After saying when the next one is due. Buckets live in each process: with NGSI_WORKERS
processes a client spread over them gets up to that many times the rate. Buckets idle long
enough to be full again are forgotten, so the table stays the size of the active clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from broker.auth.model import Identity, Role
from broker.clock import SYSTEM, Clock

ANONYMOUS_ROLE = "anonymous"
_SWEEP_EVERY = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


def parse_rates(text: str) -> dict[str, float]:
    """``role=rate`` pairs (requests per second, 0: unlimited) for the roles and ``anonymous``."""
    rates: dict[str, float] = {}
    known = {*Role, ANONYMOUS_ROLE}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise ValueError(f"must be role=rate pairs for {', '.join(sorted(known))}; got {part.strip()!r}")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"the rate of {name} must be 0 (unlimited) or a positive number")
        rates[name] = rate
    return rates


class RateLimiter:
    """Token buckets keyed by identity; ``burst_seconds`` of the rate may be spent at once."""

    def __init__(self, rates: dict[str, float], *, burst_seconds: float = 2.0, clock: Clock = SYSTEM) -> None:
        self._rates = rates
        self._burst_seconds = burst_seconds
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._takes = 0

    def rate_of(self, identity: Identity) -> float:
        """The identity's rate: its most generous role's (0, unlimited, wins; a role not listed
        is unlimited)."""
        names = [str(role) for role in identity.roles] or [ANONYMOUS_ROLE]
        rates = [self._rates.get(name, 0.0) for name in names]
        return 0.0 if 0.0 in rates else max(rates)

    def wait(self, key: str, rate: float) -> float:
        """Take a token for ``key``: 0 when one was there, else the seconds until the next is due."""
        if rate <= 0:
            return 0.0
        now = self._clock.monotonic()
        burst = max(1.0, rate * self._burst_seconds)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(burst, now)
        else:
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        self._takes += 1
        if self._takes % _SWEEP_EVERY == 0:
            self._sweep(now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _sweep(self, now: float) -> None:
        """Forget buckets that have been idle long enough to be full again."""
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < self._burst_seconds * 2}
