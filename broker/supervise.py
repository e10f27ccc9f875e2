"""Background tasks that restart after an unexpected error, and say so on ``/ready``.

Every long-running part of the broker (the notifier, the device pipeline, the command dispatcher,
history maintenance, listeners, the MQTT client) runs under one ``Supervisor`` per process. A task
that raises is logged with its traceback, counted, shown as down, and started again after a
back-off that doubles up to a ceiling (and starts small again once a run has lasted a while).
Parts whose health is a connection rather than a task (MQTT connected, LISTEN established)
register a probe instead. ``problems()`` is what ``/ready`` answers 503 with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from broker.clock import SYSTEM, Clock
from broker.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# A probe says why its part is down, or None while it is fine.
Probe = Callable[[], str | None]


@dataclass(slots=True)
class _Component:
    name: str
    run: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    running: bool = False
    restarts: int = 0
    last_error: str | None = None


class Supervisor:
    """Runs named forever-tasks, restarting them with back-off, and collects health probes."""

    def __init__(
        self,
        clock: Clock = SYSTEM,
        *,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        healthy_after: float = 60.0,
    ) -> None:
        self._clock = clock
        self._backoff = (backoff, backoff_max)
        self._healthy_after = healthy_after
        self._components: dict[str, _Component] = {}
        self._probes: dict[str, Probe] = {}
        self._stopping = False

    @property
    def clock(self) -> Clock:
        """The clock the back-offs wait on (the supervised parts wait on it too)."""
        return self._clock

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run()`` for as long as the process runs; restart it whenever it raises or returns."""
        if name in self._components:
            raise ValueError(f"a component named {name!r} is already supervised")
        # Running from now on: /ready must not blip "not running" before the task's first step.
        component = _Component(name, run, running=True)
        self._components[name] = component
        component.task = asyncio.get_running_loop().create_task(self._keep(component), name=name)

    def probe(self, name: str, probe: Probe) -> None:
        """Register ``probe`` as the health of part ``name`` (replacing an earlier one)."""
        self._probes[name] = probe

    def unprobe(self, name: str) -> None:
        self._probes.pop(name, None)

    def problems(self) -> dict[str, str]:
        """The parts that are down now, each with why (empty: everything is up)."""
        down = {
            c.name: f"restarting after: {c.last_error}" if c.last_error else "not running"
            for c in self._components.values()
            if not c.running and not self._stopping
        }
        for name, probe in self._probes.items():
            try:
                reason = probe()
            except Exception as exc:  # a broken probe is itself a problem to show, not to raise
                reason = f"health probe failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                down[name] = reason
        return down

    def report(self) -> dict[str, object]:
        """Each supervised task's state and restarts, for ``/health``."""
        return {
            c.name: {"running": c.running, "restarts": c.restarts, "lastError": c.last_error}
            for c in self._components.values()
        }

    async def cancel(self, name: str) -> None:
        """Stop supervising ``name``: cancel its task and wait for it (an owner's orderly stop)."""
        component = self._components.pop(name, None)
        if component is None or component.task is None:
            return
        await cancel_and_wait(component.task)

    async def stop(self) -> None:
        """Cancel every supervised task and wait for them to end."""
        self._stopping = True
        await cancel_and_wait(*(c.task for c in self._components.values()))
        self._components.clear()

    async def _keep(self, component: _Component) -> None:
        base, ceiling = self._backoff
        delay = base
        while True:
            started = self._clock.monotonic()
            component.running = True
            try:
                await component.run()
            except asyncio.CancelledError:
                component.running = False
                raise
            except Exception as exc:
                component.last_error = f"{type(exc).__name__}: {exc}"
                failure: BaseException | None = exc
            else:
                component.last_error = "returned unexpectedly"
                failure = None
            component.running = False
            component.restarts += 1
            if self._clock.monotonic() - started >= self._healthy_after:
                delay = base  # it had been fine for a while: this is a new fault, not the same one
            log.error(
                "%s stopped (%s); restarting it in %.1f s",
                component.name,
                component.last_error,
                delay,
                exc_info=failure,
            )
            await self._clock.sleep(delay)
            delay = min(delay * 2, ceiling)
