"""The check that fails a test leaving its tasks behind (tests/tasks.py) sees them, and only them."""

from __future__ import annotations

import asyncio
import functools
import os

from tests.tasks import TaskWatch


async def test_a_task_the_test_started_and_left_is_reported() -> None:
    watch = TaskWatch(asyncio.get_running_loop())
    watch.install()
    try:
        forgotten = asyncio.create_task(asyncio.sleep(3600), name="forgotten")
        finished = asyncio.create_task(asyncio.sleep(0), name="finished")
        await finished
    finally:
        watch.uninstall()
    try:
        assert await watch.left_running() == [forgotten]
    finally:
        forgotten.cancel()
    assert await watch.left_running() == []


async def test_a_task_created_outside_test_code_is_not_the_tests() -> None:
    loop = asyncio.get_running_loop()
    watch = TaskWatch(loop)
    watch.install()
    before = asyncio.all_tasks()
    try:
        # Created from a loop callback, as the server creates a handler task per request: no test
        # frame is on that stack (a lambda here would be one).
        loop.call_soon(functools.partial(loop.create_task, asyncio.sleep(3600)))
        await asyncio.sleep(0)
    finally:
        watch.uninstall()
    (created,) = asyncio.all_tasks() - before
    try:
        assert await watch.left_running() == []
    finally:
        created.cancel()


async def test_the_tests_run_on_the_loop_ngsi_test_loop_names() -> None:
    """deploy/test.sh's uvloop run really runs on uvloop (conftest's pytest_asyncio_loop_factories)."""
    module = type(asyncio.get_running_loop()).__module__
    if os.environ.get("NGSI_TEST_LOOP") == "uvloop":
        assert module.startswith("uvloop"), module
    else:
        assert module.startswith("asyncio"), module
