"""Which device a message comes from: every service group and device in memory, kept coherent.

The pipeline looks devices up on its hot path, synchronously, so each process holds all
provisioning in memory (a few thousand devices for a town): loaded at start, and reloaded one
tenant at a time when a change anywhere notifies ``ngsi_devices`` (LISTEN/NOTIFY, like the
subscription registry), with a full reload now and then in case a notification was missed
while the listening connection was down.

Autoprovision (IoT Agent): an unknown device id sending with the apikey of a group that allows it
gets a DeviceConfig made from the group at once (provisioned=False), cached, and queued; a
background task stores the queued devices every ``flush_interval`` seconds (INSERT .. ON CONFLICT
DO NOTHING, so two processes making the same device store it once) and the NOTIFY of that
commit turns them into stored devices everywhere. ``persist_pending`` does the same on demand.

Both the upkeep task (``device-provisioning``) and the LISTEN (``device-provisioning-listen``) run
under the process's supervisor: a fault is logged, restarted with back-off and shown on ``/ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from adapters.device import DeviceConfig
from adapters.message import CHIRPSTACK, SIGFOX, TTS, DeviceMessage, Rejected
from adapters.provisioning.model import (
    Device,
    ServiceGroup,
    autoprovisioned,
    group_of,
    resolve,
)
from adapters.provisioning.store import (
    CHANNEL,
    GROUP,
    Key,
    ProvisioningStore,
    device_of_row,
    group_of_row,
)
from broker.clock import SYSTEM, Clock
from broker.errors import AlreadyExists, BadRequestData
from broker.store.listener import Listener
from broker.store.pool import Connection
from broker.supervise import Supervisor
from broker.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PART = "device-provisioning"
LISTEN_PART = "device-provisioning-listen"

_TRANSIENT = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
# (tenant, service path, apikey, device id): one autoprovisioned device.
_AutoKey = tuple[str, str, str, str]


@dataclass(slots=True)
class _Tenant:
    """One tenant's provisioning as loaded, with its parsed rows and resolved devices for reuse."""

    groups: list[ServiceGroup] = field(default_factory=list)
    configs: list[DeviceConfig] = field(default_factory=list)
    # row key -> (modified_at, parsed group or device): an unchanged row is not read or parsed again.
    rows: dict[Key, tuple[datetime, Any]] = field(default_factory=dict)
    # id(device) -> (device, its group, config): an unchanged pair is not resolved again.
    resolved: dict[int, tuple[Device, ServiceGroup | None, DeviceConfig]] = field(default_factory=dict)


def _load_tenant(
    versions: list[tuple[Key, datetime]], fresh: dict[Key, asyncpg.Record], prev: _Tenant
) -> _Tenant:
    """The tenant at ``versions``: what ``prev`` holds of a version is reused, the rest parsed."""
    loaded = _Tenant()
    devices: list[Device] = []
    for key, modified_at in versions:
        hit = prev.rows.get(key)
        if hit is not None and hit[0] == modified_at:
            loaded.rows[key] = hit
        elif (row := fresh.get(key)) is not None:
            try:
                loaded.rows[key] = (
                    row["modified_at"],
                    group_of_row(row) if key[0] == GROUP else device_of_row(row),
                )
            except BadRequestData as error:
                # Without its apikey (the key's last part): a credential never goes to the log.
                detail = error.detail.replace(repr(key[-1]), "'***'") if key[-1] else error.detail
                tenant = row["tenant"]
                log.error("provisioning %s of tenant %r cannot be loaded: %s", key[:-1], tenant, detail)
                continue
        else:
            continue  # deleted since its version was read
        value = loaded.rows[key][1]
        (loaded.groups if key[0] == GROUP else devices).append(value)
    for device in devices:
        group = group_of(device, loaded.groups)
        cached = prev.resolved.get(id(device))
        reuse = cached is not None and cached[0] is device and cached[1] is group
        config = cached[2] if cached is not None and reuse else resolve(device, group)
        loaded.resolved[id(device)] = (device, group, config)
        loaded.configs.append(config)
    return loaded


class _Index:
    """The lookups of one snapshot of all provisioning (rebuilt whole, then swapped in)."""

    def __init__(self, tenants: dict[str, _Tenant]) -> None:
        self.groups_by_apikey: dict[str, list[ServiceGroup]] = defaultdict(list)
        self.by_apikey_device: dict[tuple[str, str], list[DeviceConfig]] = defaultdict(list)
        self.by_protocol_id: dict[tuple[str, str], list[DeviceConfig]] = defaultdict(list)
        self.by_dev_eui: dict[str, DeviceConfig] = {}
        self.by_sigfox: dict[str, DeviceConfig] = {}
        self.by_entity: dict[tuple[str, str], DeviceConfig] = {}
        # Every apikey some tenant provisions, in a group or on a device.
        self.apikeys: set[str] = set()
        for tenant, loaded in tenants.items():
            for group in loaded.groups:
                self.groups_by_apikey[group.apikey].append(group)
                self.apikeys.add(group.apikey)
            for config in loaded.configs:
                if config.apikey is not None:
                    self.by_apikey_device[(config.apikey, config.device_id)].append(config)
                    self.apikeys.add(config.apikey)
                if config.protocol is not None:
                    self.by_protocol_id[(config.protocol, config.device_id)].append(config)
                if config.dev_eui is not None:
                    self.by_dev_eui[config.dev_eui] = config
                if config.protocol == SIGFOX:
                    self.by_sigfox[config.device_id.upper()] = config
                self.by_entity[(tenant, config.entity_name)] = config


def _prefer(configs: list[DeviceConfig], tenant: str | None) -> DeviceConfig | None:
    """The first config, of ``tenant`` when the message names one and one matches."""
    if not configs:
        return None
    if tenant is not None:
        return next((c for c in configs if c.tenant == tenant), configs[0])
    return configs[0]


class Registry:
    """All service groups and devices, with the synchronous lookups the pipeline makes."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        flush_interval: float = 0.5,
        resync_interval: float = 300.0,
        clock: Clock = SYSTEM,
    ) -> None:
        self.store = ProvisioningStore(pool)
        self._pool = pool
        self._clock = clock
        self._flush_interval = flush_interval
        self._resync_interval = resync_interval
        self._tenants: dict[str, _Tenant] = {}
        self._index = _Index({})
        self._auto: dict[_AutoKey, DeviceConfig] = {}
        self._pending: dict[_AutoKey, Device] = {}
        self._dirty: set[str] = set()
        # How many times each tenant was reloaded alone: a whole reload keeps a tenant's newer
        # state when that tenant was reloaded while it read.
        self._reloads: dict[str, int] = defaultdict(int)
        self._refresher: asyncio.Task[None] | None = None
        self._supervisor: Supervisor | None = None
        self._listener = Listener(pool, CHANNEL, self._on_notify, self.load_all, clock=clock)

    # --- lookups (hot path, no I/O) -------------------------------------------------------------

    def find(self, message: DeviceMessage) -> DeviceConfig | None:
        """The device ``message`` comes from, by DevEUI, Sigfox id or apikey; None when unknown.

        Raises Rejected when autoprovision would make a device whose id cannot name an entity.
        """
        if message.dev_eui is not None:
            return self.by_dev_eui(message.dev_eui)
        if message.family == SIGFOX:
            return self.by_sigfox(message.device_id)
        if message.apikey is not None:
            return self.by_apikey_device(message.apikey, message.device_id, tenant=message.tenant)
        if message.family in (TTS, CHIRPSTACK):
            # Without a DevEUI, a network's device id names a device only where it is unambiguous.
            found = self._index.by_protocol_id.get((message.family, message.device_id), [])
            if message.tenant is not None:
                found = [c for c in found if c.tenant == message.tenant] or found
            return found[0] if len(found) == 1 else None
        return None

    def by_apikey_device(
        self, apikey: str, device_id: str, *, tenant: str | None = None
    ) -> DeviceConfig | None:
        """An IoT Agent JSON/UL device; autoprovisioned from its group when the group allows it."""
        found = _prefer(self._index.by_apikey_device.get((apikey, device_id), []), tenant)
        if found is not None:
            return found
        groups = [g for g in self._index.groups_by_apikey.get(apikey, []) if g.autoprovision]
        if tenant is not None and any(g.tenant == tenant for g in groups):
            groups = [g for g in groups if g.tenant == tenant]
        if not groups:
            return None
        return self._autoprovision(groups[0], device_id)

    def owns(self, apikey: str) -> bool:
        """Whether any tenant of this hub provisions ``apikey`` (in a service group or a device):
        an IoT Agent message on MQTT for any other is another agent's, not a fault."""
        return apikey in self._index.apikeys

    def by_dev_eui(self, dev_eui: str) -> DeviceConfig | None:
        """A LoRaWAN device by DevEUI (any case in, lower-case hex stored)."""
        return self._index.by_dev_eui.get(dev_eui.lower())

    def by_sigfox(self, device_id: str) -> DeviceConfig | None:
        """A Sigfox device by its hex id (any case in, upper-case stored)."""
        return self._index.by_sigfox.get(device_id.upper())

    def by_entity(self, tenant: str, entity_id: str) -> DeviceConfig | None:
        """The stored device whose entity is ``entity_id`` (commands are addressed through it)."""
        return self._index.by_entity.get((tenant, entity_id))

    def groups(self, tenant: str) -> list[ServiceGroup]:
        """The groups of ``tenant`` (provisioning uses them to name a new device's entity)."""
        loaded = self._tenants.get(tenant)
        return [] if loaded is None else list(loaded.groups)

    def _autoprovision(self, group: ServiceGroup, device_id: str) -> DeviceConfig:
        key = (group.tenant, group.service_path, group.apikey, device_id)
        cached = self._auto.get(key)
        if cached is not None:
            return cached
        try:
            device = autoprovisioned(group, device_id)
        except BadRequestData as error:
            raise Rejected(f"device id {device_id!r} cannot name an entity: {error.detail}") from None
        config = resolve(device, group, provisioned=False)
        self._auto[key] = config
        self._pending[key] = device
        return config

    # --- loading --------------------------------------------------------------------------------

    async def reload(self, tenant: str) -> None:
        """Read ``tenant``'s groups and devices again and swap the lookups."""
        await self._load(tenant)
        self._rebuild()

    async def _load(self, tenant: str) -> None:
        """Read the row versions of ``tenant``, then only the rows that changed since the last load."""
        prev = self._tenants.get(tenant) or _Tenant()
        versions = await self.store.versions(tenant)
        changed = [key for key, modified_at in versions if prev.rows.get(key, (None,))[0] != modified_at]
        fresh = await self.store.rows(tenant, changed) if changed else {}
        self._tenants[tenant] = _load_tenant(versions, fresh, prev)
        self._reloads[tenant] += 1

    async def load_all(self) -> None:
        """Read every tenant's groups and devices in one go (at start, and now and then).

        A tenant reloaded alone while this read ran (a NOTIFY of a change) keeps that newer state.
        """
        versions: dict[str, list[tuple[Key, datetime]]] = defaultdict(list)
        fresh: dict[str, dict[Key, asyncpg.Record]] = defaultdict(dict)
        before = dict(self._reloads)
        for key, row in await self.store.all_rows():
            versions[row["tenant"]].append((key, row["modified_at"]))
            fresh[row["tenant"]][key] = row
        newer = {t: s for t, s in self._tenants.items() if self._reloads[t] != before.get(t, 0)}
        self._tenants = {
            tenant: _load_tenant(versions[tenant], fresh[tenant], self._tenants.get(tenant) or _Tenant())
            for tenant in versions
        } | newer
        self._rebuild()
        log.info(
            "loaded %d service groups and %d devices",
            sum(len(t.groups) for t in self._tenants.values()),
            sum(len(t.configs) for t in self._tenants.values()),
        )

    def _rebuild(self) -> None:
        self._index = _Index(self._tenants)
        # Made-on-the-fly devices that are stored now are found as stored devices.
        self._auto = {key: config for key, config in self._auto.items() if key in self._pending}

    async def persist_pending(self) -> int:
        """Store the autoprovisioned devices queued so far; return how many were new."""
        if not self._pending:
            return 0
        batch = dict(self._pending)
        try:
            stored = await self.store.add_devices(list(batch.values()), autoprovisioned=True)
        except (asyncpg.DataError, AlreadyExists) as exc:
            # Not transient: retrying would block every later autoprovision behind this batch
            # (AlreadyExists: a group sharing an apikey another tenant held before migration 0030).
            log.error("autoprovisioned devices %s not stored: %s", [k[3] for k in batch], exc)
            stored = 0
        for key in batch:
            self._pending.pop(key, None)
        return stored

    # --- coherence across processes ---------------------------------------------------------

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        self._dirty.add(str(payload))
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_dirty())

    async def _refresh_dirty(self) -> None:
        """Reload the tenants notified, each once however many changes arrived meanwhile."""
        while self._dirty:
            tenant = self._dirty.pop()
            try:
                await self.reload(tenant)
            except _TRANSIENT as exc:
                log.warning("provisioning of tenant %r not reloaded (%s); the next resync will", tenant, exc)

    async def maintain(self) -> None:
        """Store autoprovisioned devices often; reload everything now and then (the supervised part)."""
        waited = 0.0
        while True:
            await self._clock.sleep(self._flush_interval)
            waited += self._flush_interval
            try:
                await self.persist_pending()
                if waited >= self._resync_interval:
                    waited = 0.0
                    await self.load_all()
            except _TRANSIENT as exc:
                log.warning("provisioning upkeep failed (%s); retrying", exc)

    async def start(self, supervisor: Supervisor) -> None:
        """Listen first, then load, so no change between the two is missed; then keep up under
        ``supervisor``."""
        await self._listener.start(supervisor, LISTEN_PART)
        await self.load_all()
        supervisor.spawn(PART, self.maintain)
        self._supervisor = supervisor

    async def stop(self) -> None:
        """Stop listening and the upkeep task; store what autoprovision still holds."""
        if self._supervisor is not None:
            await self._supervisor.cancel(PART)
            self._supervisor = None
        await cancel_and_wait(self._refresher)
        with contextlib.suppress(*_TRANSIENT):
            await self.persist_pending()
        await self._listener.stop()
