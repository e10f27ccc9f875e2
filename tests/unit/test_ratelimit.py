"""Token buckets per identity (issue 12 item 7): a burst, a steady rate, Retry-After, on a hand clock."""

from __future__ import annotations

import pytest

from broker.auth.model import ANONYMOUS, Identity, Role
from broker.auth.ratelimit import RateLimiter, parse_rates
from tests.clock import ManualClock


def key(*roles: Role) -> Identity:
    return Identity("key", "k1", "town", frozenset(roles))


async def test_a_burst_then_the_rate_then_a_wait_until_the_next_token() -> None:
    clock = ManualClock()
    limiter = RateLimiter({"reader": 2.0}, burst_seconds=2.0, clock=clock)
    assert [limiter.wait("k", 2.0) for _ in range(4)] == [0.0] * 4  # two seconds' worth at once
    assert limiter.wait("k", 2.0) == pytest.approx(0.5)
    await clock.advance(0.5)
    assert limiter.wait("k", 2.0) == 0.0
    assert limiter.wait("k", 2.0) == pytest.approx(0.5)
    # Other keys have buckets of their own.
    assert limiter.wait("other", 2.0) == 0.0


def test_a_key_gets_its_most_generous_role_and_zero_is_unlimited() -> None:
    limiter = RateLimiter({"reader": 5.0, "writer": 50.0, "operator": 0.0, "anonymous": 1.0})
    assert limiter.rate_of(key(Role.READER)) == 5.0
    assert limiter.rate_of(key(Role.READER, Role.WRITER)) == 50.0
    assert limiter.rate_of(key(Role.OPERATOR)) == 0.0
    assert limiter.rate_of(key(Role.DEVICE)) == 0.0  # not listed: unlimited
    assert limiter.rate_of(ANONYMOUS) == 1.0
    assert all(limiter.wait("op", 0.0) == 0.0 for _ in range(1000))


def test_rates_are_role_rate_pairs() -> None:
    assert parse_rates("reader=10, anonymous=0.5,") == {"reader": 10.0, "anonymous": 0.5}
    assert parse_rates("") == {}
    for bad in ("reader", "king=3", "reader=-1", "reader=nan", "reader=x"):
        with pytest.raises(ValueError, match=r"must"):
            parse_rates(bad)
