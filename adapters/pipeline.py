"""From a received uplink to committed entities: the device side of the one write path.

Transports hand every message to ``Pipeline.submit`` and get a future. Messages queue up while
the previous batch is being written, so under load one transaction carries many messages (a
micro-batch) and at rest a message waits for nobody. For each batch the pipeline parses, looks
the device up, decodes, maps to Smart Data Model entities and validates, message by message
(the models give the expanded entities the write path stores: nothing is parsed a second time);
what fails becomes a dead letter with the reason; the rest is written per tenant by
broker.ingest.Writer in one transaction, which also records each message's redelivery key,
historises and queues notifications. The futures complete only after the commit (or after the
dead letter is stored), which is when MQTT acknowledges and HTTP answers. A database outage
stalls the batch and retries it with back-off: nothing is acknowledged that was not stored. Only
that is retried (broker.store.faults): a message whose data the database refuses, or that meets
any unexpected error, is its own dead letter, and the messages after it are stored (issue 11).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Protocol

import orjson

from adapters.device import JSON as JSON_CODEC
from adapters.device import Command, DeviceConfig, EntityUpdate
from adapters.message import DeviceMessage, Family, Rejected, for_log
from broker import metrics
from broker.clock import SYSTEM, Clock
from broker.edge import json_too_deep, nests_deeper
from broker.errors import Conflict, NgsiLdError
from broker.ingest import Operation, Result, Writer
from broker.jsonld.context import TermMap
from broker.model import ops
from broker.model.entity import Entity, Instance
from broker.model.ops import Outcome
from broker.model.parse import check_name
from broker.store.faults import is_transient
from broker.supervise import Supervisor
from broker.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

# The storing loop's name under the process Supervisor (and on /ready while it is down).
PART = "device-pipeline"

# Kept with a dead letter whose raw message had personal ids replaced (see wiring._Redactor).
REDACTED_HEADER = "x-hub-redacted"


class Status(StrEnum):
    """What became of one message (a Verdict's status)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    IGNORED = "ignored"
    # An IoT Agent message on MQTT for an apikey no tenant of this hub has: another IoT Agent
    # (or hub) on the same MQTT broker owns it. Acknowledged and counted, not dead-lettered.
    FOREIGN = "foreign"


ACCEPTED, DUPLICATE, REJECTED, IGNORED = Status.ACCEPTED, Status.DUPLICATE, Status.REJECTED, Status.IGNORED
FOREIGN = Status.FOREIGN


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as a transport received it: enough to parse it again when a dead letter is replayed."""

    family: Family
    origin: str  # MQTT topic, or HTTP path with its query string
    body: bytes
    received_at: datetime
    headers: Mapping[str, str] = field(default_factory=dict)
    # A dead letter run again: refused again, it is not stored a second time (the letter records it).
    replay: bool = False
    # Taken from an MQTT subscription (where other consumers' messages arrive too), not sent to us.
    mqtt: bool = False
    # The HTTP request that brought it (X-Request-Id): the notifications it causes carry it.
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What became of one message: accepted, duplicate (a redelivery), rejected (dead letter),
    ignored, or foreign (another IoT Agent's)."""

    status: Status
    reason: str | None = None
    tenant: str | None = None
    device: str | None = None
    entities: tuple[str, ...] = ()
    # Sigfox BIDIR and the like: the device this reply is for, once the message is stored.
    message: DeviceMessage | None = None


class Devices(Protocol):
    """The provisioning registry, as the pipeline looks devices up (adapters.provisioning.Registry)."""

    def find(self, message: DeviceMessage) -> DeviceConfig | None: ...


class DeadLetterSink(Protocol):
    async def add(
        self,
        tenant: str,
        family: str,
        origin: str,
        headers: Mapping[str, str],
        device: str | None,
        raw: bytes,
        reason: str,
    ) -> int: ...


# Parse an inbound message into a DeviceMessage (None: a message to ignore, e.g. a join event).
Parser = Callable[[Inbound], DeviceMessage | None]
# Measures to entities: models.normalise_message bound to the pseudonymiser and the term maps
# (awaited: a generic device's own @context may have to be read from the database).
Mapper = Callable[[DeviceConfig, DeviceMessage], Awaitable[list[EntityUpdate]]]
# Check an entity against its schema; raises Rejected.
Check = Callable[[EntityUpdate], None]
# Remove personal data from a raw message before it is kept as a dead letter.
Redact = Callable[[DeviceConfig | None, Inbound], bytes]
# Whether some tenant of this hub provisions an IoT Agent apikey (Registry.owns).
Owns = Callable[[str], bool]


@dataclass(slots=True)
class _Job:
    inbound: Inbound
    future: asyncio.Future[Verdict]


@dataclass(slots=True)
class _Prepared:
    """A message turned into operations, waiting for its tenant's transaction."""

    job: _Job
    message: DeviceMessage
    device: DeviceConfig
    operations: list[Operation]


@dataclass(slots=True)
class _Staged:
    """A batch between staging and storing; steps leave it as they are done."""

    jobs: list[_Job]
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    # (index, device if known, reason, device id) of each message to keep as a dead letter
    refusals: list[tuple[int, DeviceConfig | None, str, str | None]] = field(default_factory=list)
    # One transaction each, in order: a tenant's messages, or one message split out of them.
    writes: list[tuple[str, list[tuple[int, _Prepared]]]] = field(default_factory=list)


@dataclass(slots=True)
class Stats:
    """Counters an operator reads at /health or in the logs."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    batches: int = 0
    retries: int = 0
    largest_batch: int = 0
    # Messages that met an unexpected error (a bug, logged with its traceback) and were dead-lettered.
    faults: int = 0
    # IoT Agent messages on MQTT whose apikey no tenant here has (Status.FOREIGN).
    foreign: int = 0


class Pipeline:
    """Micro-batches device messages into the broker's write path."""

    def __init__(
        self,
        writer: Writer,
        devices: Devices,
        parse: Parser,
        mapper: Mapper,
        check: Check,
        dead_letters: DeadLetterSink,
        *,
        redact: Redact | None = None,
        max_batch: int = 500,
        max_bytes: int = 65536,
        max_depth: int = 64,
        owns: Owns | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._writer = writer
        self._devices = devices
        self._parse = parse
        self._map = mapper
        self._check = check
        self._dead_letters = dead_letters
        self._redact = redact
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._max_depth = max_depth  # NGSI_MAX_JSON_DEPTH, as at the HTTP edge
        self._owns = owns  # None: every unknown device is dead-lettered
        self._clock = clock
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supervisor: Supervisor | None = None
        # Jobs taken from the queue and not yet handed to a storing task: a restarted loop takes
        # them first, so a fault in the loop loses no message.
        self._carry: list[_Job] = []
        # A batch being staged, and the task storing the previous one (for drain).
        self._staging = False
        self._storing: asyncio.Task[None] | None = None
        self.stats = Stats()

    @property
    def backlog(self) -> int:
        return self._queue.qsize() + len(self._carry)

    def start(self, supervisor: Supervisor | None = None) -> None:
        """Run the batch loop: under ``supervisor`` (restarted after a fault, shown on /ready) if given."""
        if supervisor is None:
            self._task = asyncio.get_running_loop().create_task(self.run())
            return
        self._supervisor = supervisor
        supervisor.spawn(PART, self.run)

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for everything submitted to be stored or dead-lettered (a graceful
        stop: what is done then is acknowledged before the MQTT connection closes)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self.backlog or self._staging or (self._storing is not None and not self._storing.done()):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        """Stop taking batches; queued messages stay unacknowledged (MQTT redelivers them)."""
        if self._supervisor is not None:
            await self._supervisor.cancel(PART)
            self._supervisor = None
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._storing)
        for job in self._carry:
            job.future.cancel()
        self._carry = []
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()

    def submit(self, inbound: Inbound) -> asyncio.Future[Verdict]:
        """Queue ``inbound``; the future completes once it is committed or dead-lettered."""
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self.stats.received += 1
        self._queue.put_nowait(_Job(inbound, future))
        return future

    async def replay(self, inbound: Inbound) -> Verdict:
        """Run a stored message through again (dead-letter replay) and wait for its verdict."""
        return await self.submit(inbound)

    # --- the batch loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Stage a batch (parse, map, validate: CPU) while the previous one is being written (I/O).

        Writes stay in arrival order: a batch is written only after the previous one is stored.
        A message's own faults end as its dead letter; a fault of the loop itself ends this call
        (the supervisor logs it and runs the loop again), its batch kept for the next run.
        """
        try:
            while True:
                jobs = self._carry or [await self._queue.get()]
                self._carry = jobs
                self._staging = True
                while len(jobs) < self._max_batch and not self._queue.empty():
                    jobs.append(self._queue.get_nowait())
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
                staged = await self._stage(jobs)
                if self._storing is not None:
                    # Taken first: a storing task that failed fails this run once, not every restart.
                    storing, self._storing = self._storing, None
                    await storing
                self._storing = asyncio.get_running_loop().create_task(self._until_stored(staged))
                self._carry = []
                self._staging = False
        finally:
            self._staging = False

    async def _until_stored(self, staged: _Staged) -> None:
        """Store a staged batch, retrying with back-off while the database is unavailable.

        Each step (a dead letter, a transaction) is dropped from ``staged`` once done, so a retry
        resumes where the failure was and nothing is stored twice. Only the database being away
        is retried; anything else is the fault of one message, which goes to dead letters.
        """
        attempt = 0
        failure: Exception | None = None
        while True:
            try:
                if failure is None:
                    await self._store(staged)
                else:
                    await self._give_up(staged, failure)
                break
            except Exception as exc:
                if failure is None and not _retryable(exc):
                    # _store gives each message's fault to that message: this is a bug of ours.
                    log.exception("device batch of %d could not be stored", len(staged.jobs))
                    failure = exc
                    continue
                if not _retryable(exc):
                    raise
                delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                attempt += 1
                self.stats.retries += 1
                log.warning(
                    "device batch of %d not stored (%s); retrying in %.1f s", len(staged.jobs), exc, delay
                )
                await self._clock.sleep(delay)
        for index, job in enumerate(staged.jobs):
            verdict = staged.verdicts[index]
            self._count(verdict)
            metrics.device_message(job.inbound.family, "mqtt" if job.inbound.mqtt else "http", verdict.status)
            if not job.future.done():
                job.future.set_result(verdict)

    async def _give_up(self, staged: _Staged, error: Exception) -> None:
        """Dead-letter every message of ``staged`` still without a verdict, with ``error`` as reason."""
        reason = _fault_reason("storing the message", error)
        for index, job in enumerate(staged.jobs):
            if index not in staged.verdicts:
                self.stats.faults += 1
                staged.verdicts[index] = await self._reject(job, None, reason, None)

    def _count(self, verdict: Verdict) -> None:
        if verdict.status == ACCEPTED:
            self.stats.accepted += 1
        elif verdict.status == DUPLICATE:
            self.stats.duplicates += 1
        elif verdict.status == REJECTED:
            self.stats.rejected += 1
        elif verdict.status == FOREIGN:
            self.stats.foreign += 1
        else:
            self.stats.ignored += 1

    async def _stage(self, jobs: list[_Job]) -> _Staged:
        """Turn each message into operations, or into a refusal to keep as a dead letter."""
        staged = _Staged(jobs)
        seen: set[tuple[str, str, str]] = set()
        by_tenant: dict[str, list[tuple[int, _Prepared]]] = defaultdict(list)
        for index, job in enumerate(jobs):
            try:
                prepared = await self._prepare_until_read(job)
            except _Foreign as foreign:
                staged.verdicts[index] = Verdict(FOREIGN, reason=foreign.reason, device=foreign.device)
                continue
            except _Refused as refused:
                staged.refusals.append((index, refused.config, refused.reason, refused.device))
                continue
            except Rejected as rejected:
                staged.refusals.append((index, None, rejected.reason, rejected.device))
                continue
            if prepared is None:
                staged.verdicts[index] = Verdict(IGNORED)
                continue
            key = _redelivery_key(prepared)
            if key is not None:
                if (prepared.device.tenant, *key) in seen:
                    staged.verdicts[index] = Verdict(DUPLICATE, tenant=prepared.device.tenant, device=key[0])
                    continue
                seen.add((prepared.device.tenant, *key))
            by_tenant[prepared.device.tenant].append((index, prepared))
        staged.writes = list(by_tenant.items())
        return staged

    async def _prepare_until_read(self, job: _Job) -> _Prepared | None:
        """``_prepare``, waiting out a database outage (@contexts are read from the database);
        an unexpected error is this message's fault: Rejected with it as the reason."""
        attempt = 0
        while True:
            try:
                return await self._prepare(job)
            except Rejected:
                raise
            except Exception as exc:
                if not _retryable(exc):
                    log.exception(
                        "device message on %s could not be read",
                        for_log(job.inbound.origin, job.inbound.origin),
                    )
                    self.stats.faults += 1
                    raise Rejected(_fault_reason("reading the message", exc)) from None
                delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                attempt += 1
                log.warning("device message not read (%s); retrying in %.1f s", exc, delay)
                await self._clock.sleep(delay)

    async def _store(self, staged: _Staged) -> None:
        while staged.refusals or staged.writes:
            if staged.refusals:
                index, config, reason, device = staged.refusals[0]
                staged.verdicts[index] = await self._reject(staged.jobs[index], config, reason, device)
                staged.refusals.pop(0)
                continue
            tenant, items = staged.writes[0]
            try:
                verdicts = await self._write(tenant, items, staged.refusals)
            except Exception as exc:
                if _retryable(exc):
                    raise
                staged.writes.pop(0)
                self._refused_by_database(tenant, items, exc, staged)
                continue
            staged.verdicts.update(verdicts)
            staged.writes.pop(0)

    def _refused_by_database(
        self, tenant: str, items: list[tuple[int, _Prepared]], error: Exception, staged: _Staged
    ) -> None:
        """The database refused a transaction for its data (not for being away): run its messages
        one by one, so the message the data belongs to is dead-lettered and the others are stored."""
        if len(items) > 1:
            log.info(
                "a device transaction of %d messages for tenant %r was refused (%s); writing them one by one",
                len(items),
                tenant,
                error,
            )
            staged.writes[0:0] = [(tenant, [item]) for item in items]
            return
        ((index, prepared),) = items
        if isinstance(error, NgsiLdError):
            reason = f"{error.title}: {error.detail}"
        else:
            log.error("device message of %s not stored", prepared.device.device_id, exc_info=error)
            self.stats.faults += 1
            reason = _fault_reason("storing the message", error)
        staged.refusals.append((index, prepared.device, reason, prepared.device.device_id))

    async def _prepare(self, job: _Job) -> _Prepared | None:
        """Parse, look up, decode, map and validate one message; raises Rejected."""
        size = len(job.inbound.body)
        if size > self._max_bytes:
            raise Rejected(f"the message has {size} bytes, more than the limit of {self._max_bytes}")
        if json_too_deep(job.inbound.body, self._max_depth):
            raise Rejected(
                f"the message nests arrays and objects deeper than {self._max_depth} levels"
                " (NGSI_MAX_JSON_DEPTH)"
            )
        message = self._parse(job.inbound)
        if message is None:
            return None
        device = self._devices.find(message)
        if device is None:
            self._check_foreign(job.inbound, message)
            raise Rejected(
                f"unknown device {_describe(message)} (not provisioned, no autoprovision)",
                device=message.device_id,
            )
        try:
            updates = await self._map(device, message)
            if not message.measures and device.codec == JSON_CODEC:
                self._check_depth(updates)
            for update in updates:
                self._check(update)
            operations = [_operation(update, device, message) for update in updates]
        except Rejected as rejected:
            raise _Refused(rejected.reason, device) from None
        except NgsiLdError as error:
            raise _Refused(f"the mapped entity is not valid NGSI-LD: {error.detail}", device) from None
        return _Prepared(job, message, device, operations)

    def _check_foreign(self, inbound: Inbound, message: DeviceMessage) -> None:
        """Raise _Foreign for an MQTT message of an apikey no tenant here has: the MQTT broker
        gave us a copy of what another IoT Agent serves (HTTP: someone sent it to us, a refusal)."""
        apikey = message.apikey
        if inbound.mqtt and apikey is not None and self._owns is not None and not self._owns(apikey):
            raise _Foreign("no tenant of this hub has the apikey", device=message.device_id)

    def _check_depth(self, updates: list[EntityUpdate]) -> None:
        """Measures the JSON codec decoded from the payload (base64 or hex in the message, so
        its text was not seen at the edge) are held to NGSI_MAX_JSON_DEPTH too."""
        # An entity's attributes nest two levels more than the measures they are made of
        # (attribute -> instances -> instance -> value).
        if any(nests_deeper(update.entity.attrs, self._max_depth + 2) for update in updates):
            raise Rejected(
                f"the decoded payload nests arrays and objects deeper than {self._max_depth} levels"
                " (NGSI_MAX_JSON_DEPTH)"
            )

    async def _write(
        self,
        tenant: str,
        items: list[tuple[int, _Prepared]],
        refusals: list[tuple[int, DeviceConfig | None, str, str | None]],
    ) -> dict[int, Verdict]:
        """One transaction for ``items``; a message an operation of which failed joins ``refusals``."""
        operations = [op for _, prepared in items for op in prepared.operations]
        origins = {
            op.entity_id: rid
            for _, prepared in items
            if (rid := prepared.job.inbound.request_id)
            for op in prepared.operations
        }
        results = iter(await self._writer.apply(tenant, operations, may_create_tenant=True, origins=origins))
        verdicts: dict[int, Verdict] = {}
        for index, prepared in items:
            mine = [next(results) for _ in prepared.operations]
            verdict = _verdict(tenant, prepared, mine)
            if isinstance(verdict, str):
                # Part of the message may be stored (another entity of it); the reason is kept.
                refusals.append((index, prepared.device, verdict, prepared.device.device_id))
            else:
                verdicts[index] = verdict
        return verdicts

    async def _reject(
        self, job: _Job, device: DeviceConfig | None, reason: str, device_id: str | None
    ) -> Verdict:
        """Keep ``job``'s message as a dead letter with ``reason`` (the database being away raises)."""
        inbound = job.inbound
        tenant = device.tenant if device else _tenant_hint(inbound)
        if not inbound.replay:
            raw, headers = self._letter_body(device, inbound), dict(inbound.headers)
            if raw != inbound.body:
                # Personal ids were replaced: running this letter again would pseudonymise twice.
                headers[REDACTED_HEADER] = "true"
            try:
                await self._dead_letters.add(
                    tenant, inbound.family, inbound.origin, headers, device_id, raw, reason
                )
            except Exception as exc:
                if _retryable(exc):
                    raise
                # Kept unacknowledged it would come back forever: the log is its last record.
                log.exception(
                    "device message on %s refused (%s); its dead letter failed",
                    for_log(inbound.origin, inbound.origin),
                    for_log(reason, inbound.origin),
                )
                self.stats.faults += 1
            else:
                metrics.dead_letter(inbound.family, reason_kind(reason, device))
                origin = inbound.origin
                log.info(
                    "device message on %s dead-lettered: %s", for_log(origin, origin), for_log(reason, origin)
                )
        return Verdict(REJECTED, reason=reason, tenant=tenant, device=device_id)

    def _letter_body(self, device: DeviceConfig | None, inbound: Inbound) -> bytes:
        if self._redact is None:
            return inbound.body
        try:
            return self._redact(device, inbound)
        except Exception:
            origin = for_log(inbound.origin, inbound.origin)
            log.exception("device message on %s could not be redacted for its dead letter", origin)
            return orjson.dumps({"withheld": "could not be redacted", "bytes": len(inbound.body)})


def _retryable(error: BaseException) -> bool:
    """The database is away (or a write lost its races): the same message succeeds later."""
    return is_transient(error) or isinstance(error, Conflict)


def reason_kind(reason: str, device: DeviceConfig | None) -> str:
    """A dead letter's reason as one of a few kinds (a metric's label: never the text itself)."""
    if reason.startswith("unexpected error"):
        return "fault"
    if reason.startswith("unknown device"):
        return "unknown_device"
    if "NGSI_MAX_JSON_DEPTH" in reason:
        return "too_deep"
    if reason.startswith("the message has ") and "more than the limit" in reason:
        return "too_large"
    if reason.startswith("the mapped entity is not valid NGSI-LD"):
        return "invalid_entity"
    # Not matched to a device: the message could not be read; matched: its data was refused
    # (mapping, the type's schema, the database).
    return "unreadable" if device is None else "refused"


def _fault_reason(doing: str, error: BaseException) -> str:
    return f"unexpected error {doing} ({type(error).__name__}: {error}); see the broker log"


def _verdict(tenant: str, prepared: _Prepared, results: list[Result]) -> Verdict | str:
    """The message's verdict from its operations' results, or the reason to dead-letter it."""
    device = prepared.device.device_id
    if results and all(r.duplicate for r in results):
        return Verdict(DUPLICATE, tenant=tenant, device=device)
    errors = [r.error for r in results if r.error is not None]
    if errors:
        return "; ".join(f"{e.title}: {e.detail}" for e in errors)
    ids = tuple(dict.fromkeys(r.entity_id for r in results))
    return Verdict(ACCEPTED, tenant=tenant, device=device, entities=ids, message=prepared.message)


def _operation(update: EntityUpdate, device: DeviceConfig, message: DeviceMessage) -> Operation:
    """Append ``update`` to its entity (creating it) under the message's redelivery key."""
    fragment = update.entity
    once = (device.device_id, message.frame) if message.frame is not None else None
    commands: Callable[[], dict[str, list[Instance]]] | None = None
    if device.commands and fragment.id == device.entity_name:
        # As the IoT Agents do: the device's entity is born with its command attributes, so
        # apps can PATCH them (adapters/commands.py sends a changed one to the device).
        # Made only when the entity is created, not for every message.
        commands = partial(_command_attrs, device.commands, update.terms)
    return Operation(fragment.id, _append_or_create(fragment, commands), once=once, from_device=True)


def _command_attrs(commands: Sequence[Command], tm: TermMap) -> dict[str, list[Instance]]:
    """The command attributes a device's entity is created with, empty until an app sets one."""
    return {
        tm.expand(check_name(c.name, "attribute name")): [{"type": "Property", "value": ""}] for c in commands
    }


class _Foreign(Rejected):
    """An MQTT message for an apikey this hub does not have: not ours, so no dead letter."""


class _Refused(Rejected):
    """A message of a known device refused: its dead letter belongs to the device's tenant."""

    def __init__(self, reason: str, config: DeviceConfig) -> None:
        super().__init__(reason, device=config.device_id)
        self.config = config


def _append_or_create(
    fragment: Entity, commands: Callable[[], dict[str, list[Instance]]] | None
) -> Callable[[Entity | None, str], Outcome]:
    """Append the measured attributes; the first message creates the entity with its command attributes."""

    def apply(current: Entity | None, now: str) -> Outcome:
        if current is None:
            if commands is not None:
                born = fragment.copy()
                for name, instances in commands().items():
                    born.attrs.setdefault(name, instances)
                return ops.create(None, born, now)
            return ops.create(None, fragment, now)
        return ops.append(current, fragment, now, no_overwrite=False)

    return apply


def _redelivery_key(prepared: _Prepared) -> tuple[str, str] | None:
    frame = prepared.message.frame
    return (prepared.device.device_id, frame) if frame is not None else None


def _describe(message: DeviceMessage) -> str:
    parts = [f"{message.family} device {message.device_id!r}"]
    if message.apikey:
        parts.append(f"apikey {message.apikey!r}")
    if message.dev_eui:
        parts.append(f"DevEUI {message.dev_eui}")
    return ", ".join(parts)


def _tenant_hint(inbound: Inbound) -> str:
    """The tenant a message names before its device is known ('' when it names none)."""
    headers = {k.lower(): v for k, v in inbound.headers.items()}
    return headers.get("ngsild-tenant") or headers.get("fiware-service") or ""


def now_utc() -> datetime:
    return datetime.now(UTC)
