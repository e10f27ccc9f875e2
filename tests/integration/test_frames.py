"""Redelivery keys on the real store: claimed once per tenant, forgotten by age."""

from __future__ import annotations

import uuid

import asyncpg

from broker.store import frames
from tests.conftest import database_url


async def test_a_key_is_fresh_once_per_tenant_and_old_keys_are_forgotten() -> None:
    tenant, other = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database_url())
    try:
        async with conn.transaction():
            first = await frames.claim(conn, tenant, {("gauge-1", "7:a"), ("gauge-1", "8:b")})
        again = await frames.claim(conn, tenant, {("gauge-1", "7:a"), ("gauge-2", "7:a")})
        elsewhere = await frames.claim(conn, other, {("gauge-1", "7:a")})
        await conn.execute(
            "UPDATE device_frames SET seen_at = now() - interval '9 days' WHERE tenant = $1 AND frame = '8:b'",
            tenant,
        )
        dropped = await frames.forget_before(conn, 8)
        left = await conn.fetch(
            "SELECT device, frame FROM device_frames WHERE tenant = $1 ORDER BY 1, 2", tenant
        )
    finally:
        await conn.execute("DELETE FROM device_frames WHERE tenant = ANY($1::text[])", [tenant, other])
        await conn.close()

    assert first == {("gauge-1", "7:a"), ("gauge-1", "8:b")}
    assert again == {("gauge-2", "7:a")}
    assert elsewhere == {("gauge-1", "7:a")}
    assert dropped >= 1
    assert [tuple(r) for r in left] == [("gauge-1", "7:a"), ("gauge-2", "7:a")]
