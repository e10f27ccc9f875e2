"""Delivering CSourceNotifications (clause 5.3.2) from the csource outbox: at least once, in order.

Wakes on ``LISTEN ngsi_csource_outbox`` and polls every ``poll_interval`` on the injected
clock; each due subscription is claimed (SKIP LOCKED: another process has it), its queued
notifications are sent in order with broker.notify's senders (HTTP and MQTT, through the
same address guard as entity notifications), and what was sent is deleted in the same
commit. A failure is retried after the back-off of broker.notify.courier.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from broker.clock import SYSTEM, Clock, wait_event
from broker.federation.service import RegistrationService
from broker.model.entity import format_time
from broker.netguard import GuardedResolver
from broker.notify.courier import Backoff
from broker.notify.delivery import DeliveryError, Senders
from broker.notify.dispatcher import default_context_url
from broker.store import csource_subscriptions as subs
from broker.store.faults import TRANSIENT
from broker.store.listener import Listener
from broker.supervise import Supervisor

log = logging.getLogger(__name__)

# The supervised parts, as /ready names them while they are down.
NOTIFIER = "csource-notifier"
LISTENER = "csource-notifier.listener"
_BATCH = 100


class CSourceNotifier:
    """Sends the csource outbox of every tenant."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        service: RegistrationService,
        guard: GuardedResolver,
        *,
        clock: Clock = SYSTEM,
        http_timeout: float = 5.0,
        poll_interval: float = 1.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._pool = pool
        self._service = service
        self._clock = clock
        self._poll = poll_interval
        self._backoff = backoff or Backoff()
        self._senders = Senders(http_timeout, guard, clock)
        self._wake = asyncio.Event()
        self._listener = Listener(
            pool, subs.CSOURCE_OUTBOX_CHANNEL, self._on_notify, self._on_reconnect, clock=clock
        )
        self._supervisor: Supervisor | None = None
        self.sent = 0  # notifications delivered (on /health)

    async def start(self, supervisor: Supervisor) -> None:
        await self._senders.open()
        await self._listener.start(supervisor, LISTENER)
        supervisor.spawn(NOTIFIER, self.run)
        self._supervisor = supervisor

    async def stop(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.cancel(NOTIFIER)
            self._supervisor = None
        await self._listener.stop()
        await self._senders.close()

    def report(self) -> dict[str, object]:
        return {"sent": self.sent, "relistened": self._listener.reconnects}

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()

    async def _on_reconnect(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver on every wake-up and poll; database outages are waited out here."""
        self._wake.set()
        while True:
            await wait_event(self._clock, self._wake, self._poll)
            self._wake.clear()
            try:
                for tenant, subscription_id in await subs.due(self._pool, self._clock.now(), 1000):
                    await self.deliver(tenant, subscription_id)
            except TRANSIENT as exc:
                log.warning("csource notifier: database unavailable (%s); retrying", exc)

    async def deliver(self, tenant: str, subscription_id: str) -> None:
        """Send one subscription's queued notifications in order, up to the first failure."""
        async with self._pool.acquire() as conn, conn.transaction():
            now = self._clock.now()
            errors = await subs.claim(conn, tenant, subscription_id, now)
            stored = await subs.fetch(conn, tenant, subscription_id)
            if errors is None or stored is None:
                return
            subscription = await self._service.compile_subscription(tenant, stored)
            if subscription is None:
                return  # its @context is unreachable now: the rows wait
            delivered: list[int] = []
            error: str | None = None
            context_url = default_context_url(subscription)
            for note in await subs.pending(conn, tenant, subscription_id, _BATCH):
                body = {
                    "id": note.notification_id,
                    "type": "CSourceNotification",
                    "subscriptionId": subscription_id,
                    "notifiedAt": format_time(self._clock.now()),
                    "data": note.data,
                    "triggerReason": note.trigger_reason,
                }
                try:
                    await self._senders.send(subscription.endpoint, body, context_url, tenant)
                except DeliveryError as exc:
                    error = exc.reason
                    break
                delivered.append(note.id)
            at = self._clock.now()
            retry = at if error is None else at + self._backoff.after(errors)
            await subs.record(conn, tenant, subscription_id, delivered, at=at, error=error, retry_at=retry)
        self.sent += len(delivered)
        if error is not None:
            self._clock.call_later((retry - at).total_seconds() + 0.01, self._wake.set)
        elif len(delivered) == _BATCH:
            self._wake.set()
