"""The daily partitions of attribute_history: created ahead of time, dropped when retention allows.

Layout (see migration 0004): ``attribute_history_past`` (MINVALUE .. first day), one
``attribute_history_pYYYYMMDD`` per day, ``attribute_history_future`` (.. MAXVALUE). Every
time has a partition, so a write never fails; days are split off "future" ahead of time,
and whatever landed there early (a clock in the future) moves to its day.

DDL takes no bind parameters: the bounds written into it are dates this module computes,
never request input.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

from broker.store.pool import Connection

log = logging.getLogger(__name__)

# Serialises partition changes (and the purge) across broker processes.
PARTITION_LOCK = 0x6869_7374_6F72
# Detaching a partition waits for every running query on the history and makes new writes queue
# behind it: give up after this long and try again next round (days are created well ahead).
LOCK_TIMEOUT = "2s"
_DAILY = re.compile(r"attribute_history_p(\d{8})")


def _bound(day: date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'"


async def daily_partitions(conn: Connection) -> list[date]:
    """The days that have their own partition, in order."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'attribute_history'::regclass"
    )
    days = []
    for row in rows:
        match = _DAILY.fullmatch(row["relname"])
        if match:
            days.append(datetime.strptime(match.group(1), "%Y%m%d").date())
    return sorted(days)


def _name(day: date) -> str:
    return f"attribute_history_p{day:%Y%m%d}"


async def ensure_ahead(conn: Connection, today: date, days_ahead: int) -> list[str]:
    """Give each day up to ``today + days_ahead`` its partition; return the names created."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        days = await daily_partitions(conn)
        last = days[-1] if days else today - timedelta(days=1)
        target = today + timedelta(days=days_ahead)
        if last >= target:
            return []
        new_days = [last + timedelta(days=n) for n in range(1, (target - last).days + 1)]
        # Detaching "future" briefly blocks writers (an exclusive lock on the parent): once a day.
        await conn.execute("ALTER TABLE attribute_history DETACH PARTITION attribute_history_future")
        await conn.execute("ALTER TABLE attribute_history_future RENAME TO attribute_history_future_old")
        for day in new_days:
            await conn.execute(
                f"CREATE TABLE {_name(day)} PARTITION OF attribute_history"
                f" FOR VALUES FROM ({_bound(day)}) TO ({_bound(day + timedelta(days=1))})"
            )
        await conn.execute(
            "CREATE TABLE attribute_history_future PARTITION OF attribute_history"
            f" FOR VALUES FROM ({_bound(target + timedelta(days=1))}) TO (MAXVALUE)"
        )
        await conn.execute("INSERT INTO attribute_history SELECT * FROM attribute_history_future_old")
        await conn.execute("DROP TABLE attribute_history_future_old")
    names = [_name(day) for day in new_days]
    log.info("history partitions created: %s", ", ".join(names))
    return names


async def drop_before(conn: Connection, cutoff: datetime) -> list[str]:
    """Drop the days that end by ``cutoff`` and everything before them; return the tables dropped.

    Runs in the caller's transaction, which holds PARTITION_LOCK. "past" is replaced by an
    empty partition reaching up to the first day kept, so no time is left without a partition.
    """
    existing = await daily_partitions(conn)
    if not existing or existing[0] > cutoff.date():
        return []
    cutoff_day = cutoff.date()
    days = [day for day in existing if day + timedelta(days=1) <= cutoff_day]
    keep_from = days[-1] + timedelta(days=1) if days else existing[0]
    if not days and not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM attribute_history_past)"):
        return []
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await conn.execute("ALTER TABLE attribute_history DETACH PARTITION attribute_history_past")
    await conn.execute("DROP TABLE attribute_history_past")
    dropped = ["attribute_history_past"]
    for day in days:
        await conn.execute(f"DROP TABLE {_name(day)}")
        dropped.append(_name(day))
    await conn.execute(
        "CREATE TABLE attribute_history_past PARTITION OF attribute_history"
        f" FOR VALUES FROM (MINVALUE) TO ({_bound(keep_from)})"
    )
    return dropped
