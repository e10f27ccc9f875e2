"""Periodic subscriptions (timeInterval, clause 5.2.12): the matching entities, once per interval.

A firing queues one outbox row per entity matching the subscription now, all under one
notification id (per ``chunk`` entities), once per interval across every process: the
firing is marked in the same transaction that queues its rows. The dispatcher then
delivers them like any other rows.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from broker.errors import NgsiLdError
from broker.model.entity import Entity
from broker.notify.matcher import Change, render_for
from broker.notify.model import Subscription
from broker.query.entity_query import EntityQuery, Selector
from broker.store import delivery, outbox
from broker.store.outbox import OutboxRow
from broker.store.query import find

log = logging.getLogger(__name__)


def postgres_pattern(pattern: re.Pattern[str]) -> str:
    """A selector's compiled idPattern for PostgreSQL's ~.

    The subscription parser compiles the portable subset of broker.query.qregex, whose
    Python form differs from the PostgreSQL one only by \\Z for $ (and the case flag).
    """
    out: list[str] = []
    text, index = pattern.pattern, 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text):
            pair = text[index : index + 2]
            out.append("$" if pair == "\\Z" else pair)
            index += 2
        else:
            out.append(text[index])
            index += 1
    source = "".join(out)
    if pattern.flags & re.IGNORECASE and not source.startswith("(?i)"):
        source = "(?i)" + source
    return source


def entity_query(subscription: Subscription) -> EntityQuery:
    """The query of the entities a periodic subscription reports: entities, q, geoQ, scopeQ."""
    selectors = tuple(
        Selector(
            ids=tuple(sorted(s.ids)) if s.ids is not None else None,
            id_pattern=postgres_pattern(s.id_pattern) if s.id_pattern is not None else None,
            types=s.types,
        )
        for s in subscription.entities
    )
    return EntityQuery(
        selectors=selectors,
        q=subscription.q,
        geo=subscription.geo,
        geoproperty=subscription.geoproperty,
        scope=subscription.scope,
    )


async def periodic_due(
    pool: asyncpg.Pool, candidates: Sequence[Subscription], now: datetime
) -> tuple[list[Subscription], float]:
    """The periodic subscriptions among ``candidates`` whose interval has elapsed at ``now`` (a hint:
    firing re-checks), and the seconds until the next of the others is due (inf when none)."""
    if not candidates:
        return [], math.inf
    by_key = {(s.tenant, s.id): s for s in candidates}
    waits = await delivery.periodic_waits(
        pool, [(s.tenant, s.id, float(s.time_interval or 0)) for s in candidates], now
    )
    due = [by_key[(tenant, sid)] for tenant, sid, wait in waits if wait is None or wait <= 0]
    later = (wait for _, _, wait in waits if wait is not None and wait > 0)
    return due, min(later, default=math.inf)


async def _current_entities(
    pool: asyncpg.Pool, subscription: Subscription, limit: int
) -> tuple[list[Entity], str | None]:
    """The entities matching ``subscription`` now (at most ``limit``), or why they cannot be queried."""
    query = entity_query(subscription)
    found: list[Entity] = []
    try:
        while len(found) < limit:
            page, more, _ = await find(
                pool,
                subscription.tenant,
                query,
                subscription.tm,
                limit=min(1000, limit - len(found)),
                offset=len(found),
                count=False,
            )
            found += page
            if not more:
                return found, None
    except NgsiLdError as exc:
        return [], exc.detail
    log.warning("periodic subscription %s: only the first %d entities are notified", subscription.id, limit)
    return found, None


async def fire_periodic(
    pool: asyncpg.Pool, subscription: Subscription, limit: int, chunk: int, now: datetime
) -> None:
    """Queue one outbox row per matching entity, once per timeInterval across all processes."""
    entities, error = await _current_entities(pool, subscription, limit)
    interval = float(subscription.time_interval or 0)
    async with pool.acquire() as conn, conn.transaction():
        if await delivery.fire(conn, subscription.tenant, subscription.id, interval, now) is None:
            return  # fired by another process, or being delivered: a later poll sees it
        if error is not None:
            log.warning("periodic subscription %s cannot query its entities: %s", subscription.id, error)
            return
        # One notification per firing (per ``chunk`` entities): its rows share one id.
        ids = [f"urn:ngsi-ld:Notification:{uuid.uuid4()}" for _ in range(0, len(entities), chunk)]
        rows = [
            OutboxRow(
                subscription.id,
                ids[index // chunk],
                entity.id,
                render_for(subscription, Change(before=None, after=entity)),
            )
            for index, entity in enumerate(entities)
        ]
        if rows:
            await outbox.insert(conn, subscription.tenant, rows)
