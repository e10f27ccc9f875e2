"""Commands down to devices: a PATCH of a provisioned command attribute reaches the device.

As in the FIWARE IoT Agents, a device provisioned with ``commands`` gets them as attributes of its
entity; an app changes one (PATCH /entities/{id}/attrs/{command}) and the device receives it:
- IoT Agent JSON / UltraLight devices on their MQTT cmd topic (/json/<apikey>/<id>/cmd with
  {"<command>": value}, /<apikey>/<id>/cmd with ``<id>@<command>|<value>``); their reply on
  .../cmdexe completes the command;
- LoRaWAN devices as a downlink through The Things Stack or ChirpStack (the value is the payload
  in hex, on the command's port);
- Sigfox devices in the reply to their next BIDIR callback (8 bytes, hex).
The change hook queues the command in the write transaction (table device_commands), so a
command the API accepted survives a crash. A dispatcher claims queued commands (FOR UPDATE SKIP
LOCKED, so several processes share the work), sends them, and records the progress in the entity
as IoT Agents do: <command>_status (PENDING, SENT, OK, ERROR) and <command>_info (the reply).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import orjson

from adapters import iotagent, lorawan
from adapters.device import Command, CommandState, DeviceConfig
from adapters.message import CHIRPSTACK, IOTA_JSON, IOTA_UL, SIGFOX, TTS
from adapters.store import commands as store
from adapters.store.commands import CHANNEL, NewCommand, Queued
from broker.clock import SYSTEM, Clock, wait_event
from broker.errors import NgsiLdError
from broker.ingest import Operation, Result, Writer
from broker.model import ops
from broker.model.entity import Entity
from broker.model.ops import Outcome
from broker.store.faults import TRANSIENT
from broker.store.listener import Listener
from broker.store.pool import Connection
from broker.supervise import Supervisor

log = logging.getLogger(__name__)

# Names under the process Supervisor (and on /ready while down): the dispatch loop and its LISTEN.
PART = "device-commands"
LISTEN_PART = "device-commands-listen"
PENDING, SENT, OK, ERROR = CommandState.PENDING, CommandState.SENT, CommandState.OK, CommandState.ERROR
_STATUS_IRI = "https://uri.etsi.org/ngsi-ld/default-context/{name}_status"
_INFO_IRI = "https://uri.etsi.org/ngsi-ld/default-context/{name}_info"


class Devices(Protocol):
    def by_entity(self, tenant: str, entity_id: str) -> DeviceConfig | None: ...


# Publishes (topic, payload) on the MQTT broker the devices use.
Publish = Callable[[str, bytes], None]


def local_name(iri: str) -> str:
    """The term an attribute IRI ends in; commands are provisioned by that short name."""
    return iri.rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def command_hook(devices: Devices) -> Callable[[Connection, str, list[Result]], Any]:
    """The write-transaction hook: queue each command attribute an update changed, and complete
    the sent command a device's reply (<command>_status "OK") answers."""

    async def hook(conn: Connection, tenant: str, results: list[Result]) -> None:
        queued: list[NewCommand] = []
        answered: list[tuple[str, str, str]] = []
        for result in results:
            outcome = result.outcome
            if outcome is None or outcome.created or outcome.entity is None:
                continue
            device = devices.by_entity(tenant, result.entity_id)
            if device is None or not device.commands:
                continue
            names = {c.name for c in device.commands}
            for iri in outcome.updated:
                name = local_name(iri)
                value = _command_value(outcome.entity, iri)
                if name in names:
                    queued.append(
                        NewCommand(device.device_id, result.entity_id, name, orjson.dumps(value).decode())
                    )
                elif name.endswith("_status") and name[: -len("_status")] in names and value == OK:
                    command = name[: -len("_status")]
                    info = _command_value(outcome.entity, iri[: -len("_status")] + "_info")
                    answered.append((device.device_id, command, "" if info is None else str(info)))
        if queued:
            await store.queue(conn, tenant, queued)
        for device_id, command, info in answered:
            await store.answer(conn, tenant, device_id, command, info)

    return hook


def _command_value(entity: Entity, iri: str) -> Any:
    instances = entity.attrs.get(iri) or [{}]
    instance = instances[0]
    return instance.get("value")


def mqtt_command(device: DeviceConfig, command: Command, value: Any) -> tuple[str, bytes] | None:
    """Topic and payload of an IoT Agent command, or a LoRaWAN downlink; None for Sigfox (BIDIR).

    LoRaWAN downlinks need the network's application id: the model parameter application_id
    (and tts_tenant for The Things Stack), as the network shows it on the device's uplinks.
    Raises ValueError for a value or address the device cannot be sent.
    """
    protocol = device.protocol
    if protocol in (IOTA_JSON, IOTA_UL, None):
        family = protocol or IOTA_JSON
        topic = iotagent.cmd_topic(family, device.apikey or "", device.device_id)
        return topic, iotagent.cmd_payload(family, device.device_id, command.name, value)
    if protocol in (TTS, CHIRPSTACK):
        application = device.model_params.get("application_id")
        if not application:
            raise ValueError("provision model_params.application_id to send LoRaWAN downlinks")
        port = command.port or 1
        if protocol == TTS:
            tts_tenant = device.model_params.get("tts_tenant")
            return lorawan.tts_downlink(
                application, tts_tenant, device.device_id, port, _downlink_bytes(value)
            )
        return lorawan.chirpstack_downlink(application, device.dev_eui or "", port, _downlink_bytes(value))
    return None


def _downlink_bytes(value: Any) -> bytes:
    """A LoRaWAN/Sigfox command value is its payload in hex."""
    if not isinstance(value, str):
        raise ValueError("a LoRaWAN or Sigfox command value is the downlink payload in hex")
    return bytes.fromhex(value)


class Dispatcher:
    """Sends queued commands and records their progress in the devices' entities."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        writer: Writer,
        devices: Devices,
        publish: Publish | None,
        *,
        clock: Clock = SYSTEM,
    ) -> None:
        self._pool = pool
        self._writer = writer
        self._devices = devices
        self._publish = publish
        self._clock = clock
        self._wake = asyncio.Event()
        self._listener = Listener(pool, CHANNEL, self.wake, self._catch_up, clock=clock)
        self._supervisor: Supervisor | None = None

    def wake(self, *_: Any) -> None:
        self._wake.set()

    async def _catch_up(self) -> None:
        self.wake()  # NOTIFYs missed while the LISTEN was lost: the next dispatch finds their rows

    async def start(self, supervisor: Supervisor) -> None:
        """Listen for queued commands, then dispatch under ``supervisor`` (restarted after a fault)."""
        await self._listener.start(supervisor, LISTEN_PART)
        supervisor.spawn(PART, self.run)
        self._supervisor = supervisor

    async def stop(self) -> None:
        if self._supervisor is not None:
            await self._supervisor.cancel(PART)
            self._supervisor = None
        await self._listener.stop()

    async def run(self) -> None:
        """Dispatch on every NOTIFY and at least every few seconds (a NOTIFY may be missed); the
        database being away is waited out here, anything else is a fault for the supervisor."""
        while True:
            try:
                await self.dispatch()
            except TRANSIENT as exc:
                log.warning("command dispatch failed (%s); retrying", exc)
            await wait_event(self._clock, self._wake, 5.0)
            self._wake.clear()

    async def dispatch(self) -> int:
        """Send what is queued for devices reachable over MQTT; return how many were sent."""
        progress: dict[str, list[Progress]] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            for queued in await store.claim_pending(conn):
                status, info = self._send(queued)
                if status is None:
                    continue
                await store.mark(conn, queued.id, status, info)
                progress.setdefault(queued.tenant, []).append(
                    Progress(queued.entity_id, queued.command, status, info)
                )
        # After the commit, one write per tenant: the claim holds no connection while they run.
        for tenant, items in progress.items():
            try:
                await record_status(self._writer, tenant, items)
            except NgsiLdError as error:
                log.warning("command status of tenant %r not shown on its entities: %s", tenant, error.detail)
        return sum(p.status == SENT for items in progress.values() for p in items)

    def _send(self, queued: Queued) -> tuple[CommandState | None, str | None]:
        device = self._devices.by_entity(queued.tenant, queued.entity_id)
        if device is None:
            return ERROR, "the device is no longer provisioned"
        command = next((c for c in device.commands if c.name == queued.command), None)
        if command is None:
            return ERROR, f"the device has no command {queued.command!r}"
        if device.protocol == SIGFOX:
            return None, None  # waits for the device's next BIDIR callback
        try:
            message = mqtt_command(device, command, queued.value)
        except ValueError as exc:
            return ERROR, str(exc)
        if message is None or self._publish is None:
            return ERROR, "no MQTT connection to send the command on"
        self._publish(*message)
        return SENT, None


@dataclass(frozen=True, slots=True)
class Progress:
    """A command's new state, to show on its device's entity."""

    entity_id: str
    command: str
    status: CommandState
    info: str | None = None


async def record_status(writer: Writer, tenant: str, items: list[Progress]) -> None:
    """Write <command>_status (and <command>_info) on the devices' entities, as the IoT Agents do."""
    operations = []
    for item in items:
        attrs: dict[str, list[dict[str, Any]]] = {
            _STATUS_IRI.format(name=item.command): [{"type": "Property", "value": item.status}]
        }
        if item.info is not None:
            attrs[_INFO_IRI.format(name=item.command)] = [{"type": "Property", "value": item.info}]
        operations.append(
            Operation(
                item.entity_id, _append(Entity(id=item.entity_id, types=[], attrs=attrs)), from_device=True
            )
        )
    await writer.apply(tenant, operations, may_create_tenant=False)


def _append(fragment: Entity) -> Callable[[Entity | None, str], Outcome]:
    def apply(current: Entity | None, now: str) -> Outcome:
        return ops.append(current, fragment, now, no_overwrite=False)

    return apply


async def take_sigfox_downlink(
    pool: asyncpg.Pool, writer: Writer, tenant: str, device_id: str
) -> bytes | None:
    """The oldest queued command of a Sigfox device, claimed for a BIDIR reply (8 bytes)."""
    async with pool.acquire() as conn, conn.transaction():
        queued = await store.claim_for_device(conn, tenant, device_id)
        if queued is None:
            return None
        try:
            payload = _downlink_bytes(queued.value).ljust(8, b"\0")[:8]
            status, info = SENT, None
        except ValueError as exc:
            payload, status, info = None, ERROR, str(exc)
        await store.mark(conn, queued.id, status, info)
    await record_status(writer, tenant, [Progress(queued.entity_id, queued.command, status, info)])
    return payload
