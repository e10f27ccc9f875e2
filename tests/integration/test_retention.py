"""Retention: policies per tenant and entity type, the purge job, partitions created ahead and dropped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from broker.store.migrate import migration_files
from broker.store.partitions import PARTITION_LOCK, daily_partitions, ensure_ahead
from broker.store.retention import purge
from broker.supervise import Supervisor
from broker.temporal.maintenance import HistoryMaintenance
from tests.clock import ManualClock
from tests.conftest import Api, database_url, eventually, new_id, problem
from tests.integration.helpers import body_of

ADMIN = "/admin/retention"
TEMPORAL = "/ngsi-ld/v1/temporal/entities"


async def test_a_policy_is_created_replaced_listed_and_deleted(api: Api) -> None:
    await api.request("POST", TEMPORAL, sighting(new_id("DeviceMeasurement"), days_ago=0))
    path = f"{ADMIN}/DeviceMeasurement"
    assert (await api.request("PUT", path, {"keep": "P7D"})).status == 201
    assert (await api.request("PUT", path, {"keep": "P14D"})).status == 204
    assert (await api.request("PUT", f"{ADMIN}/FloodMonitoring", {"keep": None})).status == 201
    listed = await body_of(await api.request("GET", ADMIN))
    assert listed["default"] is None
    assert listed["policies"] == [
        {"entityType": "DeviceMeasurement", "keep": "P14D"},
        {"entityType": "FloodMonitoring", "keep": None},
    ]
    assert await body_of(await api.request("GET", path)) == {
        "entityType": "DeviceMeasurement",
        "keep": "P14D",
    }
    assert (await api.request("DELETE", path)).status == 204
    await problem(await api.request("GET", path), 404, "ResourceNotFound")
    await problem(await api.request("DELETE", path), 404, "ResourceNotFound")


@pytest.mark.parametrize("body", [{"keep": "seven days"}, {"keep": "P1M"}, {"keep": 7}, {"hold": "P7D"}, []])
async def test_a_bad_policy_is_refused(api: Api, body: Any) -> None:
    await api.request("POST", TEMPORAL, sighting(new_id("DeviceMeasurement"), days_ago=0))
    await problem(await api.request("PUT", f"{ADMIN}/DeviceMeasurement", body), 400, "BadRequestData")


def sighting(entity_id: str, *, days_ago: int, kind: str = "DeviceMeasurement") -> dict[str, Any]:
    seen = datetime.now(UTC) - timedelta(days=days_ago, minutes=5)
    return {
        "id": entity_id,
        "type": kind,
        "numValue": [{"type": "Property", "value": days_ago, "observedAt": seen.isoformat()}],
    }


async def kept(api: Api, entity_id: str) -> list[Any]:
    response = await api.request("GET", f"{TEMPORAL}/{entity_id}")
    if response.status == 404:
        return []
    return [i["value"] for i in (await body_of(response))["numValue"]]


async def test_the_purge_deletes_only_what_a_policy_lets_go_and_records_its_run(api: Api) -> None:
    tag, river = new_id("DeviceMeasurement"), new_id("FloodMonitoring")
    for days_ago, status in ((10, 201), (1, 204)):  # 201 creates the temporal entity, 204 adds to it
        assert (await api.request("POST", TEMPORAL, sighting(tag, days_ago=days_ago))).status == status
        river_body = sighting(river, days_ago=days_ago, kind="FloodMonitoring")
        assert (await api.request("POST", TEMPORAL, river_body)).status == status
    assert (await api.request("PUT", f"{ADMIN}/DeviceMeasurement", {"keep": "P7D"})).status == 201
    response = await api.request("POST", f"{ADMIN}/runs")
    run = await body_of(response)
    assert response.status == 200, run
    assert run["rowsDeleted"] >= 1
    assert run["error"] is None
    assert await kept(api, tag) == [1]
    assert await kept(api, river) == [10, 1]
    runs = await body_of(await api.request("GET", f"{ADMIN}/runs"))
    assert run["id"] in [r["id"] for r in runs]


# --- partitions, in a schema of their own so dropping days touches no other test's history ---


@pytest.fixture
async def schema_pool() -> AsyncIterator[asyncpg.Pool]:
    schema = f"retention_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url())
    await admin.execute(f"CREATE SCHEMA {schema}")
    pool = await asyncpg.create_pool(
        database_url(), min_size=1, max_size=2, server_settings={"search_path": f"{schema},public"}
    )
    assert pool is not None
    sql = next(text for _, name, text in migration_files() if name == "0004_history.sql")
    await pool.execute(
        sql.replace("CREATE INDEX history_streams_types_idx", "CREATE INDEX IF NOT EXISTS x_idx")
    )
    try:
        yield pool
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def add_row(pool: asyncpg.Pool, ts: datetime, kind: str = "https://x/Tag") -> None:
    await pool.execute(
        "INSERT INTO attribute_history (tenant, entity_id, types, attr, ts, modified_at)"
        " VALUES ('t', 'urn:e', ARRAY[$2], 'https://x/a', $1, $1)",
        ts,
        kind,
    )


async def partition_of(pool: asyncpg.Pool) -> dict[datetime, str]:
    rows = await pool.fetch("SELECT ts, tableoid::regclass::text AS part FROM attribute_history")
    return {row["ts"]: row["part"].split(".")[-1] for row in rows}


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def test_days_are_created_ahead_and_rows_that_came_early_move_to_their_day(
    schema_pool: asyncpg.Pool,
) -> None:
    today = datetime.now(UTC).date()
    early = midnight(today + timedelta(days=10)) + timedelta(hours=3)
    await add_row(schema_pool, early)
    assert (await partition_of(schema_pool))[early] == "attribute_history_future"
    async with schema_pool.acquire() as conn:
        created = await ensure_ahead(conn, today, 12)
        assert len(created) == 12
        assert await ensure_ahead(conn, today, 12) == []
        assert (await daily_partitions(conn))[-1] == today + timedelta(days=12)
    assert (await partition_of(schema_pool))[early] == f"attribute_history_p{early:%Y%m%d}"


async def test_whole_days_are_dropped_when_every_policy_allows_and_old_writes_still_land(
    schema_pool: asyncpg.Pool,
) -> None:
    today = datetime.now(UTC).date()
    async with schema_pool.acquire() as conn:
        await ensure_ahead(conn, today, 4)
    ancient, first_day, third_day = (
        midnight(today) - timedelta(days=30),
        midnight(today) + timedelta(hours=1),
        midnight(today + timedelta(days=2)) + timedelta(hours=5),
    )
    for ts in (ancient, first_day, third_day):
        await add_row(schema_pool, ts)
    # Three days and three hours later, keeping one day: the past and the first two days may go,
    # and of the third day what is older than a day (nothing: its row is 22 hours old).
    run = await purge(
        schema_pool, timedelta(days=1), now=midnight(today + timedelta(days=3)) + timedelta(hours=3)
    )
    assert run is not None
    assert run.error is None
    assert run.partitions_dropped == [
        "attribute_history_past",
        f"attribute_history_p{today:%Y%m%d}",
        f"attribute_history_p{today + timedelta(days=1):%Y%m%d}",
    ]
    assert list(await partition_of(schema_pool)) == [third_day]
    await add_row(schema_pool, ancient)
    assert (await partition_of(schema_pool))[ancient] == "attribute_history_past"


async def test_a_policy_that_keeps_forever_blocks_dropping_days_and_rows_are_deleted_instead(
    schema_pool: asyncpg.Pool,
) -> None:
    today = datetime.now(UTC).date()
    await schema_pool.execute(
        "INSERT INTO retention_policies (tenant, entity_type, keep) VALUES ('t', 'https://x/River', NULL),"
        " ('t', 'https://x/Tag', '7 days')"
    )
    old = midnight(today) - timedelta(days=20)
    await add_row(schema_pool, old, "https://x/Tag")
    await add_row(schema_pool, old + timedelta(seconds=1), "https://x/River")
    run = await purge(schema_pool, timedelta(days=1))
    assert run is not None
    assert run.partitions_dropped == []
    assert run.rows_deleted == 1
    assert list(await partition_of(schema_pool)) == [old + timedelta(seconds=1)]


async def test_a_purge_asked_while_another_process_runs_one_is_409_problem_details(api: Api) -> None:
    holder = await asyncpg.connect(database_url())
    try:
        async with holder.transaction():
            # What a purge in another process holds while it runs.
            await holder.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            response = await api.request("POST", f"{ADMIN}/runs")
            body = await problem(response, 409, "AlreadyExists")
            assert body["detail"].startswith("a history purge is already running")
    finally:
        await holder.close()
    assert (await api.request("POST", f"{ADMIN}/runs")).status == 200


async def test_history_maintenance_raising_is_restarted_by_the_supervisor_and_shown_on_ready(
    schema_pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    supervisor = Supervisor(clock, backoff=1.0)
    maintenance = HistoryMaintenance(schema_pool, days_ahead=1, keep=None, interval=60.0, clock=clock)
    rounds: list[int] = []

    async def failing_once() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("a bug in the purge")

    maintenance.run_once = failing_once  # type: ignore[method-assign]
    supervisor.spawn("history-maintenance", maintenance.run)
    try:
        await eventually(lambda: clock.sleepers == 1, what="maintenance asleep until its first round")
        await clock.advance(60.0)
        await eventually(lambda: "history-maintenance" in supervisor.problems(), what="the failure shown")
        assert (
            supervisor.problems()["history-maintenance"]
            == "restarting after: RuntimeError: a bug in the purge"
        )
        await clock.advance(1.0)  # the back-off
        await eventually(lambda: not supervisor.problems() and clock.sleepers == 1, what="restarted, asleep")
        await clock.advance(60.0)
        await eventually(lambda: len(rounds) == 2, what="the next round after the restart")
        assert supervisor.report()["history-maintenance"] == {
            "running": True,
            "restarts": 1,
            "lastError": "RuntimeError: a bug in the purge",
        }
    finally:
        await supervisor.stop()


async def test_the_app_supervises_history_maintenance(client: TestClient[Any, Any]) -> None:
    body = await (await client.get("/health")).json()
    assert body["components"]["history-maintenance"]["running"] is True
