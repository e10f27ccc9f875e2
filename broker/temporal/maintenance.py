"""The periodic history job: daily partitions ahead of time, then the retention purge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg

from broker.config import Settings
from broker.temporal import retention
from broker.temporal.duration import parse_keep
from broker.temporal.partitions import ensure_ahead

log = logging.getLogger(__name__)


class HistoryMaintenance:
    """Runs at start (so today's and the next days' partitions exist) and every interval after."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> None:
        """Create the partitions ahead, then purge what retention lets go."""
        async with self._pool.acquire() as conn:
            await ensure_ahead(conn, datetime.now(UTC).date(), self._settings.history_days_ahead)
        await retention.purge(self._pool, parse_keep(self._settings.history_keep))

    async def start(self) -> None:
        try:
            async with self._pool.acquire() as conn:
                await ensure_ahead(conn, datetime.now(UTC).date(), self._settings.history_days_ahead)
        except asyncpg.PostgresError as exc:
            # Serving does not depend on it: every time has a partition ("future" takes the rest).
            log.warning("history partitions not created at start (retried later): %s", exc)
        self._task = asyncio.create_task(self._loop(), name="history-maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.retention_interval)
            try:
                await self.run_once()
            except (asyncpg.PostgresError, OSError) as exc:
                # The next round retries; a write never needs this job to succeed (see partitions).
                log.error("history maintenance failed: %s: %s", type(exc).__name__, exc)
