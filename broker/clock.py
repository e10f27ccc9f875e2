"""Time as the broker's timers see it: the system clock in production, a hand-driven one in tests.

Every component that waits, retries with back-off, throttles or fires on a schedule takes a
``Clock`` instead of calling ``asyncio.sleep``, ``loop.time`` or ``datetime.now`` itself, so a
test can move time forward by exactly the amount it means (tests/clock.py ``ManualClock``) and
never depends on how fast a loaded machine happens to run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from broker.tasks import cancel_and_wait


class Cancellable(Protocol):
    """What ``Clock.call_later`` returns: a pending call that can be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall time, monotonic time and waiting, as one replaceable object."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for deadlines and intervals)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        """Call ``callback`` once ``seconds`` of this clock's time have passed."""
        ...


class SystemClock:
    """The real clock: the event loop's timers and the system's UTC time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)


SYSTEM = SystemClock()


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` of ``clock`` time pass; True when it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Not "cancel, then await with CancelledError suppressed": that swallowed the caller's
        # own cancellation when it came meanwhile, and a supervised loop never stopped.
        await cancel_and_wait(waiter, timer)
    return event.is_set()
