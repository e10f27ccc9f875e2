"""What the fault tests read back once traffic stopped: stored values, device frames, readiness."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import asyncpg
import orjson

from tests.conftest import eventually
from tests.e2e.traffic import DevicePublisher, HttpWriter

N_ATTR = "https://uri.etsi.org/ngsi-ld/default-context/n"
LEVEL_ATTR = "https://smartdatamodels.org/dataModel.Environment/currentLevel"
_LEADING_NUMBER = re.compile(r"\d+")


async def history_values(dsn: str, tenant: str, attr: str) -> set[tuple[str, Any]]:
    """(entity id, value) of every history row of ``attr`` in ``tenant``."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT entity_id, instance->'value' AS value FROM attribute_history"
            " WHERE tenant = $1 AND attr = $2 AND instance IS NOT NULL",
            tenant,
            attr,
        )
    finally:
        await conn.close()
    return {(row["entity_id"], _plain(row["value"])) for row in rows}


def _plain(value: Any) -> Any:
    """A jsonb value as Python (asyncpg hands jsonb over as text unless a codec is set)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def history_count(dsn: str, tenant: str, entity_id: str, attr: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM attribute_history WHERE tenant = $1 AND entity_id = $2 AND attr = $3",
            tenant,
            entity_id,
            attr,
        )
    finally:
        await conn.close()
    return int(count)


async def stored_frame_counters(dsn: str, tenant: str, device: str) -> list[int]:
    """The frame counters of the device's stored messages (its redelivery keys start with the counter)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT frame FROM device_frames WHERE tenant = $1 AND device = $2", tenant, device
        )
    finally:
        await conn.close()
    counters = []
    for row in rows:
        match = _LEADING_NUMBER.match(row["frame"])
        assert match, f"a frame key without its counter: {row['frame']}"
        counters.append(int(match.group()))
    return counters


async def read_back(session: aiohttp.ClientSession, writer: HttpWriter) -> list[str]:
    """GET every entity the writer created; the problems found (missing, or older than acknowledged)."""
    problems = []
    for entity_id, value in writer.last_acked().items():
        url = f"{writer.base}/ngsi-ld/v1/entities/{entity_id}?options=keyValues"
        async with session.get(url, headers=writer.headers) as response:
            if response.status != 200:
                problems.append(f"{entity_id}: {response.status} {await response.text()}")
                continue
            stored = (await response.json())["n"]
        # Writes to one entity are sequential with growing values: a later write the client saw
        # refused may still have committed, so the stored value is the last acknowledged or newer.
        if stored < value or (writer.last_attempted[entity_id] == value and stored != value):
            problems.append(f"{entity_id}: stored {stored}, last acknowledged {value}")
    return problems


async def unready(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """What ``/ready`` says is down (it must answer 503)."""
    async with session.get(f"{base}/ready") as response:
        body = await response.json()
        assert response.status == 503, body
    down: dict[str, Any] = body["down"]
    return down


async def ready(session: aiohttp.ClientSession, base: str, within: float = 60.0) -> None:
    """Wait until ``/ready`` answers 200 (the database and every supervised part are back)."""

    async def check() -> bool:
        try:
            async with session.get(f"{base}/ready") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(check, within=within, interval=0.2, what=f"{base}/ready answering 200")


async def writes_one_by_one(session: aiohttp.ClientSession, writer: HttpWriter, count: int) -> None:
    """``count`` updates made one at a time after the restart, each of which must succeed."""
    for index in range(count):
        entity_id = writer.created[index % len(writer.created)]
        assert await writer.update(session, entity_id), f"explicit write {index} after the restart"


async def every_frame_stored(gateway: DevicePublisher, dsn: str, tenant: str) -> None:
    """Mosquitto acknowledges every frame published, and each acknowledged frame is stored."""
    published = gateway.published()
    await eventually(
        lambda: len(gateway.acked()) == published, within=30, what="Mosquitto acknowledging every frame"
    )
    acked_frames = gateway.acked()

    async def frames_stored() -> bool:
        return acked_frames <= set(await stored_frame_counters(dsn, tenant, gateway.device_id))

    await eventually(frames_stored, within=60, interval=0.2, what="every PUBACKed frame stored")
