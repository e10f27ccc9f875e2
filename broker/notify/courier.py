"""Delivering one subscription's rows: claim, send in order, record, one transaction (clauses 5.8, 5.2.12).

The subscription is claimed with ``FOR NO KEY UPDATE SKIP LOCKED`` (another process
delivering it is skipped; NO KEY so that writers inserting outbox rows, which take KEY SHARE
through the foreign key, are never blocked by a slow endpoint), its rows are read in id
order, sent in order, deleted once delivered, and the delivery state is updated, all in one
commit. A crash before the commit sends the same rows again with the same ids.

Rows pending together are merged: runs of rows of distinct entities get one shared id in a
committed transaction ("sealed") before they are sent, so that a backlog goes out in a few
notifications of several entities (clause 5.3.1: ``data`` is an array of entities) rather
than one per row, and a retry sends exactly the same notifications. With no backlog a row
goes alone, as it came, with no extra round trip. Throttling (clause 5.2.12): a subscription
is not notified again before lastNotification + throttling; then whatever is pending goes
out, merged the same way. A failure is retried after a back-off that doubles per
consecutive error, up to a ceiling.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from broker import metrics
from broker.clock import Clock
from broker.logs import REQUEST_ID
from broker.notify.delivery import DeliveryError, Senders, notification
from broker.notify.grouping import notifications_of, seal_runs, whole_batch
from broker.notify.model import Subscription
from broker.notify.redact import redact_uri
from broker.store import delivery, personal
from broker.store.delivery import Attempt, Claim, Pending
from broker.store.pool import Connection

log = logging.getLogger(__name__)


class Step(enum.Enum):
    """What one cycle left behind."""

    DONE = "done"  # nothing left, failed, throttled or claimed elsewhere
    MORE = "more"  # a full batch went out: more rows may be pending
    SEALED = "sealed"  # pending rows were merged into notifications: deliver them now


@dataclass(slots=True)
class _Sent:
    delivered: list[int] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)  # ids of the delivered entities (audit)
    notifications: int = 0
    last_at: datetime | None = None
    last_ok_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait after ``errors`` consecutive failures: ``base * 2**errors`` seconds, at most ``cap``."""

    base: float = 0.5
    cap: float = 60.0

    def after(self, errors: int) -> timedelta:
        return timedelta(seconds=min(self.cap, self.base * 2 ** min(errors, 30)))


class Courier:
    """Delivers the rows of one subscription at a time, a batch per transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        senders: Senders,
        clock: Clock,
        *,
        batch_size: int,
        backoff: Backoff,
        context_url: Callable[[Subscription], str],
        wake_at: Callable[[datetime], None],
    ) -> None:
        self._pool = pool
        self._senders = senders
        self._clock = clock
        self._batch = batch_size
        self._backoff = backoff
        self._context_url = context_url
        self._wake_at = wake_at  # asks the dispatcher to scan again once a wait is over

    async def cycle(self, subscription: Subscription, previous: Step | None) -> Step:
        """Claim ``subscription`` and deliver one batch; ``previous`` is the step before (None: first)."""
        tenant, sid = subscription.tenant, subscription.id
        releasing = previous is not None  # a throttled release goes on past its first batch
        async with self._pool.acquire() as conn, conn.transaction():
            claim = await delivery.claim(conn, tenant, sid, due_only=not releasing, now=self._clock.now())
            if claim is None:
                return Step.DONE
            throttle = _throttle_until(subscription, claim.last_notification)
            if throttle is not None and not releasing and throttle > self._clock.now():
                await delivery.not_before(conn, tenant, sid, throttle)
                self._wake_at(throttle)
                return Step.DONE
            pending = await delivery.pending(conn, tenant, sid, self._batch + 1)
            if previous is not Step.SEALED:
                runs = seal_runs(pending[: self._batch])
                if runs:
                    await delivery.seal(conn, [([r.id for r in run], nid) for nid, run in runs])
                    return Step.SEALED  # committed before anything is sent
            rows, more = await self._whole_notifications(conn, subscription, pending)
            if not rows:
                return Step.DONE
            sent = await self._send_all(subscription, rows)
            await self._record(conn, subscription, sent, claim)
        return Step.MORE if sent.error is None and more else Step.DONE

    async def _whole_notifications(
        self, conn: Connection, subscription: Subscription, pending: list[Pending]
    ) -> tuple[list[Pending], bool]:
        """A batch of the oldest rows without part of a notification, and whether more are pending."""
        rows, more, whole = whole_batch(pending, self._batch)
        if whole is not None:  # one notification larger than a batch
            rows = await delivery.one_notification(conn, subscription.tenant, subscription.id, whole)
        return rows, more

    async def _send_all(self, subscription: Subscription, rows: Sequence[Pending]) -> _Sent:
        """Send the notifications of ``rows`` in order, stopping at the first failure."""
        sent = _Sent()
        context_url = self._context_url(subscription)
        for nid, members in notifications_of(rows):
            at = self._clock.now()
            note = notification(subscription.id, nid, [r.data for r in members], at)
            sent.last_at = at
            sent.notifications += 1
            REQUEST_ID.set(members[0].request_id)  # its X-Request-Id, and on the lines logged for it
            try:
                await self._senders.send(subscription.endpoint, note, context_url, subscription.tenant)
            except DeliveryError as exc:
                metrics.notification_failed(subscription.endpoint.uri)
                sent.error = exc.reason
                log.info("notification to %s failed: %s", redact_uri(subscription.endpoint.uri), exc.detail)
                break
            metrics.notification_sent(subscription.endpoint.uri, [r.queued_at for r in members])
            sent.last_ok_at = at
            sent.delivered.extend(r.id for r in members)
            sent.entities.extend(r.entity_id for r in members if r.entity_id is not None)
        REQUEST_ID.set(None)
        return sent

    async def _record(self, conn: Connection, subscription: Subscription, sent: _Sent, claim: Claim) -> None:
        """Remove the delivered rows; update the delivery state (clause 5.2.12) and the next attempt time."""
        assert sent.last_at is not None
        throttle = _throttle_until(subscription, sent.last_at)
        if sent.error is None:
            retry = throttle or sent.last_at
        else:
            retry = sent.last_at + self._backoff.after(claim.consecutive_errors)
            retry = max(retry, throttle) if throttle is not None else retry
        attempt = Attempt(
            delivered=sent.delivered,
            notifications=sent.notifications,
            last_at=sent.last_at,
            last_ok_at=sent.last_ok_at,
            error=sent.error,
            retry_at=retry,
        )
        await delivery.record(conn, subscription.tenant, subscription.id, attempt)
        # Deliveries of personal-type entities are reads of them too (issue 12 item 4): one INSERT.
        await personal.record_delivery(
            conn, subscription.tenant, subscription.id, sent.entities, sent.last_ok_at or sent.last_at
        )
        if retry > sent.last_at:
            self._wake_at(retry)


def _throttle_until(subscription: Subscription, last: datetime | None) -> datetime | None:
    if not subscription.throttling or last is None:
        return None
    return last + timedelta(seconds=subscription.throttling)
