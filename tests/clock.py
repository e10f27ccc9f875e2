"""A clock that moves only when a test says so (the broker's timers take a ``broker.clock.Clock``)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(order=True)
class _Timer:
    due: float
    order: int
    callback: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time stands still until ``advance``; sleepers and timers due by then run in deadline order."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 12, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self._timers: list[_Timer] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    def call_later(self, seconds: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(self._elapsed + max(0.0, seconds), next(self._order), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    @property
    def sleepers(self) -> int:
        """Timers still pending (a test waits for a component to be asleep before advancing)."""
        return sum(1 for timer in self._timers if not timer.cancelled)

    def next_due(self) -> float | None:
        """Seconds until the earliest pending timer (None when nothing waits)."""
        pending = [t.due for t in self._timers if not t.cancelled]
        return min(pending) - self._elapsed if pending else None

    async def advance(self, seconds: float) -> None:
        """Move time ``seconds`` forward, running each timer due on the way at its own moment."""
        end = self._elapsed + seconds
        while self._timers and self._timers[0].due <= end:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._elapsed = max(self._elapsed, timer.due)
            timer.callback()
            # Let what the timer woke run (and perhaps schedule more) before time moves on.
            for _ in range(5):
                await asyncio.sleep(0)
        self._elapsed = end
        for _ in range(5):
            await asyncio.sleep(0)
