"""The dispatcher: which subscriptions to deliver now, at least once and in order (clauses 5.8, 5.2.12).

Wakes on ``LISTEN ngsi_outbox`` (broker.store.listener: listened again after a lost
connection) and polls every ``poll_interval``. Each active subscription with pending rows
whose next attempt is due is handed to a Courier task (one per subscription at a time, at
most ``per_endpoint`` per endpoint URI and ``max_concurrent`` in all, since each holds a
pool connection). Paused (isActive false) and expired subscriptions are not delivered to:
their rows wait, and go out once the subscription is reactivated or its expiresAt extended;
deleting the subscription deletes them (ON DELETE CASCADE). Periodic subscriptions
(timeInterval) fire from here too (broker.notify.periodic).

Every wait (poll, back-off, throttling, periodic schedule) is on the injected Clock; the
loop and the LISTEN run under the process's Supervisor and show on ``/ready`` when down.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver

from broker.clock import SYSTEM, Clock, wait_event
from broker.jsonld.context import CORE_URL
from broker.netguard import AddressPolicy, GuardedResolver
from broker.notify.courier import Backoff, Courier, Step
from broker.notify.delivery import Senders
from broker.notify.endpoints import notify_policy
from broker.notify.model import Subscription
from broker.notify.periodic import fire_periodic, periodic_due
from broker.store import delivery
from broker.store.faults import TRANSIENT
from broker.store.listener import Listener
from broker.store.outbox import OUTBOX_CHANNEL
from broker.supervise import Supervisor

log = logging.getLogger(__name__)

# The supervised parts, as /ready names them while they are down.
DISPATCHER = "notifier"
LISTENER = "notifier.listener"

_MQTT_IDLE_SECONDS = 300.0
# Real time between two scans, at least: under load NOTIFYs come by the thousand and one scan
# serves them all. A limit on CPU spent, not a timer of the protocol: not on the injected clock.
_SCAN_GAP = 0.005
# Scans wake a little after a wait ends, never before: timestamps are rounded to microseconds.
_LATE = 0.01


class SubscriptionSource(Protocol):
    """What the notifier needs of the SubscriptionRegistry."""

    def for_tenant(self, tenant: str) -> list[Subscription]: ...


def default_context_url(subscription: Subscription) -> str:
    """The @context URL of a subscription's notifications: its own when it is one URL, else the core one.

    A subscription created with an inline context (object, or several entries) needs
    a URL that stands for it: the subscription API hosts such a context and stores its URL,
    or the app passes its own ``context_url`` function to the Notifier.
    """
    context = subscription.context
    if isinstance(context, list) and len(context) == 1:
        context = context[0]
    if isinstance(context, str):
        return context
    if context is not None:
        log.warning(
            "subscription %s has an inline @context; notifications link the core one", subscription.id
        )
    return CORE_URL


class _EndpointSlots:
    """At most ``size`` deliveries at once per endpoint URI; idle endpoints' semaphores are dropped."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._users: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        semaphore, users = self._users.get(key) or (asyncio.Semaphore(self._size), 0)
        self._users[key] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._users[key]
            if users == 1:
                del self._users[key]
            else:
                self._users[key] = (semaphore, users - 1)


class Notifier:
    """Delivers the outbox of every subscription whose registry entry this process holds.

    Endpoints are reached under ``policy`` (default: public addresses only), their names resolved
    through ``dns`` (default: the system's resolver, in a thread) and checked at every connection.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: SubscriptionSource,
        *,
        clock: Clock = SYSTEM,
        http_timeout: float = 5.0,
        per_endpoint: int = 2,
        batch_size: int = 100,
        max_concurrent: int = 4,
        poll_interval: float = 1.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        periodic_max_entities: int = 10_000,
        context_url: Callable[[Subscription], str] = default_context_url,
        policy: AddressPolicy | None = None,
        dns: AbstractResolver | None = None,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._clock = clock
        self._batch = batch_size
        self._poll = poll_interval
        self._periodic_max = periodic_max_entities
        # The endpoints' names resolve through the guard: checked at each connection.
        self._dns = dns or aiohttp.ThreadedResolver()
        self.guard = GuardedResolver(self._dns, policy or notify_policy())
        self._senders = Senders(http_timeout, self.guard, clock)
        self._courier = Courier(
            pool,
            self._senders,
            clock,
            batch_size=batch_size,
            backoff=Backoff(backoff_base, backoff_max),
            context_url=context_url,
            wake_at=self._wake_at,
        )
        self._endpoints = _EndpointSlots(per_endpoint)
        # Each delivery holds a pool connection: this bounds how many the notifier takes.
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_cycles = 10  # batches one task delivers before leaving the slot to others
        self._wake = asyncio.Event()
        self._inflight: set[tuple[str, str]] = set()
        # Due while in flight: rows may have come after that task's last read, so scan again after it.
        self._missed: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener = Listener(pool, OUTBOX_CHANNEL, self._on_notify, self._on_reconnect, clock=clock)
        self._supervisor: Supervisor | None = None
        self.scans = 0  # completed scans for due work (on /health; tests wait for one)

    # ------------------------------------------------------------------------------------ life cycle

    async def start(self, supervisor: Supervisor) -> None:
        """Listen, then run the dispatch loop under ``supervisor`` (restarted should it fail)."""
        await self.guard.policy.learn_listeners(self._dns)
        await self._senders.open()
        await self._listener.start(supervisor, LISTENER)
        supervisor.spawn(DISPATCHER, self.run)
        self._supervisor = supervisor

    async def stop(self, grace: float = 2.0) -> None:
        """Stop dispatching; deliveries still running after ``grace`` seconds are rolled back (sent again)."""
        if self._supervisor is not None:
            await self._supervisor.cancel(DISPATCHER)
            self._supervisor = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._listener.stop()
        await self._senders.close()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    def report(self) -> dict[str, object]:
        """Counters for ``/health``: scans made, deliveries in flight, LISTEN reconnections."""
        return {"scans": self.scans, "inFlight": len(self._inflight), "relistened": self._listener.reconnects}

    @property
    def idle(self) -> bool:
        """No delivery or firing in flight."""
        return not self._inflight

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()

    async def _on_reconnect(self) -> None:
        self._wake.set()  # NOTIFYs missed while the LISTEN was lost: a scan finds their rows

    # ------------------------------------------------------------------------------------ scheduling

    async def run(self) -> None:
        """The dispatch loop: scan on every wake-up and poll; database outages are waited out here,
        anything else is a fault the supervisor logs and restarts the loop after."""
        loop = asyncio.get_running_loop()
        next_periodic = next_sweep = self._clock.monotonic()
        last_scan = -math.inf
        self._wake.set()  # rows left by a previous run go out at once
        while True:
            await wait_event(self._clock, self._wake, self._poll)
            self._wake.clear()
            await asyncio.sleep(max(0.0, last_scan + _SCAN_GAP - loop.time()))
            last_scan = loop.time()
            try:
                await self._dispatch_due()
                if self._clock.monotonic() >= next_periodic:
                    wait = await self._fire_periodic()
                    next_periodic = self._clock.monotonic() + min(self._poll, wait)
                    if wait < self._poll:  # on time, rather than up to a poll late
                        self._clock.call_later(wait + _LATE, self._wake.set)
                if self._clock.monotonic() >= next_sweep:
                    next_sweep = self._clock.monotonic() + 60
                    await self._senders.mqtt.close_idle(_MQTT_IDLE_SECONDS)
            except TRANSIENT as exc:
                log.warning("notifier: database unavailable (%s); retrying", exc)
                await wait_event(self._clock, self._wake, self._poll)  # a LISTEN again wakes it
            self.scans += 1

    def _spawn(self, key: tuple[str, str], work: Coroutine[Any, Any, None]) -> None:
        self._inflight.add(key)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._inflight.discard(key)
            if key in self._missed:
                self._missed.discard(key)
                self._wake.set()
            error = None if finished.cancelled() else finished.exception()
            if isinstance(error, TRANSIENT):
                # Rolled back, its rows stay due: sent again once the database is back.
                log.warning("notifier: delivery to %s interrupted, database unavailable (%s)", key, error)
            elif error is not None:
                log.error("notifier: delivery to %s failed", key, exc_info=error)

        task.add_done_callback(done)

    async def _dispatch_due(self) -> None:
        moment = self._clock.now()
        known: dict[str, dict[str, Subscription]] = {}
        for key in await delivery.due(self._pool, moment, 1000):
            if key in self._inflight:
                self._missed.add(key)
                continue
            tenant, sid = key
            if tenant not in known:
                known[tenant] = {s.id: s for s in self._registry.for_tenant(tenant)}
            subscription = known[tenant].get(sid)
            # Unknown here (not loaded yet, or cannot be compiled): its rows wait.
            if subscription is None or not subscription.active or subscription.expired(moment):
                continue
            self._spawn(key, self._deliver(subscription))

    async def _fire_periodic(self) -> float:
        """Fire the periodic subscriptions that are due; seconds until the next one is (inf: none)."""
        moment = self._clock.now()
        candidates = [
            s
            for tenant in await delivery.active_tenants(self._pool)
            for s in self._registry.for_tenant(tenant)
            if s.time_interval
            and s.active
            and not s.expired(moment)
            and _periodic_key(s) not in self._inflight
        ]
        due, wait = await periodic_due(self._pool, candidates, moment)
        for subscription in due:
            work = fire_periodic(self._pool, subscription, self._periodic_max, self._batch, moment)
            self._spawn(_periodic_key(subscription), work)
        return wait

    async def _deliver(self, subscription: Subscription) -> None:
        """Deliver what is pending, a batch per transaction, until done or ``_max_cycles`` batches."""
        step: Step | None = None
        for _ in range(self._max_cycles):
            async with self._endpoints.slot(subscription.endpoint.uri), self._slots:
                step = await self._courier.cycle(subscription, step)
            if step is Step.DONE:
                return
        self._wake.set()  # more left: come back through the scan, after the others

    def _wake_at(self, moment: datetime) -> None:
        """Scan again when a back-off or throttling wait ends, rather than up to a poll later."""
        delay = max(0.0, (moment - self._clock.now()).total_seconds()) + _LATE
        self._clock.call_later(delay, self._wake.set)


def _periodic_key(subscription: Subscription) -> tuple[str, str]:
    return ("periodic", subscription.tenant + "\x1f" + subscription.id)
