"""LISTEN on a channel for as long as the process runs, through database restarts.

A LISTEN lives on one connection; when PostgreSQL restarts or the connection is cut, the
notifications sent meanwhile are gone and no new ones arrive. Listener checks its connection
every ``check_interval`` seconds, listens again on a fresh one when it was lost, and then calls
``on_reconnect`` so the owner reloads what it caches (the changes it missed).

Started with a supervisor, the watch runs as a supervised task and the LISTEN connection is a
health probe of the same name: ``/ready`` names the part while it hears nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from broker.clock import SYSTEM, Clock
from broker.store.faults import TRANSIENT
from broker.supervise import Supervisor

log = logging.getLogger(__name__)

# A connection that was cut (TRANSIENT includes asyncpg's "cannot switch to state ..." on a pooled
# connection whose termination it has not processed yet).
_LOST: tuple[type[BaseException], ...] = TRANSIENT

Callback = Callable[[Any, int, str, object], None]


class Listener:
    """One channel's LISTEN, re-established after a lost connection."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: str,
        on_notify: Callback,
        on_reconnect: Callable[[], Awaitable[None]],
        *,
        check_interval: float = 1.0,
        clock: Clock = SYSTEM,
    ) -> None:
        self._pool = pool
        self._channel = channel
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._check_interval = check_interval
        self._clock = clock
        self._connection: Any = None
        self._watch: asyncio.Task[None] | None = None
        self._supervised: tuple[Supervisor, str] | None = None
        self.reconnects = 0

    async def start(self, supervisor: Supervisor | None = None, name: str | None = None) -> None:
        """Listen now (raises if the database is unreachable), then keep listening.

        With ``supervisor``, the watch is supervised as ``name`` and the connection is its probe.
        """
        await self._listen()
        if supervisor is None:
            self._watch = asyncio.get_running_loop().create_task(self._keep_listening_alone())
            return
        part = name or f"listen {self._channel}"
        self._supervised = (supervisor, part)
        supervisor.probe(part, self.problem)
        supervisor.spawn(part, self.keep_listening)

    async def stop(self) -> None:
        if self._supervised is not None:
            supervisor, part = self._supervised
            self._supervised = None
            supervisor.unprobe(part)
            await supervisor.cancel(part)
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        await self._release()

    @property
    def listening(self) -> bool:
        if self._connection is None:
            return False
        try:
            return not self._connection.is_closed()
        except asyncpg.InterfaceError:
            return False  # the pool has taken the dead connection back

    def problem(self) -> str | None:
        """None while listening, else why not (a supervisor probe)."""
        if self.listening:
            return None
        return f"LISTEN {self._channel} lost; listening again once the database answers"

    async def keep_listening(self) -> None:
        """Check the connection every ``check_interval`` seconds; listen again when it was lost."""
        while True:
            await self._clock.sleep(self._check_interval)
            if self.listening:
                continue
            try:
                await self._release()
                await self._listen()
                try:
                    await self._on_reconnect()
                except BaseException:
                    await self._release()  # the next check listens and reloads again
                    raise
            except _LOST as exc:
                log.warning("LISTEN %s not re-established (%s); retrying", self._channel, exc)
                continue
            self.reconnects += 1
            log.info("listening to %s again after a lost connection; caches reloaded", self._channel)

    async def _keep_listening_alone(self) -> None:
        """``keep_listening`` with no supervisor to restart it: a fault is logged, the watch goes on."""
        while True:
            try:
                await self.keep_listening()
            except Exception:
                log.exception("LISTEN %s: the watch failed; it goes on", self._channel)
                await self._clock.sleep(self._check_interval)

    async def _listen(self) -> None:
        connection = await self._pool.acquire()
        try:
            await connection.add_listener(self._channel, self._on_notify)
        except BaseException:
            # Not handed out again as it is: the pool opens a fresh connection in its place.
            with contextlib.suppress(Exception):
                connection.terminate()
            with contextlib.suppress(*_LOST):
                await self._pool.release(connection)
            raise
        self._connection = connection

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(*_LOST):
            await connection.remove_listener(self._channel, self._on_notify)
        with contextlib.suppress(*_LOST):
            await self._pool.release(connection)
