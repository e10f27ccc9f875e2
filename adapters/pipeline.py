"""From a received uplink to committed entities: the device side of the one write path.

Transports hand every message to ``Pipeline.submit`` and get a future. Messages queue up while
the previous batch is being written, so under load one transaction carries many messages (a
micro-batch) and at rest a message waits for nobody. For each batch the pipeline parses, looks
the device up, decodes, maps to Smart Data Model entities and validates, message by message;
what fails becomes a dead letter with the reason; the rest is written per tenant by
broker.ingest.Writer in one transaction, which also records each message's redelivery key,
historises and queues notifications. The futures complete only after the commit (or after the
dead letter is stored), which is when MQTT acknowledges and HTTP answers. A database outage
stalls the batch and retries it with back-off: nothing is acknowledged that was not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

import asyncpg

from adapters.device import DeviceConfig, EntityUpdate
from adapters.message import DeviceMessage, Family, Rejected
from broker.errors import NgsiLdError
from broker.ingest import Operation, Result, Writer
from broker.jsonld.context import TermMap
from broker.model import ops
from broker.model.entity import Entity, Instance
from broker.model.ops import Outcome
from broker.model.parse import parse_entity

log = logging.getLogger(__name__)

_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

# Kept with a dead letter whose raw message had personal ids replaced (see wiring._Redactor).
REDACTED_HEADER = "x-hub-redacted"


class Status(StrEnum):
    """What became of one message (a Verdict's status)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    IGNORED = "ignored"


ACCEPTED, DUPLICATE, REJECTED, IGNORED = Status.ACCEPTED, Status.DUPLICATE, Status.REJECTED, Status.IGNORED


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """What became of one message: accepted, duplicate (a redelivery), rejected (dead letter) or ignored."""

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
# Measures to entities: models.normalise bound to the pseudonymiser.
Mapper = Callable[[DeviceConfig, DeviceMessage], list[EntityUpdate]]
# Check an entity against its schema; raises Rejected.
Check = Callable[[EntityUpdate], None]
# Remove personal data from a raw message before it is kept as a dead letter.
Redact = Callable[[DeviceConfig | None, Inbound], bytes]


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
    by_tenant: dict[str, list[tuple[int, _Prepared]]] = field(default_factory=lambda: defaultdict(list))


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
        term_map: Callable[[list[str]], Awaitable[TermMap]],
        *,
        redact: Redact | None = None,
        max_batch: int = 500,
        max_bytes: int = 65536,
    ) -> None:
        self._writer = writer
        self._devices = devices
        self._parse = parse
        self._map = mapper
        self._check = check
        self._dead_letters = dead_letters
        self._term_map = term_map
        self._redact = redact
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # A batch being staged, and the task storing the previous one (for drain).
        self._staging = False
        self._storing: asyncio.Task[None] | None = None
        self.stats = Stats()

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for everything submitted to be stored or dead-lettered (a graceful
        stop: what is done then is acknowledged before the MQTT connection closes)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while (
            self._queue.qsize() or self._staging or (self._storing is not None and not self._storing.done())
        ):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        """Stop taking batches; queued messages stay unacknowledged (MQTT redelivers them)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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

    async def _run(self) -> None:
        """Stage a batch (parse, map, validate: CPU) while the previous one is being written (I/O).

        Writes stay in arrival order: a batch is written only after the previous one is stored.
        """
        try:
            while True:
                jobs = [await self._queue.get()]
                self._staging = True
                while len(jobs) < self._max_batch and not self._queue.empty():
                    jobs.append(self._queue.get_nowait())
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
                staged = await self._stage(jobs)
                if self._storing is not None:
                    await self._storing
                self._storing = asyncio.get_running_loop().create_task(self._until_stored(staged))
                self._staging = False
        finally:
            if self._storing is not None:
                self._storing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._storing

    async def _until_stored(self, staged: _Staged) -> None:
        """Store a staged batch, retrying with back-off while the database is unavailable.

        Each step (a dead letter, a tenant's transaction) is dropped from ``staged`` once done,
        so a retry resumes where the failure was and nothing is stored twice.
        """
        attempt = 0
        while True:
            try:
                await self._store(staged)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, NgsiLdError) as exc:
                # NgsiLdError here is the writer's Conflict after repeated races, or the pool's
                # "database unavailable": both transient for a message that was valid.
                delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                attempt += 1
                self.stats.retries += 1
                log.warning(
                    "device batch of %d not stored (%s); retrying in %.1f s", len(staged.jobs), exc, delay
                )
                await asyncio.sleep(delay)
        for index, job in enumerate(staged.jobs):
            verdict = staged.verdicts[index]
            self._count(verdict)
            if not job.future.done():
                job.future.set_result(verdict)

    def _count(self, verdict: Verdict) -> None:
        if verdict.status == ACCEPTED:
            self.stats.accepted += 1
        elif verdict.status == DUPLICATE:
            self.stats.duplicates += 1
        elif verdict.status == REJECTED:
            self.stats.rejected += 1
        else:
            self.stats.ignored += 1

    async def _stage(self, jobs: list[_Job]) -> _Staged:
        """Turn each message into operations, or into a refusal to keep as a dead letter."""
        staged = _Staged(jobs)
        seen: set[tuple[str, str, str]] = set()
        for index, job in enumerate(jobs):
            try:
                prepared = await self._prepare(job)
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
            staged.by_tenant[prepared.device.tenant].append((index, prepared))
        return staged

    async def _store(self, staged: _Staged) -> None:
        while staged.refusals:
            index, config, reason, device = staged.refusals[0]
            staged.verdicts[index] = await self._reject(staged.jobs[index], config, reason, device)
            staged.refusals.pop(0)
        while staged.by_tenant:
            tenant, items = next(iter(staged.by_tenant.items()))
            staged.verdicts.update(await self._write(tenant, items))
            del staged.by_tenant[tenant]

    async def _prepare(self, job: _Job) -> _Prepared | None:
        """Parse, look up, decode, map and validate one message; raises Rejected."""
        size = len(job.inbound.body)
        if size > self._max_bytes:
            raise Rejected(f"the message has {size} bytes, more than the limit of {self._max_bytes}")
        message = self._parse(job.inbound)
        if message is None:
            return None
        device = self._devices.find(message)
        if device is None:
            raise Rejected(
                f"unknown device {_describe(message)} (not provisioned, no autoprovision)",
                device=message.device_id,
            )
        try:
            updates = self._map(device, message)
            for update in updates:
                self._check(update)
            operations = [await self._operation(update, device, message) for update in updates]
        except Rejected as rejected:
            raise _Refused(rejected.reason, device) from None
        except NgsiLdError as error:
            raise _Refused(f"the mapped entity is not valid NGSI-LD: {error.detail}", device) from None
        return _Prepared(job, message, device, operations)

    async def _operation(
        self, update: EntityUpdate, device: DeviceConfig, message: DeviceMessage
    ) -> Operation:
        tm = await self._term_map(list(update.context))
        body = {k: v for k, v in update.entity.items() if k != "@context"}
        fragment = parse_entity(body, tm)
        once = (device.device_id, message.frame) if message.frame is not None else None
        commands: Callable[[], dict[str, list[Instance]]] | None = None
        if device.commands and fragment.id == device.entity_name:
            # As the IoT Agents do: the device's entity is born with its command attributes, so
            # apps can PATCH them (adapters/commands.py sends a changed one to the device).
            # Parsed only when the entity is created, not for every message.
            stub = {"id": fragment.id, "type": body["type"]}
            stub.update({c.name: {"type": "Property", "value": ""} for c in device.commands})
            commands = partial(_attrs_of, stub, tm)
        return Operation(fragment.id, _append_or_create(fragment, commands), once=once)

    async def _write(self, tenant: str, items: list[tuple[int, _Prepared]]) -> dict[int, Verdict]:
        operations = [op for _, prepared in items for op in prepared.operations]
        results = iter(await self._writer.apply(tenant, operations, may_create_tenant=True))
        verdicts: dict[int, Verdict] = {}
        for index, prepared in items:
            mine = [next(results) for _ in prepared.operations]
            verdicts[index] = await self._verdict(tenant, prepared, mine)
        return verdicts

    async def _verdict(self, tenant: str, prepared: _Prepared, results: list[Result]) -> Verdict:
        device = prepared.device.device_id
        if results and all(r.duplicate for r in results):
            return Verdict(DUPLICATE, tenant=tenant, device=device)
        errors = [r.error for r in results if r.error is not None]
        if errors:
            # Part of the message may be stored (another entity of it); the reason is kept.
            reason = "; ".join(f"{e.title}: {e.detail}" for e in errors)
            return await self._reject(prepared.job, prepared.device, reason, device)
        ids = tuple(dict.fromkeys(r.entity_id for r in results))
        return Verdict(ACCEPTED, tenant=tenant, device=device, entities=ids, message=prepared.message)

    async def _reject(
        self, job: _Job, device: DeviceConfig | None, reason: str, device_id: str | None
    ) -> Verdict:
        inbound = job.inbound
        tenant = device.tenant if device else _tenant_hint(inbound)
        if not inbound.replay:
            raw = self._redact(device, inbound) if self._redact is not None else inbound.body
            headers = dict(inbound.headers)
            if raw != inbound.body:
                # Personal ids were replaced: running this letter again would pseudonymise twice.
                headers[REDACTED_HEADER] = "true"
            await self._dead_letters.add(
                tenant, inbound.family, inbound.origin, headers, device_id, raw, reason
            )
            log.info("device message on %s dead-lettered: %s", inbound.origin, reason)
        return Verdict(REJECTED, reason=reason, tenant=tenant, device=device_id)


def _attrs_of(body: dict[str, Any], tm: TermMap) -> dict[str, list[Instance]]:
    return parse_entity(body, tm).attrs


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
