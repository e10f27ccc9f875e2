"""Stopping tasks never swallows the stopper's own cancellation (broker/tasks.py, broker/clock.py).

The defect it guards: a supervised loop waiting in ``wait_event`` that was cancelled just as its
wait ended swallowed the cancellation and went on looping, so the app's shutdown (and a test's
teardown) waited for it forever.
"""

from __future__ import annotations

import asyncio

import pytest

from broker.clock import wait_event
from broker.tasks import cancel_and_wait
from tests.clock import ManualClock


async def _loop_waiting(clock: ManualClock, event: asyncio.Event) -> None:
    while True:  # as the notifier's dispatch loop does
        await wait_event(clock, event, 60.0)
        event.clear()


@pytest.mark.parametrize("turns", range(6))
async def test_a_loop_cancelled_as_its_wait_ends_stops(turns: int) -> None:
    """Cancelled 0-5 turns of the loop after its event is set: wherever the cancellation lands
    (in the wait, in its cleanup, after it), the loop ends cancelled."""
    clock, event = ManualClock(), asyncio.Event()
    loop_task = asyncio.create_task(_loop_waiting(clock, event))
    for _ in range(3):
        await asyncio.sleep(0)  # parked in wait_event
    event.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    loop_task.cancel()
    done, _ = await asyncio.wait([loop_task], timeout=5.0)
    if not done:
        loop_task.cancel()
        await asyncio.wait([loop_task], timeout=5.0)
    assert done, f"the loop swallowed a cancellation that came {turns} turns after its event"
    assert loop_task.cancelled()


async def test_cancel_and_wait_propagates_the_callers_own_cancellation() -> None:
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # takes a moment to stop, as a real cleanup does

    inner = asyncio.create_task(stubborn())
    await started.wait()

    async def stopper() -> None:
        await cancel_and_wait(inner)
        await asyncio.sleep(3600)  # reached only if the cancellation below was swallowed

    outer = asyncio.create_task(stopper())
    await asyncio.sleep(0)
    outer.cancel()
    done, _ = await asyncio.wait([outer], timeout=5.0)
    assert done
    assert outer.cancelled()
    await asyncio.wait([inner], timeout=5.0)
    assert inner.cancelled()


async def test_cancel_and_wait_raises_what_a_task_failed_with() -> None:
    async def failing() -> None:
        raise LookupError("broken")

    task = asyncio.create_task(failing())
    await asyncio.wait([task])
    with pytest.raises(LookupError, match="broken"):
        await cancel_and_wait(task, None)
