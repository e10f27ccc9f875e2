"""The outbox: notifications written in the transaction of the change that caused them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.store.pool import Connection

# Where a row's request id travels, inside its stored data (no column for it): a member no
# rendered entity has (an attribute name is a term or an IRI, never with a space); taken out
# again when the row is read for delivery (broker.store.delivery).
REQUEST_ID_MEMBER = "ngsi hub requestId"

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
    # The request that caused the change (broker.logs), sent as X-Request-Id with the notification.
    request_id: str | None = None


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
                "data": r.data if r.request_id is None else {**r.data, REQUEST_ID_MEMBER: r.request_id},
            }
            for r in rows
        ],
    )
    await conn.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, tenant)
