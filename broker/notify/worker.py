"""The dispatcher: delivers each subscription's outbox rows in order, at least once (clauses 5.8, 5.2.12).

Wakes on ``LISTEN ngsi_outbox`` and polls every second. A subscription with pending
rows and ``retry_at <= now()`` is delivered in its own transaction: the row is
claimed with ``FOR NO KEY UPDATE SKIP LOCKED`` (another process delivering it is
skipped; NO KEY so that writers inserting outbox rows, which take KEY SHARE through
the foreign key, are never blocked by a slow endpoint), its rows are read in id order,
sent in order, deleted once delivered, and the delivery state is updated, all in one
commit. A crash before the commit sends the same rows again with the same ids.

One notification per notification_id: rows sharing an id (one periodic firing, or rows a
throttled subscription merged) go out together, ``data`` in row order, under that id;
every other row alone, under its own. Since rows sharing an id are written by one
transaction, a retry repeats exactly the same notification under the same id: a receiver
that drops duplicates by id never drops a row it has not seen, and never sees one row
under two ids. Two rows of one entity never share a notification.

Throttling (clause 5.2.12): a subscription is not notified again before lastNotification +
throttling; then whatever is pending goes out, merged: runs of rows of distinct entities
get one shared id in a committed transaction ("sealed") before they are sent.

Paused (isActive false) and expired subscriptions are not delivered to: their rows wait,
and go out once the subscription is reactivated or its expiresAt extended; deleting the
subscription deletes them (ON DELETE CASCADE). Periodic subscriptions (timeInterval)
queue one notification of the entities matching them per interval, once across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from broker.errors import NgsiLdError
from broker.jsonld.context import CORE_URL
from broker.model.entity import Entity
from broker.notify.delivery import DeliveryError, MqttSender, notification, send_http
from broker.notify.matcher import Change, OutboxRow, render_for
from broker.notify.model import Subscription
from broker.query.entity_query import EntityQuery, Selector
from broker.store import outbox
from broker.store.outbox import OUTBOX_CHANNEL
from broker.store.pool import Connection
from broker.store.query import find

log = logging.getLogger(__name__)

_NOTIFICATION_NS = uuid.UUID("4f6e7c1e-9a52-4c43-8d4e-6e6f74696679")
_MQTT_IDLE_SECONDS = 300.0
_SCAN_GAP = 0.005  # seconds between two scans for due subscriptions, at least

_DUE = """
SELECT s.tenant, s.id FROM subscriptions s
WHERE s.retry_at <= now() AND s.is_active AND (s.expires_at IS NULL OR s.expires_at > now())
  AND EXISTS (SELECT 1 FROM outbox o WHERE o.tenant = s.tenant AND o.subscription_id = s.id)
ORDER BY s.retry_at
LIMIT $1
"""
# Claims the subscription (no row when claimed elsewhere, not due, paused or expired). Its rows
# are read by the next statement, whose snapshot is taken after the lock: read in the same
# statement, they would be seen as of before the lock was granted, and rows another process
# had delivered and deleted in the meantime would be sent again (issue 11, defect 8).
# The transaction commits without waiting for its WAL flush: should PostgreSQL crash right
# after, the deletion of delivered rows is lost and they are sent again, which at-least-once
# delivery allows; the rows themselves were committed durably by the write that queued them.
_CLAIM = """
SELECT set_config('synchronous_commit', 'off', true) AS unflushed, last_notification, consecutive_errors
FROM subscriptions
WHERE tenant = $1 AND id = $2 AND ($3 OR retry_at <= now())
  AND is_active AND (expires_at IS NULL OR expires_at > now())
FOR NO KEY UPDATE SKIP LOCKED
"""
_PENDING = """
SELECT id, notification_id, entity_id, data FROM outbox
WHERE tenant = $1 AND subscription_id = $2 ORDER BY id LIMIT $3
"""
_ONE_NOTIFICATION = """
SELECT id, notification_id, entity_id, data FROM outbox
WHERE tenant = $1 AND subscription_id = $2 AND notification_id = $3 ORDER BY id
"""
_SEAL = "UPDATE outbox SET notification_id = $2 WHERE id = ANY($1::bigint[])"
# The delivered rows go and the delivery state is updated in one statement ($6: the error, if any).
_RECORD = """
WITH delivered AS (DELETE FROM outbox WHERE id = ANY($3::bigint[]))
UPDATE subscriptions SET
    times_sent = times_sent + $4,
    times_failed = times_failed + CASE WHEN $6::text IS NULL THEN 0 ELSE 1 END,
    last_notification = $5,
    last_success = COALESCE($7, last_success),
    last_failure = CASE WHEN $6::text IS NULL THEN last_failure ELSE $5 END,
    consecutive_errors = CASE WHEN $6::text IS NULL THEN 0 ELSE consecutive_errors + 1 END,
    last_error_reason = COALESCE($6, last_error_reason),
    retry_at = $8
WHERE tenant = $1 AND id = $2
"""
_NOT_BEFORE = "UPDATE subscriptions SET retry_at = $3 WHERE tenant = $1 AND id = $2"
# Seconds until each periodic subscription is due (NULL: never fired; <= 0: due).
_PERIODIC_WAITS = """
SELECT s.tenant, s.id,
       extract(epoch FROM s.last_fired + make_interval(secs => c.secs) - now())::float8 AS wait
FROM unnest($1::text[], $2::text[], $3::float8[]) AS c(tenant, id, secs)
JOIN subscriptions s ON s.tenant = c.tenant AND s.id = c.id
WHERE s.is_active AND (s.expires_at IS NULL OR s.expires_at > now())
"""
# Fires once across processes: the row is locked (SKIP LOCKED: another process is firing or
# delivering it) and still due. The schedule advances by whole intervals so that it does not
# drift by the poll delay, but restarts from now after a pause (no burst of missed firings).
_FIRE = """
UPDATE subscriptions s SET last_fired = CASE
    WHEN c.last_fired IS NULL OR c.last_fired + make_interval(secs => 2 * $3) <= now() THEN now()
    ELSE c.last_fired + make_interval(secs => $3) END
FROM (SELECT tenant, id, last_fired FROM subscriptions
      WHERE tenant = $1 AND id = $2 AND is_active AND (expires_at IS NULL OR expires_at > now())
        AND (last_fired IS NULL OR last_fired + make_interval(secs => $3) <= now())
      FOR NO KEY UPDATE SKIP LOCKED) c
WHERE s.tenant = c.tenant AND s.id = c.id
RETURNING s.last_fired
"""


class SubscriptionSource(Protocol):
    """What the notifier needs of the SubscriptionRegistry."""

    def for_tenant(self, tenant: str) -> list[Subscription]: ...


def default_context_url(subscription: Subscription) -> str:
    """The @context URL of a subscription's notifications: its own when it is one URL, else the core one.

    A subscription created with an inline context (object, or several entries) needs
    a URL that stands for it: the subscription API should host such a context and
    store its URL, or the app pass its own ``context_url`` function to the Notifier.
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


class Row(Protocol):
    """An outbox row as read (an asyncpg Record, or a mapping in tests)."""

    def __getitem__(self, key: str, /) -> Any: ...


R = TypeVar("R", bound=Row)


def derived_id(*parts: str) -> str:
    """A notification id that is a function of ``parts`` (so a retry computes the same one)."""
    return f"urn:ngsi-ld:Notification:{uuid.uuid5(_NOTIFICATION_NS, chr(10).join(parts))}"


def notifications_of(rows: Sequence[R]) -> list[tuple[str, list[R]]]:
    """(id, rows) of each notification, in the order of their first rows.

    Rows sharing a notification_id form one notification; should they hold one entity
    twice, the later ones go in further notifications with ids derived from it.
    """
    by_id: dict[str, list[R]] = {}
    for row in rows:
        by_id.setdefault(row["notification_id"], []).append(row)
    out: list[tuple[str, list[R]]] = []
    for nid, members in by_id.items():
        for part, run in enumerate(distinct_runs(members)):
            out.append((nid if part == 0 else derived_id(nid, str(part)), run))
    return out


def distinct_runs(rows: Sequence[R]) -> list[list[R]]:
    """Consecutive runs of rows with distinct entities: order kept, one entity at most once per run."""
    runs: list[list[R]] = []
    seen: set[str | None] = set()
    for row in rows:
        if not runs or row["entity_id"] in seen:
            runs.append([])
            seen = set()
        runs[-1].append(row)
        seen.add(row["entity_id"])
    return runs


def seal_runs(rows: Sequence[R]) -> list[tuple[str, list[R]]]:
    """How a throttled release merges ``rows``: (shared id, rows) for runs of single rows of distinct
    entities; rows that already share an id (sealed before, or a firing) stay as they are."""
    shared = Counter(row["notification_id"] for row in rows)
    runs: list[list[R]] = [[]]
    for row in rows:
        if shared[row["notification_id"]] > 1:
            runs.append([])
            continue
        if any(row["entity_id"] == other["entity_id"] for other in runs[-1]):
            runs.append([])
        runs[-1].append(row)
    return [(derived_id(*(r["notification_id"] for r in run)), run) for run in runs if len(run) > 1]


class _Step(enum.Enum):
    DONE = "done"  # nothing left, failed, throttled or claimed elsewhere
    MORE = "more"  # a full batch went out: more rows may be pending
    SEALED = "sealed"  # a throttled release merged its rows: deliver them now


@dataclass(slots=True)
class _Sent:
    delivered: list[int]
    notifications: int = 0
    last_at: datetime | None = None
    last_ok_at: datetime | None = None
    error: str | None = None


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
    """Delivers the outbox of every subscription whose registry entry this process holds."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: SubscriptionSource,
        *,
        http_timeout: float = 5.0,
        per_endpoint: int = 2,
        batch_size: int = 100,
        max_concurrent: int = 4,
        poll_interval: float = 1.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        periodic_max_entities: int = 10_000,
        context_url: Callable[[Subscription], str] = default_context_url,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._http_timeout = http_timeout
        self._batch = batch_size
        self._poll = poll_interval
        self._backoff = (backoff_base, backoff_max)
        self._periodic_max = periodic_max_entities
        self._context_url = context_url
        self._endpoints = _EndpointSlots(per_endpoint)
        # Each delivery holds a pool connection: this bounds how many the notifier takes.
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_cycles = 10  # batches one task delivers before leaving the slot to others
        self._wake = asyncio.Event()
        self._inflight: set[tuple[str, str]] = set()
        # Due while in flight: rows may have come after that task's last read, so scan again after it.
        self._missed: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: PoolConnectionProxy[Any] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._mqtt = MqttSender(http_timeout)
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._http_timeout))
        await self._listen()
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="notifier")

    async def stop(self, grace: float = 2.0) -> None:
        """Stop dispatching; deliveries still running after ``grace`` seconds are rolled back (sent again)."""
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._unlisten()
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._mqtt.close()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(OUTBOX_CHANNEL, self._on_notify)

    async def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            if not listener.is_closed():
                await listener.remove_listener(OUTBOX_CHANNEL, self._on_notify)
        await self._pool.release(listener)

    # ------------------------------------------------------------------------------------ scheduling

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_periodic = next_sweep = loop.time()
        last_scan = -math.inf
        self._wake.set()  # rows left by a previous run go out at once
        while not self._stopping:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel arriving with a wake.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()
            self._wake.clear()
            # Under load NOTIFYs come by the thousand: one scan per _SCAN_GAP serves them all.
            await asyncio.sleep(max(0.0, last_scan + _SCAN_GAP - loop.time()))
            last_scan = loop.time()
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._unlisten()
                    await self._listen()  # NOTIFYs missed meanwhile are covered by this poll
                await self._dispatch_due()
                if loop.time() >= next_periodic:
                    wait = await self._fire_periodic()
                    next_periodic = loop.time() + min(self._poll, wait)
                    if wait < self._poll:  # on time, rather than up to a poll late
                        loop.call_later(wait + 0.01, self._wake.set)
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + 60
                    await self._mqtt.close_idle(_MQTT_IDLE_SECONDS)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("notifier: database unavailable (%s); retrying", exc)
                await asyncio.sleep(self._poll)
            except Exception:  # a bug must not stop every delivery of this process
                log.exception("notifier: scan failed")
                await asyncio.sleep(self._poll)

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
            if not finished.cancelled() and finished.exception() is not None:
                log.error("notifier: delivery to %s failed", key, exc_info=finished.exception())

        task.add_done_callback(done)

    async def _dispatch_due(self) -> None:
        moment = datetime.now(UTC)
        known: dict[str, dict[str, Subscription]] = {}
        for row in await self._pool.fetch(_DUE, 1000):
            key = (row["tenant"], row["id"])
            if key in self._inflight:
                self._missed.add(key)
                continue
            if row["tenant"] not in known:
                known[row["tenant"]] = {s.id: s for s in self._registry.for_tenant(row["tenant"])}
            subscription = known[row["tenant"]].get(row["id"])
            # Unknown here (not loaded yet, or cannot be compiled): its rows wait.
            if subscription is None or not subscription.active or subscription.expired(moment):
                continue
            self._spawn(key, self._deliver(subscription))

    async def _fire_periodic(self) -> float:
        """Fire the periodic subscriptions that are due; seconds until the next one is (inf: none)."""
        rows = await self._pool.fetch("SELECT DISTINCT tenant FROM subscriptions WHERE is_active")
        tenants = [row["tenant"] for row in rows]
        moment = datetime.now(UTC)
        candidates = [
            s
            for tenant in tenants
            for s in self._registry.for_tenant(tenant)
            if s.time_interval
            and s.active
            and not s.expired(moment)
            and ("periodic", s.tenant + "\x1f" + s.id) not in self._inflight
        ]
        due, wait = await periodic_due(self._pool, candidates)
        for subscription in due:
            key = ("periodic", subscription.tenant + "\x1f" + subscription.id)
            self._spawn(key, fire_periodic(self._pool, subscription, self._periodic_max, self._batch))
        return wait

    # ------------------------------------------------------------------------------------ delivery

    async def _deliver(self, subscription: Subscription) -> None:
        """Deliver what is pending, a batch per transaction, until done or ``_max_cycles`` batches."""
        step: _Step | None = None  # a throttled release goes on past its first batch
        for _ in range(self._max_cycles):
            async with self._endpoints.slot(subscription.endpoint.uri), self._slots:
                step = await self._cycle(subscription, step)
            if step is _Step.DONE:
                return
        self._wake.set()  # more left: come back through the scan, after the others

    async def _cycle(self, subscription: Subscription, previous: _Step | None) -> _Step:
        tenant, sid = subscription.tenant, subscription.id
        releasing = previous is not None
        async with self._pool.acquire() as conn, conn.transaction():
            claim = await conn.fetchrow(_CLAIM, tenant, sid, releasing)
            if claim is None:
                return _Step.DONE
            found = await conn.fetch(_PENDING, tenant, sid, self._batch + 1)
            throttle = self._throttle_until(subscription, claim["last_notification"])
            if throttle is not None and not releasing and throttle > datetime.now(UTC):
                await conn.execute(_NOT_BEFORE, tenant, sid, throttle)
                self._wake_at(throttle)
                return _Step.DONE
            pending = list(found)
            if subscription.throttling and previous is not _Step.SEALED:
                runs = seal_runs(pending[: self._batch])
                if runs:
                    await conn.executemany(_SEAL, [([r["id"] for r in run], nid) for nid, run in runs])
                    return _Step.SEALED  # committed before anything is sent
            rows, more = await self._whole_notifications(conn, subscription, pending)
            if not rows:
                return _Step.DONE
            sent = await self._send_all(subscription, rows)
            await self._record(conn, subscription, sent, claim["consecutive_errors"])
        return _Step.MORE if sent.error is None and more else _Step.DONE

    async def _whole_notifications(
        self, conn: Connection, subscription: Subscription, pending: list[asyncpg.Record]
    ) -> tuple[list[asyncpg.Record], bool]:
        """A batch of the oldest rows without part of a notification, and whether more are pending.

        ``pending`` holds up to one row more than a batch: when that row's notification
        has rows in the batch, it goes next time with what follows it.
        """
        if len(pending) <= self._batch:
            return pending, False
        cut = pending.pop()["notification_id"]
        first = next((i for i, row in enumerate(pending) if row["notification_id"] == cut), None)
        if first is None:
            return pending, True
        if first > 0:
            return pending[:first], True
        rows = await conn.fetch(_ONE_NOTIFICATION, subscription.tenant, subscription.id, cut)
        return rows, True  # one notification larger than a batch

    def _throttle_until(self, subscription: Subscription, last: datetime | None) -> datetime | None:
        if not subscription.throttling or last is None:
            return None
        return last + timedelta(seconds=subscription.throttling)

    async def _send_all(self, subscription: Subscription, rows: Sequence[asyncpg.Record]) -> _Sent:
        """Send the notifications of ``rows`` in order, stopping at the first failure."""
        sent = _Sent(delivered=[])
        for nid, members in notifications_of(rows):
            at = datetime.now(UTC)
            note = notification(subscription.id, nid, [r["data"] for r in members], at)
            sent.last_at = at
            sent.notifications += 1
            try:
                await self._send(subscription, note)
            except DeliveryError as exc:
                sent.error = exc.reason
                log.info("notification to %s failed: %s", subscription.endpoint.uri, exc.reason)
                break
            sent.last_ok_at = at
            sent.delivered.extend(r["id"] for r in members)
        return sent

    async def _send(self, subscription: Subscription, note: dict[str, Any]) -> None:
        endpoint = subscription.endpoint
        scheme = urlsplit(endpoint.uri).scheme.lower()
        context_url = self._context_url(subscription)
        if scheme in ("http", "https"):
            assert self._session is not None, "Notifier.start() was not awaited"
            await send_http(self._session, endpoint, note, context_url, subscription.tenant)
        elif scheme in ("mqtt", "mqtts"):
            await self._mqtt.send(endpoint, note, context_url, subscription.tenant)
        else:
            raise DeliveryError(f"unsupported endpoint scheme {scheme!r}")

    async def _record(self, conn: Connection, subscription: Subscription, sent: _Sent, errors: int) -> None:
        """Remove the delivered rows; update the delivery state (clause 5.2.12) and the next attempt time."""
        assert sent.last_at is not None
        throttle = self._throttle_until(subscription, sent.last_at)
        if sent.error is None:
            retry = throttle or sent.last_at
        else:
            base, cap = self._backoff
            retry = sent.last_at + timedelta(seconds=min(cap, base * 2 ** min(errors, 30)))
            retry = max(retry, throttle) if throttle is not None else retry
        await conn.execute(
            _RECORD,
            subscription.tenant,
            subscription.id,
            sent.delivered,
            sent.notifications,
            sent.last_at,
            sent.error,
            sent.last_ok_at,
            retry,
        )
        if retry > sent.last_at:
            self._wake_at(retry)

    def _wake_at(self, moment: datetime) -> None:
        """Scan again when a back-off or throttling wait ends, rather than up to a poll later."""
        # A little late rather than early: the scan compares with the database's clock.
        delay = max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.01
        asyncio.get_running_loop().call_later(delay, self._wake.set)


# ------------------------------------------------------------------------------------------ periodic


def postgres_pattern(pattern: re.Pattern[str]) -> str:
    """A selector's compiled idPattern for PostgreSQL's ~.

    The subscription parser compiles the portable subset of broker.query.qregex, whose
    Python form differs from the PostgreSQL one only by \\Z for $ (and the case flag).
    """
    out: list[str] = []
    text, index = pattern.pattern, 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text):
            pair = text[index : index + 2]
            out.append("$" if pair == "\\Z" else pair)
            index += 2
        else:
            out.append(text[index])
            index += 1
    source = "".join(out)
    if pattern.flags & re.IGNORECASE and not source.startswith("(?i)"):
        source = "(?i)" + source
    return source


def entity_query(subscription: Subscription) -> EntityQuery:
    """The query of the entities a periodic subscription reports: entities, q, geoQ, scopeQ."""
    selectors = tuple(
        Selector(
            ids=tuple(sorted(s.ids)) if s.ids is not None else None,
            id_pattern=postgres_pattern(s.id_pattern) if s.id_pattern is not None else None,
            types=s.types,
        )
        for s in subscription.entities
    )
    return EntityQuery(
        selectors=selectors,
        q=subscription.q,
        geo=subscription.geo,
        geoproperty=subscription.geoproperty,
        scope=subscription.scope,
    )


async def periodic_due(
    pool: asyncpg.Pool, candidates: Sequence[Subscription]
) -> tuple[list[Subscription], float]:
    """The periodic subscriptions among ``candidates`` whose interval has elapsed (a hint: firing
    re-checks), and the seconds until the next of the others is due (inf when none)."""
    if not candidates:
        return [], math.inf
    by_key = {(s.tenant, s.id): s for s in candidates}
    rows = await pool.fetch(
        _PERIODIC_WAITS,
        [s.tenant for s in candidates],
        [s.id for s in candidates],
        [float(s.time_interval or 0) for s in candidates],
    )
    due = [by_key[(r["tenant"], r["id"])] for r in rows if r["wait"] is None or r["wait"] <= 0]
    return due, min((r["wait"] for r in rows if r["wait"] is not None and r["wait"] > 0), default=math.inf)


async def _current_entities(
    pool: asyncpg.Pool, subscription: Subscription, limit: int
) -> tuple[list[Entity], str | None]:
    """The entities matching ``subscription`` now (at most ``limit``), or why they cannot be queried."""
    query = entity_query(subscription)
    found: list[Entity] = []
    try:
        while len(found) < limit:
            page, more, _ = await find(
                pool,
                subscription.tenant,
                query,
                subscription.tm,
                limit=min(1000, limit - len(found)),
                offset=len(found),
                count=False,
            )
            found += page
            if not more:
                return found, None
    except NgsiLdError as exc:
        return [], exc.detail
    log.warning("periodic subscription %s: only the first %d entities are notified", subscription.id, limit)
    return found, None


async def fire_periodic(pool: asyncpg.Pool, subscription: Subscription, limit: int, chunk: int) -> None:
    """Queue one outbox row per matching entity, once per timeInterval across all processes."""
    entities, error = await _current_entities(pool, subscription, limit)
    async with pool.acquire() as conn, conn.transaction():
        fired = await conn.fetchval(_FIRE, subscription.tenant, subscription.id, subscription.time_interval)
        if fired is None:
            return  # fired by another process, or being delivered: a later poll sees it
        if error is not None:
            log.warning("periodic subscription %s cannot query its entities: %s", subscription.id, error)
            return
        # One notification per firing (per ``chunk`` entities): its rows share one id.
        ids = [f"urn:ngsi-ld:Notification:{uuid.uuid4()}" for _ in range(0, len(entities), chunk)]
        rows = [
            OutboxRow(
                subscription.id,
                ids[index // chunk],
                entity.id,
                render_for(subscription, Change(before=None, after=entity)),
            )
            for index, entity in enumerate(entities)
        ]
        if rows:
            await outbox.insert(conn, subscription.tenant, rows)
