"""The outbox: notifications written in the transaction of the change that caused them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.store.pool import Connection

# Notifiers LISTEN on this channel; the payload is the tenant (a hint, they re-check the table).
OUTBOX_CHANNEL = "ngsi_outbox"

_INSERT = """
INSERT INTO outbox (tenant, subscription_id, notification_id, entity_id, data)
SELECT $1, r.subscription_id, r.notification_id, r.entity_id, r.data
FROM jsonb_to_recordset($2::jsonb)
     AS r(subscription_id text, notification_id text, entity_id text, data jsonb)
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One entity of one notification to come: rows sharing ``notification_id`` go out together."""

    subscription_id: str
    notification_id: str
    entity_id: str
    data: dict[str, Any]


async def insert(conn: Connection, tenant: str, rows: Sequence[OutboxRow]) -> None:
    """Queue ``rows`` (in order) and wake the notifiers when the transaction commits."""
    await conn.execute(
        _INSERT,
        tenant,
        [
            {
                "subscription_id": r.subscription_id,
                "notification_id": r.notification_id,
                "entity_id": r.entity_id,
                "data": r.data,
            }
            for r in rows
        ],
    )
    await conn.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, tenant)
