"""Redelivery keys of device messages (table device_frames): each (device, frame) is applied once.

A LoRaWAN frame counter, a Sigfox sequence number or a message id, claimed in the transaction
that applies the message: a message redelivered after a crash or a lost acknowledgement finds
its key taken and changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Collection

from broker.store.pool import Connection


async def claim(conn: Connection, tenant: str, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record ``keys`` for ``tenant``; return those not recorded before (the others are redeliveries)."""
    if not keys:
        return set()
    devices, numbers = zip(*keys, strict=True)
    rows = await conn.fetch(
        "INSERT INTO device_frames (tenant, device, frame)"
        " SELECT $1, d, f FROM unnest($2::text[], $3::text[]) AS k (d, f)"
        " ON CONFLICT DO NOTHING RETURNING device, frame",
        tenant,
        list(devices),
        list(numbers),
    )
    return {(row["device"], row["frame"]) for row in rows}


async def forget_before(conn: Connection, days: int) -> int:
    """Drop keys older than ``days`` (a network never redelivers that late); return how many."""
    status = await conn.execute(
        "DELETE FROM device_frames WHERE seen_at < now() - make_interval(days => $1)", days
    )
    return int(status.rsplit(" ", 1)[-1])
