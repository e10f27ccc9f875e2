"""The forwarder of adapter mode: the forwarding outbox to the external broker, at least once, in order
per entity, with back-off while the target is down.

One supervised loop per process wakes on ``LISTEN ngsi_forward`` (and polls). A cycle is one
transaction: claim the queues of up to ``batch`` entities, up to ROUNDS changes each
(broker.store.forwarding: their heads FOR UPDATE SKIP LOCKED, so processes share the work and
no two hold one entity), send them in rounds (each entity's first change, then its second...)
per tenant, delete what the target has, move what it refused (a 4xx) to the dead letters,
commit. A crash before the commit sends the same rows again.

A target that is down is not this broker's fault: /ready stays 200 (the broker serves its own
API and devices), /health shows the backlog and the age of its oldest change, and the outage is
logged once when it starts and once when it ends. The back-off doubles per failed attempt from
``backoff_base`` up to ``backoff_max`` seconds, on the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg

from broker.clock import SYSTEM, Clock, wait_event
from broker.forward.target import Answer, Target
from broker.store import forwarding
from broker.store.faults import TRANSIENT
from broker.store.forwarding import FORWARD_CHANNEL, Pending
from broker.store.listener import Listener
from broker.supervise import Supervisor

log = logging.getLogger(__name__)

FORWARDER = "forwarder"
LISTENER = "forwarder.listener"
# Backlog figures for /health are read again at most this often (seconds), not on every cycle.
_STATS_EVERY = 1.0
# Changes of one entity one cycle sends (one request per round): a backlog of a single busy
# device after an outage goes out at several rows per transaction, not one.
ROUNDS = 10


class Forwarder:
    """Forwards the outbox to one Target, a batch per transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        target: Target,
        *,
        scope: str,
        clock: Clock = SYSTEM,
        batch: int = 100,
        poll_interval: float = 1.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        self._pool = pool
        self._target = target
        self._scope = scope
        self._clock = clock
        self._batch = batch
        self._poll = poll_interval
        self._backoff = (backoff_base, backoff_max)
        self._wake = asyncio.Event()
        self._listener = Listener(pool, FORWARD_CHANNEL, self._on_notify, self._on_reconnect, clock=clock)
        self._supervisor: Supervisor | None = None
        # Outage state: consecutive failed attempts, since when, why; the next attempt's time.
        self._failures = 0
        self._down_since: datetime | None = None
        self._last_error: str | None = None
        self._retry_at = 0.0
        # Counters and figures for /health.
        self.forwarded = 0
        self.refused = 0
        self.cycles = 0
        self._backlog = 0
        self._oldest: datetime | None = None
        self._dead_letters = 0
        self._stats_at = -float("inf")

    async def start(self, supervisor: Supervisor) -> None:
        """Listen, then run the loop under ``supervisor``."""
        await self._target.open()
        await self._listener.start(supervisor, LISTENER)
        await self._refresh_stats()
        supervisor.spawn(FORWARDER, self.run)
        self._supervisor = supervisor

    async def stop(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.cancel(FORWARDER)
            self._supervisor = None
        await self._listener.stop()
        await self._target.close()

    def wake(self) -> None:
        self._wake.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()

    async def _on_reconnect(self) -> None:
        self._wake.set()

    @property
    def reachable(self) -> bool:
        return self._down_since is None

    def report(self) -> dict[str, object]:
        """The forwarding state for ``/health``: target, outage, backlog and its oldest change's age."""
        now = self._clock.now()
        oldest = None if self._oldest is None else max(0.0, (now - self._oldest).total_seconds())
        return {
            "target": self._target.shown,
            "scope": self._scope,
            "reachable": self.reachable,
            "downSince": None if self._down_since is None else self._down_since.isoformat(),
            "lastError": self._last_error,
            "backlog": self._backlog,
            "oldestAgeSeconds": oldest,
            "forwarded": self.forwarded,
            "refused": self.refused,
            "deadLetters": self._dead_letters,
        }

    async def run(self) -> None:
        """The loop: a cycle whenever woken or polled and not backing off; database outages waited out."""
        self._wake.set()  # what a previous run left goes out at once
        while True:
            wait = self._retry_at - self._clock.monotonic()
            try:
                if wait > 0:
                    # Backing off: wake-ups do not shorten it; /health's backlog figures still move.
                    await self._clock.sleep(min(wait, self._poll))
                    await self._refresh_stats(changed=False)
                    if self._clock.monotonic() >= self._retry_at:
                        self._wake.set()  # the back-off is over: try at once
                    continue
                await wait_event(self._clock, self._wake, self._poll)
                self._wake.clear()
                claimed = await self.cycle()
                if claimed and self.reachable:
                    self._wake.set()  # changes went: more may wait (the next claim says)
                await self._refresh_stats(changed=claimed > 0)
            except TRANSIENT as exc:
                log.warning("forwarder: database unavailable (%s); retrying", exc)
                await wait_event(self._clock, self._wake, self._poll)

    async def cycle(self) -> int:
        """Forward one batch in one transaction; how many changes it claimed (0: none waits)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await forwarding.claim(conn, self._batch, ROUNDS)
            if not rows:
                return 0
            answer = await self._send(rows)
            await forwarding.finish(conn, answer.done, answer.refused)
        self.cycles += 1
        self.forwarded += len(answer.done)
        self.refused += len(answer.refused)
        for refused in answer.refused:
            log.warning(
                "forwarding: %s refused the change of %s (HTTP %s): %s; kept as a dead letter",
                self._target.shown,
                refused.row.entity_id,
                refused.status,
                refused.reason,
            )
        if answer.retry is not None:
            self._failed(answer.retry)
        else:
            self._succeeded()
        return len(rows)

    async def _send(self, rows: list[Pending]) -> Answer:
        """Send ``rows`` in rounds (the first row of each entity, then the second...), each round
        tenant by tenant; stop at the first request that could not be delivered."""
        queues: dict[tuple[str, str], list[Pending]] = {}
        for row in rows:
            queues.setdefault((row.tenant, row.entity_id), []).append(row)
        total = Answer()
        for depth in range(max(len(queue) for queue in queues.values())):
            by_tenant: dict[str, list[Pending]] = {}
            for (tenant, _), queue in queues.items():
                if depth < len(queue):
                    by_tenant.setdefault(tenant, []).append(queue[depth])
            for tenant, group in by_tenant.items():
                answer = await self._target.send(tenant, group)
                total.done.extend(answer.done)
                total.refused.extend(answer.refused)
                if answer.retry is not None:
                    total.retry = answer.retry
                    return total
        return total

    def _failed(self, reason: str) -> None:
        base, ceiling = self._backoff
        delay = min(ceiling, base * 2 ** min(self._failures, 30))
        self._failures += 1
        self._last_error = reason
        self._retry_at = self._clock.monotonic() + delay
        if self._down_since is None:
            self._down_since = self._clock.now()
            log.warning(
                "forwarding: %s unreachable (%s); changes are kept and sent once it answers",
                self._target.shown,
                reason,
            )
        else:
            log.debug("forwarding: %s still down (%s); next try in %.1f s", self._target.shown, reason, delay)

    def _succeeded(self) -> None:
        if self._down_since is not None:
            seconds = (self._clock.now() - self._down_since).total_seconds()
            log.warning("forwarding: %s reachable again after %.1f s", self._target.shown, seconds)
        self._failures = 0
        self._down_since = None
        self._retry_at = 0.0

    async def _refresh_stats(self, *, changed: bool = True) -> None:
        """Read the backlog figures again after a cycle that moved rows, else at most every second."""
        # A limit on queries spent, not a timer of the protocol: real time, not the injected clock.
        now = asyncio.get_running_loop().time()
        if not changed and now - self._stats_at < _STATS_EVERY:
            return
        self._stats_at = now
        self._backlog, self._oldest = await forwarding.backlog(self._pool)
        self._dead_letters = await forwarding.dead_letter_count(self._pool)
