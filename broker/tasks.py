"""Stopping tasks without swallowing the caller's own cancellation.

``task.cancel()`` then ``with suppress(CancelledError): await task`` has a hole: when the caller
is itself cancelled while it waits there, the CancelledError meant for the caller is the one
suppressed, and the caller runs on as if nothing had happened. A supervised loop doing that in
its wait (``broker.clock.wait_event``) never ended, and the app's shutdown waited for it forever.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` (None and finished ones are skipped) and wait until they have ended.

    A cancellation of the caller propagates (asyncio.wait raises only that one); a task that
    ended with an exception other than its cancellation raises it here, as awaiting it would.
    """
    given = [task for task in tasks if task is not None]
    running = [task for task in given if not task.done()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running)
    for task in given:
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            raise failure
