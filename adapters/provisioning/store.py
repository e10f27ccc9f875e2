"""Service groups and devices in PostgreSQL (tables service_groups, devices of migration 0005).

Rows hold what provisioning.model renders (one column per field the adapters use, the other IoT
Agent fields in ``extra``) and are read back through the same parsers. Every change notifies
``ngsi_devices`` with the tenant in its transaction, so each process reloads that tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from adapters.provisioning.model import (
    Device,
    ServiceGroup,
    device_json,
    group_json,
    parse_device,
    parse_group,
)
from broker.errors import AlreadyExists
from broker.store.pool import Connection

log = logging.getLogger(__name__)

CHANNEL = "ngsi_devices"
ALL_PATHS = "/*"
DUPLICATE_GROUP = "DUPLICATE_GROUP"
DUPLICATE_DEVICE_ID = "DUPLICATE_DEVICE_ID"
# The constraint migration 0030's trigger names when an apikey is another tenant's.
APIKEY_OWNER = "apikey_owners_tenant"
# Row keys: (GROUP, resource, apikey) and (DEVICE, service path, device id, apikey or '').
GROUP, DEVICE = "group", "device"
Key = tuple[str, ...]

# JSON field -> column; both tables also have tenant, service_path and extra.
_SHARED = {
    "entity_type": "entity_type",
    "attributes": "attributes",
    "static_attributes": "static_attributes",
    "commands": "commands",
    "explicitAttrs": "explicit_attrs",
    "timestamp": '"timestamp"',
    "protocol": "protocol",
    "codec": "codec",
    "layout": "layout",
    "model": "model",
    "model_params": "model_params",
    "health": "health",
}
_GROUP = {"resource": "resource", "apikey": "apikey", "entityNameExp": "entity_name_exp",
          "autoprovision": "autoprovision", **_SHARED}  # fmt: skip
_DEVICE = {"device_id": "device_id", "apikey": "apikey", "entity_name": "entity_name",
           "dev_eui": "dev_eui", **_SHARED}  # fmt: skip
_HEADERS = ("service", "subservice", "service_path")
_DEFAULTS: dict[str, Any] = {"attributes": [], "static_attributes": [], "commands": [], "layout": [],
                             "model_params": {}, "apikey": ""}  # fmt: skip


def _columns(data: dict[str, Any], mapping: dict[str, str]) -> tuple[list[str], list[Any]]:
    """Column names and values of a rendered group or device (the columns come from ``mapping`` only)."""
    path = data.pop("subservice", None) or data.pop("service_path")
    names, values = ["tenant", "service_path"], [data.pop("service"), path]
    for key, column in mapping.items():
        names.append(column)
        values.append(data.pop(key, _DEFAULTS.get(key)))
    names.append("extra")
    values.append({key: value for key, value in data.items() if key not in _HEADERS})
    return names, values


def _insert_sql(table: str, names: list[str], conflict: str = "") -> str:
    marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks}) {conflict}"


def _json_of(row: asyncpg.Record, mapping: dict[str, str]) -> dict[str, Any]:
    data = dict(row["extra"])
    for key, column in mapping.items():
        value = row[column.strip('"')]
        if value not in (None, "", [], {}):
            data[key] = value
    return data


def group_of_row(row: asyncpg.Record) -> ServiceGroup:
    return parse_group(_json_of(row, _GROUP), row["tenant"], row["service_path"])


def device_of_row(row: asyncpg.Record) -> Device:
    return parse_device(_json_of(row, _DEVICE), row["tenant"], row["service_path"], [])


async def _notify(conn: Connection, tenants: Iterable[str]) -> None:
    for tenant in sorted(set(tenants)):
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, tenant)


def _path_filter(path: str, first: int) -> tuple[str, list[str]]:
    """SQL condition and arguments selecting one service path, or every one for '/*'."""
    return ("", []) if path == ALL_PATHS else (f" AND service_path = ${first}", [path])


class ProvisioningStore:
    """Reads and writes provisioning; maps unique violations to the IoT Agents' 409s."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add_groups(self, groups: list[ServiceGroup]) -> None:
        """Store ``groups`` all or none; AlreadyExists (DUPLICATE_GROUP) if a (resource, apikey) is taken."""
        async with self._pool.acquire() as conn, conn.transaction():
            for group in groups:
                if not await _insert_group(conn, group):
                    raise AlreadyExists(
                        f"a service group with resource {group.resource!r} and apikey {group.apikey!r}"
                        " exists already",
                        name=DUPLICATE_GROUP,
                    )
            await _notify(conn, (g.tenant for g in groups))

    async def _page(
        self, table: str, key: str, tenant: str, path: str, limit: int, offset: int
    ) -> tuple[list[asyncpg.Record], int]:
        """A page of the rows of ``tenant`` under ``path`` ('/*': all), oldest first, and the total."""
        where, args = _path_filter(path, 4)
        rows = await self._pool.fetch(
            f"SELECT * FROM {table} WHERE tenant = $1{where} ORDER BY created_at, {key} LIMIT $2 OFFSET $3",
            tenant,
            limit,
            offset,
            *args,
        )
        where, args = _path_filter(path, 2)
        total = await self._pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE tenant = $1{where}", tenant, *args
        )
        return list(rows), int(total)

    async def groups(self, tenant: str, path: str, limit: int, offset: int) -> tuple[list[ServiceGroup], int]:
        """A page of the groups of ``tenant`` under ``path`` ('/*': all), and how many there are."""
        rows, total = await self._page("service_groups", "apikey", tenant, path, limit, offset)
        return [group_of_row(row) for row in rows], total

    async def groups_by_apikey(self, tenant: str, path: str, apikey: str) -> list[ServiceGroup]:
        """The groups of ``tenant`` under ``path`` ('/*': all) with ``apikey``."""
        where, args = _path_filter(path, 3)
        rows = await self._pool.fetch(
            f"SELECT * FROM service_groups WHERE tenant = $1 AND apikey = $2{where}"
            " ORDER BY created_at, resource",
            tenant,
            apikey,
            *args,
        )
        return [group_of_row(row) for row in rows]

    async def group(self, tenant: str, path: str, resource: str, apikey: str) -> ServiceGroup | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM service_groups WHERE tenant = $1 AND service_path = $2"
            " AND resource = $3 AND apikey = $4",
            tenant,
            path,
            resource,
            apikey,
        )
        return None if row is None else group_of_row(row)

    async def replace_group(self, old: ServiceGroup, new: ServiceGroup) -> None:
        """Put ``new`` in the place of ``old`` (same tenant and path)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._delete_group(conn, old)
            if not await _insert_group(conn, new):
                raise AlreadyExists(
                    f"a service group with apikey {new.apikey!r} exists already", name=DUPLICATE_GROUP
                )
            await _notify(conn, [old.tenant])

    async def _delete_group(self, conn: Connection, group: ServiceGroup) -> bool:
        status = await conn.execute(
            "DELETE FROM service_groups WHERE tenant = $1 AND service_path = $2 AND resource = $3"
            " AND apikey = $4",
            group.tenant,
            group.service_path,
            group.resource,
            group.apikey,
        )
        return bool(status != "DELETE 0")

    async def delete_group(self, group: ServiceGroup, *, with_devices: bool = False) -> bool:
        """Delete ``group``, and with ``with_devices`` the devices of its path that use its apikey."""
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await self._delete_group(conn, group)
            if with_devices:
                await conn.execute(
                    "DELETE FROM devices WHERE tenant = $1 AND service_path = $2 AND apikey = $3",
                    group.tenant,
                    group.service_path,
                    group.apikey,
                )
            await _notify(conn, [group.tenant])
        return deleted

    async def add_devices(self, devices: list[Device], *, autoprovisioned: bool = False) -> int:
        """Store ``devices``; all or none (AlreadyExists, DUPLICATE_DEVICE_ID), or, when made by
        autoprovision, those not stored yet (another process may have stored the same). Returns how many."""
        stored = 0
        async with self._pool.acquire() as conn, conn.transaction():
            for device in devices:
                inserted = await _insert_device(conn, device, autoprovisioned)
                if not inserted and not autoprovisioned:
                    raise await _duplicate(conn, device)
                stored += inserted
            await _notify(conn, (d.tenant for d in devices))
        return stored

    async def devices(self, tenant: str, path: str, limit: int, offset: int) -> tuple[list[Device], int]:
        rows, total = await self._page("devices", "device_id", tenant, path, limit, offset)
        return [device_of_row(row) for row in rows], total

    async def device(self, tenant: str, path: str, device_id: str, apikey: str | None) -> list[Device]:
        """The devices of that id (several only when they differ by apikey and none was named)."""
        rows = await self._pool.fetch(
            "SELECT * FROM devices WHERE tenant = $1 AND service_path = $2 AND device_id = $3"
            " AND ($4::text IS NULL OR apikey = $4) ORDER BY apikey",
            tenant,
            path,
            device_id,
            apikey,
        )
        return [device_of_row(row) for row in rows]

    async def replace_device(self, old: Device, new: Device) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._delete_device(conn, old)
            if not await _insert_device(conn, new, False):
                raise await _duplicate(conn, new)
            await _notify(conn, [old.tenant])

    async def _delete_device(self, conn: Connection, device: Device) -> bool:
        status = await conn.execute(
            "DELETE FROM devices WHERE tenant = $1 AND service_path = $2 AND device_id = $3 AND apikey = $4",
            device.tenant,
            device.service_path,
            device.device_id,
            device.apikey or "",
        )
        return bool(status != "DELETE 0")

    async def delete_device(self, device: Device) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await self._delete_device(conn, device)
            await _notify(conn, [device.tenant])
        return deleted

    async def versions(self, tenant: str) -> list[tuple[Key, datetime]]:
        """The key and modified_at of every group, then every device, of ``tenant``."""
        groups = await self._pool.fetch(
            "SELECT resource, apikey, modified_at FROM service_groups WHERE tenant = $1", tenant
        )
        devices = await self._pool.fetch(
            "SELECT service_path, device_id, apikey, modified_at FROM devices WHERE tenant = $1", tenant
        )
        return [((GROUP, r["resource"], r["apikey"]), r["modified_at"]) for r in groups] + [
            ((DEVICE, r["service_path"], r["device_id"], r["apikey"]), r["modified_at"]) for r in devices
        ]

    async def rows(self, tenant: str, keys: list[Key]) -> dict[Key, asyncpg.Record]:
        """The rows of ``keys`` (from ``versions``) that still exist, by key."""
        groups = [k for k in keys if k[0] == GROUP]
        devices = [k for k in keys if k[0] == DEVICE]
        out: dict[Key, asyncpg.Record] = {}
        if groups:
            for row in await self._pool.fetch(
                "SELECT g.* FROM service_groups g JOIN unnest($2::text[], $3::text[]) AS k (resource, apikey)"
                " USING (resource, apikey) WHERE g.tenant = $1",
                tenant,
                [k[1] for k in groups],
                [k[2] for k in groups],
            ):
                out[(GROUP, row["resource"], row["apikey"])] = row
        if devices:
            for row in await self._pool.fetch(
                "SELECT d.* FROM devices d JOIN unnest($2::text[], $3::text[], $4::text[])"
                " AS k (service_path, device_id, apikey) USING (service_path, device_id, apikey)"
                " WHERE d.tenant = $1",
                tenant,
                [k[1] for k in devices],
                [k[2] for k in devices],
                [k[3] for k in devices],
            ):
                out[(DEVICE, row["service_path"], row["device_id"], row["apikey"])] = row
        return out

    async def all_rows(self) -> list[tuple[Key, asyncpg.Record]]:
        """Every group row, then every device row, of every tenant, with its key."""
        groups = await self._pool.fetch("SELECT * FROM service_groups")
        devices = await self._pool.fetch("SELECT * FROM devices")
        return [((GROUP, r["resource"], r["apikey"]), r) for r in groups] + [
            ((DEVICE, r["service_path"], r["device_id"], r["apikey"]), r) for r in devices
        ]


# Rows go in with ON CONFLICT DO NOTHING and a taken key is told from the row count: a unique
# violation would put the key's values, an apikey among them, in PostgreSQL's log.


async def _insert_group(conn: Connection, group: ServiceGroup) -> bool:
    """Insert ``group``; False when its (resource, apikey) is taken; AlreadyExists when its apikey
    is another tenant's."""
    names, values = _columns(group_json(group), _GROUP)
    try:
        status = await conn.execute(_insert_sql("service_groups", names, "ON CONFLICT DO NOTHING"), *values)
    except asyncpg.UniqueViolationError as exc:
        raise _taken(exc) from None
    return bool(status != "INSERT 0 0")


async def _insert_device(conn: Connection, device: Device, autoprovisioned: bool) -> bool:
    """Insert ``device``; False when one of its keys is taken; AlreadyExists when its apikey is
    another tenant's."""
    names, values = _columns(device_json(device), _DEVICE)
    sql = _insert_sql("devices", [*names, "autoprovisioned"], "ON CONFLICT DO NOTHING")
    try:
        status = await conn.execute(sql, *values, autoprovisioned)
    except asyncpg.UniqueViolationError as exc:
        raise _taken(exc) from None
    return bool(status != "INSERT 0 0")


def _taken(exc: asyncpg.UniqueViolationError) -> AlreadyExists:
    """The 409 of a unique violation: an apikey another tenant holds (migration 0030)."""
    if (getattr(exc, "constraint_name", "") or "") != APIKEY_OWNER:
        raise exc  # no other unique violation is left to the database to find
    # Which tenant holds it is not said: that is the other tenant's business.
    return AlreadyExists("this apikey is used by another service (tenant)", name=DUPLICATE_GROUP)


async def _duplicate(conn: Connection, device: Device) -> AlreadyExists:
    """Why ``device`` was not inserted: its DevEUI, its Sigfox id or its id is taken."""
    if device.dev_eui is not None and await conn.fetchval(
        "SELECT 1 FROM devices WHERE dev_eui = $1", device.dev_eui
    ):
        detail = f"DevEUI {device.dev_eui} is provisioned already"
    elif device.profile.protocol == "sigfox" and await conn.fetchval(
        "SELECT 1 FROM devices WHERE protocol = 'sigfox' AND upper(device_id) = upper($1)", device.device_id
    ):
        detail = f"Sigfox device {device.device_id} is provisioned already"
    else:
        detail = f"device {device.device_id!r} exists already in this service and path"
    return AlreadyExists(detail, name=DUPLICATE_DEVICE_ID)
