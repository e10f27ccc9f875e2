"""The periodic history job: daily partitions ahead of time, then the retention purge (and the
audit log's, NGSI_AUDIT_KEEP).

It runs under the process's Supervisor ("history-maintenance"): a database error is logged and
the next round tries again (a write never needs this job to have run: every time has a
partition); anything else is a bug the supervisor logs with its traceback and restarts after.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

import asyncpg

from broker.clock import SYSTEM, Clock
from broker.store import personal, retention
from broker.store.partitions import ensure_ahead

log = logging.getLogger(__name__)


class HistoryMaintenance:
    """Runs at start (so today's and the next days' partitions exist) and every ``interval`` after."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        days_ahead: int,
        keep: timedelta | None,
        interval: float,
        audit_keep: timedelta | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._pool = pool
        self._days_ahead = days_ahead
        self._keep = keep
        self._audit_keep = audit_keep
        self._interval = interval
        self._clock = clock

    async def _partitions_ahead(self) -> None:
        async with self._pool.acquire() as conn:
            await ensure_ahead(conn, self._clock.now().astimezone(UTC).date(), self._days_ahead)

    async def run_once(self) -> None:
        """Create the partitions ahead, then purge what retention lets go, and audit rows older
        than NGSI_AUDIT_KEEP."""
        await self._partitions_ahead()
        await retention.purge(self._pool, self._keep)
        if self._audit_keep is not None:
            await personal.purge(self._pool, self._clock.now() - self._audit_keep)

    async def prepare(self) -> None:
        """The partitions ahead at start; serving does not wait for them ("future" takes the rest)."""
        try:
            await self._partitions_ahead()
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("history partitions not created at start (retried later): %s", exc)

    async def run(self) -> None:
        """Every ``interval`` seconds, one round, for as long as the process runs."""
        while True:
            await self._clock.sleep(self._interval)
            try:
                await self.run_once()
            except (asyncpg.PostgresError, OSError) as exc:
                log.error("history maintenance failed (retried next round): %s: %s", type(exc).__name__, exc)
