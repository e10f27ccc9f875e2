"""The device_commands table: commands queued in the write transaction, claimed, sent, answered.

A command is PENDING when queued, SENT once published (or handed to a Sigfox BIDIR reply), OK when
the device answered, ERROR when it could not be sent. Claims take FOR UPDATE SKIP LOCKED row locks,
so several processes share the queue; ``CHANNEL`` is notified when commands are queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.device import CommandState
from broker.store.pool import Connection

CHANNEL = "ngsi_commands"
CLAIM_BATCH = 100


@dataclass(frozen=True, slots=True)
class Queued:
    id: int
    tenant: str
    device_id: str
    entity_id: str
    command: str
    value: Any


@dataclass(frozen=True, slots=True)
class NewCommand:
    """A command to queue: its device and entity, its name, and its value as JSON text."""

    device_id: str
    entity_id: str
    command: str
    value_json: str


_COLUMNS = "id, tenant, device_id, entity_id, command, value"


async def queue(conn: Connection, tenant: str, commands: list[NewCommand]) -> None:
    """Queue ``commands`` (PENDING) and notify the dispatchers, in the caller's transaction."""
    await conn.execute(
        "INSERT INTO device_commands (tenant, device_id, entity_id, command, value)"
        " SELECT $1, d, e, c, v::jsonb FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])"
        " AS r (d, e, c, v)",
        tenant,
        [c.device_id for c in commands],
        [c.entity_id for c in commands],
        [c.command for c in commands],
        [c.value_json for c in commands],
    )
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, tenant)


async def answer(conn: Connection, tenant: str, device_id: str, command: str, info: str) -> None:
    """The device answered: its oldest SENT or PENDING ``command`` becomes OK with ``info``."""
    await conn.execute(
        "UPDATE device_commands SET status = 'OK', answered_at = now(), info = $4"
        " WHERE id = (SELECT id FROM device_commands WHERE tenant = $1 AND device_id = $2"
        " AND command = $3 AND status IN ('SENT', 'PENDING') ORDER BY id LIMIT 1)",
        tenant,
        device_id,
        command,
        info,
    )


async def claim_pending(conn: Connection) -> list[Queued]:
    """The oldest PENDING commands (a batch), locked for this transaction, skipping others' claims."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM device_commands"
        " WHERE status = 'PENDING' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        CLAIM_BATCH,
    )
    return [Queued(**dict(row)) for row in rows]


async def claim_for_device(conn: Connection, tenant: str, device_id: str) -> Queued | None:
    """The oldest PENDING command of one device, locked for this transaction (a Sigfox BIDIR reply).

    It waits for a lock rather than skip the row: the dispatcher's claim locks every PENDING
    command for a moment, Sigfox ones too (it leaves those for the reply), and a callback that
    skipped the row then answered without the command, which waited for the device's next callback
    (hours, for a Sigfox device).
    """
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM device_commands WHERE tenant = $1"
        " AND device_id = $2 AND status = 'PENDING' ORDER BY id LIMIT 1 FOR UPDATE",
        tenant,
        device_id,
    )
    return None if row is None else Queued(**dict(row))


async def mark(conn: Connection, command_id: int, status: CommandState, info: str | None) -> None:
    """A claimed command was sent (or could not be): its new status, the time, the reason if any."""
    await conn.execute(
        "UPDATE device_commands SET status = $2, sent_at = now(), info = $3 WHERE id = $1",
        command_id,
        status,
        info,
    )
