"""Which tasks a test started and left running: the check behind conftest's ``no_tasks_left_behind``."""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

TESTS = str(Path(__file__).parent) + os.sep
SITE_PACKAGES = f"{os.sep}site-packages{os.sep}"


ASYNCIO = str(Path(asyncio.__file__).parent) + os.sep
# Where a loop runs its callbacks: the frames below these are whoever ran the loop (pytest,
# hypothesis' wrapper compiled under the test's file name), not whoever created the task.
LOOP_FRAMES = {"_run", "_run_once", "run_forever", "run_until_complete", "run"}


def created_by_test() -> bool:
    """True when a frame of the test suite is on the stack that is creating a task, above the loop."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(64):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_filename.startswith(ASYNCIO) and code.co_name in LOOP_FRAMES:
            return False
        if code.co_filename.startswith(TESTS) and SITE_PACKAGES not in code.co_filename:
            return True
        frame = frame.f_back
    return False


class TaskWatch:
    """Records the tasks created from test-suite code while it is installed on a loop.

    A task counts as the test's when a test-suite frame is on the stack that creates it; the
    broker's own background tasks (started by the session's app, restarted by its supervisor,
    spawned per request by the server) do not.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_task_factory()
        self._started: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def install(self) -> None:
        self._loop.set_task_factory(self._factory)  # type: ignore[arg-type]

    def uninstall(self) -> None:
        self._loop.set_task_factory(self._previous)

    def _factory(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        previous = self._previous
        task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
        assert isinstance(task, asyncio.Task)
        if created_by_test():
            self._started.add(task)
        return task

    async def left_running(self, turns: int = 5) -> list[asyncio.Task[Any]]:
        """The recorded tasks still running after ``turns`` turns of the loop (a cancelled task
        needs a few to finish)."""
        for _ in range(turns):
            if all(task.done() for task in self._started):
                return []
            await asyncio.sleep(0)
        return [task for task in self._started if not task.done()]
