"""The supervisor restarts a failing task with back-off and reports it down meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from broker.clock import wait_event
from broker.supervise import Supervisor
from tests.clock import ManualClock
from tests.conftest import eventually


async def test_a_task_that_raises_is_reported_down_then_restarted_after_its_back_off() -> None:
    clock = ManualClock()
    supervisor = Supervisor(clock, backoff=1.0, backoff_max=8.0)
    runs: list[int] = []
    release = asyncio.Event()

    async def run() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise RuntimeError(f"boom {len(runs)}")
        await release.wait()

    supervisor.spawn("worker", run)
    try:
        await eventually(lambda: clock.sleepers == 1, what="the first back-off")
        assert supervisor.problems() == {"worker": "restarting after: RuntimeError: boom 1"}
        await clock.advance(0.9)
        assert runs == [0]
        await clock.advance(0.1)
        await eventually(lambda: len(runs) == 2 and clock.sleepers == 1, what="the second failure")
        # The back-off doubled: 1 s is not enough the second time.
        await clock.advance(1.0)
        assert len(runs) == 2
        await clock.advance(1.0)
        await eventually(lambda: len(runs) == 3, what="the third run")
        assert supervisor.problems() == {}
        assert supervisor.report()["worker"] == {
            "running": True,
            "restarts": 2,
            "lastError": "RuntimeError: boom 2",
        }
    finally:
        await supervisor.stop()


async def test_a_part_just_spawned_counts_as_running_before_its_first_step() -> None:
    supervisor = Supervisor(ManualClock())
    started = asyncio.Event()

    async def run() -> None:
        started.set()
        await asyncio.Event().wait()

    supervisor.spawn("worker", run)
    try:
        # No await between spawn and the probe: the task has not run a step yet.
        assert not started.is_set()
        assert supervisor.problems() == {}
        assert supervisor.report()["worker"] == {"running": True, "restarts": 0, "lastError": None}
        await eventually(started.is_set, what="the first step")
    finally:
        await supervisor.stop()


async def test_a_task_that_returns_is_restarted_too() -> None:
    clock = ManualClock()
    supervisor = Supervisor(clock, backoff=1.0)
    runs: list[int] = []
    forever = asyncio.Event()

    async def run() -> None:
        runs.append(1)
        if len(runs) == 1:
            return
        await forever.wait()

    supervisor.spawn("loop", run)
    try:
        await eventually(lambda: clock.sleepers == 1)
        assert supervisor.problems() == {"loop": "restarting after: returned unexpectedly"}
        await clock.advance(1.0)
        await eventually(lambda: len(runs) == 2)
        assert supervisor.problems() == {}
    finally:
        await supervisor.stop()


async def test_a_probe_names_its_part_while_it_says_it_is_down() -> None:
    supervisor = Supervisor(ManualClock())
    state: dict[str, str | None] = {"mqtt": "not connected to mqtt://127.0.0.1:1883"}
    supervisor.probe("mqtt", lambda: state["mqtt"])
    assert supervisor.problems() == {"mqtt": "not connected to mqtt://127.0.0.1:1883"}
    state["mqtt"] = None
    assert supervisor.problems() == {}

    def broken() -> str | None:
        raise KeyError("x")

    supervisor.probe("mqtt", broken)
    assert supervisor.problems() == {"mqtt": "health probe failed: KeyError: 'x'"}


async def test_cancel_stops_one_component_and_stop_ends_the_rest() -> None:
    supervisor = Supervisor(ManualClock())
    never = asyncio.Event()
    supervisor.spawn("a", never.wait)  # type: ignore[arg-type]
    supervisor.spawn("b", never.wait)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await supervisor.cancel("a")
    assert set(supervisor.report()) == {"b"}
    with pytest.raises(ValueError, match="already supervised"):
        supervisor.spawn("b", never.wait)  # type: ignore[arg-type]
    await supervisor.stop()
    assert supervisor.report() == {}


async def test_wait_event_returns_when_the_event_is_set_or_the_clock_has_moved() -> None:
    clock = ManualClock()
    event = asyncio.Event()
    waiting = asyncio.ensure_future(wait_event(clock, event, 5.0))
    await eventually(lambda: clock.sleepers == 1)
    await clock.advance(5.0)
    assert await waiting is False
    waiting = asyncio.ensure_future(wait_event(clock, event, 5.0))
    await eventually(lambda: clock.sleepers == 1)
    event.set()
    assert await waiting is True
    assert clock.sleepers == 0
