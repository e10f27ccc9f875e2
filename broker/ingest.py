"""The one write path: every change, from the API or a device adapter, goes through ``Writer.apply``.

A call takes a tenant and an ordered list of operations on entities. In one
transaction it locks the entities concerned, applies the operations in memory
in order (so the same id repeated in a batch behaves as if sent one by one),
and stores the result with one statement per table. An operation that fails
is reported in its own result and changes nothing; the others still apply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import asyncpg

from broker import metrics
from broker.errors import BadRequestData, Conflict, NgsiLdError
from broker.logs import REQUEST_ID
from broker.model import entity as model
from broker.model.entity import Entity
from broker.model.ops import Outcome, check_instances
from broker.notify.matcher import Change, match
from broker.notify.model import Subscription
from broker.store import entities as entity_rows
from broker.store import frames, history, outbox
from broker.store.faults import is_transient
from broker.store.pool import Connection
from broker.store.tenants import Tenants

log = logging.getLogger(__name__)

_ATTEMPTS = 5
# Transactions of one tenant in flight at once per process: two let Python prepare one while
# PostgreSQL commits the other.
_FLUSHERS = 2
# Operations one group-commit transaction gathers from waiting calls (a bigger call goes alone).
_GROUP_OPERATIONS = 2000

# Database errors about the values given (SQLSTATE classes 22 and 54): the request's fault.
_REFUSED_DATA = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)

Apply = Callable[[Entity | None, str], Outcome]


@dataclass(frozen=True, slots=True)
class Operation:
    """One change to one entity: ``apply(current, now)`` returns the outcome or raises NgsiLdError."""

    entity_id: str
    apply: Apply
    # A redelivery key (device, frame) for device messages: when a committed write already carried
    # it, the operation is skipped, so a message delivered twice changes nothing the second time.
    once: tuple[str, str] | None = None
    # Made by the device layer (a measurement, a command's status) rather than an API request:
    # adapter mode forwards these (NGSI_FORWARD_SCOPE=devices).
    from_device: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one operation: an outcome, the error that stopped it, or a skipped redelivery."""

    entity_id: str
    before: Entity | None
    outcome: Outcome | None
    error: NgsiLdError | None
    duplicate: bool = False
    from_device: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


# Work done in the write transaction for the results of a call (a failure rolls the write back).
ChangeHook = Callable[[Connection, str, list[Result]], Awaitable[None]]


@dataclass(slots=True)
class _Call:
    """One caller's operations, waiting for the transaction that carries them."""

    operations: Sequence[Operation]
    future: asyncio.Future[list[Result]]
    # The request each entity's change comes from (broker.logs): its notifications carry it (X-Request-Id).
    origins: Mapping[str, str]


def _fail(call: _Call, error: Exception) -> None:
    """End ``call`` with ``error``; data PostgreSQL refuses (out of range, too long to index) is a 400."""
    if isinstance(error, _REFUSED_DATA):
        error = BadRequestData(f"the database cannot store this data: {error}")
    if not call.future.done():
        call.future.set_exception(error)


class _Raced(Exception):
    """Another transaction created an entity this one was about to create."""


class Writer:
    """Applies operations to the store, transactionally, retrying lost races."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tenants: Tenants,
        subscriptions: Callable[[str], list[Subscription]] | None = None,
        *,
        record_history: bool = True,
        max_instances: int = model.DEFAULT_MAX_INSTANCES,
    ) -> None:
        self._pool = pool
        self._tenants = tenants
        # The subscriptions of a tenant, to match each change inside its own transaction.
        self._subscriptions = subscriptions
        # Off only to measure what history costs the write path (NGSI_HISTORY=false).
        self._record_history = record_history
        # No operation may leave an attribute with more instances (NGSI_MAX_INSTANCES).
        self._max_instances = max_instances
        self._hooks: list[ChangeHook] = []
        # Group commit: calls waiting per (tenant, may_create_tenant), and the keys being written.
        self._waiting: dict[tuple[str, bool], list[_Call]] = {}
        self._flushing: dict[tuple[str, bool], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Transactions committed and calls served, for /health and the tests of group commit.
        self.transactions = 0
        self.calls = 0

    def add_hook(self, hook: ChangeHook) -> None:
        """Run ``hook`` in every write transaction after the entities are stored (e.g. device commands)."""
        self._hooks.append(hook)

    async def apply(
        self,
        tenant: str,
        operations: Sequence[Operation],
        *,
        may_create_tenant: bool,
        origins: Mapping[str, str] | None = None,
    ) -> list[Result]:
        """Apply ``operations`` in order in one transaction; one Result per operation.

        Calls for the same tenant that arrive while its transactions run (at most _FLUSHERS)
        are applied together in the next one, in arrival order (group commit): under load, 64
        concurrent PATCHes cost a few commits rather than 64, and at rest a call waits for nobody. Each
        operation still succeeds or fails on its own; a database error about one call's data fails
        that call alone (see _commit), the database being away fails them all.

        ``origins``: the request id each entity's change comes from (default: the current request's,
        broker.logs), carried into the notifications the changes cause.
        """
        key = (tenant, may_create_tenant)
        if origins is None:
            request_id = REQUEST_ID.get()
            origins = {op.entity_id: request_id for op in operations} if request_id else {}
        call = _Call(operations, asyncio.get_running_loop().create_future(), origins)
        self._waiting.setdefault(key, []).append(call)
        if self._flushing.get(key, 0) < _FLUSHERS:
            self._flushing[key] = self._flushing.get(key, 0) + 1
            task = asyncio.get_running_loop().create_task(self._flush(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await call.future

    async def _flush(self, key: tuple[str, bool]) -> None:
        """Run the waiting calls of ``key`` in transactions until none wait (one of _FLUSHERS)."""
        try:
            while calls := self._take(key):
                await self._commit(key, calls)
        finally:
            self._flushing[key] -= 1
            if not self._flushing[key]:
                del self._flushing[key]

    async def _commit(self, key: tuple[str, bool], calls: list[_Call]) -> None:
        """Apply ``calls`` in one transaction; when the database refuses it, each call alone.

        A database error other than "the database is away" belongs to the data of one call (an
        id too long for the index, say): re-run one by one, the calls it does not belong to
        succeed and the one it does fails alone.
        """
        tenant, may_create_tenant = key
        origins = {entity_id: rid for call in calls for entity_id, rid in call.origins.items()}
        try:
            results = await self._apply_now(
                tenant, [op for call in calls for op in call.operations], may_create_tenant, origins
            )
        except Exception as exc:
            metrics.write_transaction("failed")
            if len(calls) == 1 or is_transient(exc):
                for call in calls:
                    _fail(call, exc)
                return
            log.info(
                "a transaction of %d calls to tenant %r failed (%s: %s); running them one by one",
                len(calls),
                tenant,
                type(exc).__name__,
                exc,
            )
            for call in calls:
                await self._commit(key, [call])
            return
        self.transactions += 1
        self.calls += len(calls)
        metrics.write_transaction("committed")
        start = 0
        for call in calls:
            end = start + len(call.operations)
            if not call.future.done():
                call.future.set_result(results[start:end])
            start = end

    def _take(self, key: tuple[str, bool]) -> list[_Call]:
        """The calls waiting for ``key``, up to about _GROUP_OPERATIONS operations."""
        waiting = self._waiting.get(key)
        if not waiting:
            self._waiting.pop(key, None)
            return []
        taken: list[_Call] = []
        size = 0
        while waiting and (not taken or size + len(waiting[0].operations) <= _GROUP_OPERATIONS):
            call = waiting.pop(0)
            taken.append(call)
            size += len(call.operations)
        return taken

    async def _apply_now(
        self,
        tenant: str,
        operations: Sequence[Operation],
        may_create_tenant: bool,
        origins: Mapping[str, str] | None = None,
    ) -> list[Result]:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._attempt(tenant, operations, may_create_tenant, origins or {})
            except (_Raced, asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
                log.info("write to tenant %r retried (attempt %d): %s", tenant, attempt, type(exc).__name__)
        raise Conflict("the entities were changed concurrently too often; retry the request")

    async def _attempt(
        self,
        tenant: str,
        operations: Sequence[Operation],
        may_create_tenant: bool,
        origins: Mapping[str, str],
    ) -> list[Result]:
        async with self._tenants.writing(self._pool, tenant) as scope:
            conn = scope.conn
            if not may_create_tenant:
                await scope.require()
            fresh = await frames.claim(conn, tenant, {op.once for op in operations if op.once})
            ids = list({op.entity_id for op in operations})
            stored = await entity_rows.fetch_for_update(conn, tenant, ids)
            state: dict[str, Entity | None] = dict(stored)
            touched: set[str] = set()
            results: list[Result] = []
            now = model.now()
            for op in operations:
                before = state.get(op.entity_id)
                if op.once is not None and op.once not in fresh:
                    results.append(
                        Result(op.entity_id, before, None, None, duplicate=True, from_device=op.from_device)
                    )
                    continue
                try:
                    outcome = op.apply(before, now)
                    if outcome.entity is not None:
                        check_instances(outcome.entity, self._max_instances)
                except NgsiLdError as error:
                    results.append(Result(op.entity_id, before, None, error, from_device=op.from_device))
                    continue
                state[op.entity_id] = outcome.entity
                touched.add(op.entity_id)
                results.append(Result(op.entity_id, before, outcome, None, from_device=op.from_device))
            upserts = [e for i in sorted(touched) if (e := state.get(i)) is not None]
            if may_create_tenant and upserts:
                # Only a write that stores something creates the tenant.
                await scope.ensure()
            deletes = [i for i in touched if i in stored and state.get(i) is None]
            expected_new = {i for i in touched if i not in stored}
            if await entity_rows.write(conn, tenant, upserts, deletes, expected_new, stored):
                raise _Raced
            await self._queue_notifications(conn, tenant, results, origins)
            for hook in self._hooks:
                await hook(conn, tenant, results)
            if self._record_history:
                changed = [(r.before, r.outcome.entity) for r in results if r.outcome is not None]
                await history.record(conn, tenant, changed, now)
            return results

    async def _queue_notifications(
        self, conn: Connection, tenant: str, results: list[Result], origins: Mapping[str, str]
    ) -> None:
        """Outbox rows for the subscriptions these changes concern, in this transaction, each with
        the id of the request that changed its entity (``origins``)."""
        subscriptions = self._subscriptions(tenant) if self._subscriptions is not None else []
        if not subscriptions:
            return
        changes = [Change(r.before, r.outcome.entity) for r in results if r.outcome is not None]
        rows = match(subscriptions, changes)
        if origins:
            rows = [replace(row, request_id=origins.get(row.entity_id)) for row in rows]
        if rows:
            await outbox.insert(conn, tenant, rows)
