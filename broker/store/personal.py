"""Personal entity types and the audit log of their reads (issue 12 item 4).

``PersonalData`` holds each tenant's personal types (cached per process like grants, for
NGSI_AUTH_CACHE_SECONDS; a change made here is seen at once in this process) and writes one audit
row per read request (or notification batch) that returned personal-type entities.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from broker.clock import SYSTEM, Clock
from broker.store.pool import Executor

# A read of more entities than this records their count only, not their ids.
MAX_AUDIT_IDS = 100
_COLUMNS = "id, at, tenant, subject, kind, route, entity_ids, count"


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: datetime
    tenant: str
    subject: str
    kind: str
    route: str
    entity_ids: tuple[str, ...]
    count: int


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    subject: str | None = None
    entity: str | None = None
    limit: int = 100
    offset: int = 0


def _row(row: asyncpg.Record) -> AuditRow:
    return AuditRow(
        id=row["id"],
        at=row["at"],
        tenant=row["tenant"],
        subject=row["subject"],
        kind=row["kind"],
        route=row["route"],
        entity_ids=tuple(row["entity_ids"]),
        count=row["count"],
    )


async def types_of(db: Executor, tenant: str) -> list[str]:
    rows = await db.fetch(
        "SELECT entity_type FROM personal_types WHERE tenant = $1 ORDER BY entity_type", tenant
    )
    return [row["entity_type"] for row in rows]


async def mark(db: Executor, tenant: str, entity_type: str) -> bool:
    """True when ``entity_type`` was not personal before."""
    status = await db.execute(
        "INSERT INTO personal_types (tenant, entity_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        tenant,
        entity_type,
    )
    return bool(status.endswith(" 1"))


async def unmark(db: Executor, tenant: str, entity_type: str) -> bool:
    status = await db.execute(
        "DELETE FROM personal_types WHERE tenant = $1 AND entity_type = $2", tenant, entity_type
    )
    return bool(status.endswith(" 1"))


async def record(
    db: Executor, tenant: str, subject: str, kind: str, route: str, entity_ids: list[str], at: datetime
) -> None:
    """One audit row: the ids when at most MAX_AUDIT_IDS, else none; their count always."""
    ids = entity_ids if len(entity_ids) <= MAX_AUDIT_IDS else []
    await db.execute(
        "INSERT INTO audit_log (at, tenant, subject, kind, route, entity_ids, count)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        at,
        tenant,
        subject,
        kind,
        route,
        ids,
        len(entity_ids),
    )


async def record_delivery(
    db: Executor, tenant: str, subscription_id: str, entity_ids: list[str], at: datetime
) -> None:
    """The audit row of a delivered notification batch: its entities of a personal type, if any
    (one INSERT, nothing when none is personal). Entities deleted meanwhile are not in it."""
    if not entity_ids:
        return
    await db.execute(
        "INSERT INTO audit_log (at, tenant, subject, kind, route, entity_ids, count)"
        " SELECT $1, $2, 'subscription ' || $3, 'subscription', 'notification',"
        f" CASE WHEN n <= {MAX_AUDIT_IDS} THEN ids ELSE '{{}}'::text[] END, n FROM ("
        "  SELECT array_agg(e.id ORDER BY e.id) AS ids, count(*)::int AS n FROM entities e"
        "  WHERE e.tenant = $2 AND e.id = ANY($4::text[]) AND EXISTS (SELECT 1 FROM personal_types p"
        "   WHERE p.tenant = e.tenant AND p.entity_type = ANY(e.types))"
        " ) found WHERE n > 0",
        at,
        tenant,
        subscription_id,
        sorted(set(entity_ids)),
    )


async def listing(db: Executor, tenant: str, where: AuditFilter) -> list[AuditRow]:
    """The tenant's audit rows ``where`` selects, newest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM audit_log WHERE tenant = $1"
        " AND ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3)"
        " AND ($4::text IS NULL OR subject = $4) AND ($5::text IS NULL OR $5 = ANY(entity_ids))"
        " ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7",
        tenant,
        where.since,
        where.until,
        where.subject,
        where.entity,
        where.limit,
        where.offset,
    )
    return [_row(row) for row in rows]


async def purge(db: Executor, before: datetime) -> int:
    """Delete the audit rows older than ``before`` (NGSI_AUDIT_KEEP); how many went."""
    status = await db.execute("DELETE FROM audit_log WHERE at < $1", before)
    return int(status.split()[-1])


class PersonalData:
    """Each tenant's personal types (cached) and the audit log."""

    def __init__(self, pool: asyncpg.Pool, *, ttl: float = 5.0, clock: Clock = SYSTEM) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def types(self, tenant: str) -> frozenset[str]:
        """The entity types ``tenant`` marks as personal (expanded IRIs)."""
        now = self._clock.monotonic()
        cached = self._cache.get(tenant)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        found = frozenset(await types_of(self._pool, tenant))
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[tenant] = (now, found)
        return found

    async def mark(self, tenant: str, entity_type: str) -> bool:
        self._cache.pop(tenant, None)
        return await mark(self._pool, tenant, entity_type)

    async def unmark(self, tenant: str, entity_type: str) -> bool:
        self._cache.pop(tenant, None)
        return await unmark(self._pool, tenant, entity_type)

    async def audit(
        self, tenant: str, subject: str, kind: str, route: str, entity_ids: Iterable[str]
    ) -> None:
        await record(self._pool, tenant, subject, kind, route, list(entity_ids), self._clock.now())

    async def audit_log(self, tenant: str, where: AuditFilter) -> list[AuditRow]:
        return await listing(self._pool, tenant, where)
