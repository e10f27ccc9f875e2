"""The offline admin CLI (`city-data-hub keys|grants ...`, issue 12 item 6), run as a real process
against the test database, its results read back from the stores."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from broker.auth.keys import KeyRing
from broker.store import create_pool
from broker.store import grants as stored_grants
from tests.conftest import Api, database_url


async def cli(*args: str) -> tuple[int, list[str], str]:
    """Run ``python -m broker ARGS``; (exit code, stdout lines, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broker",
        *args,
        env={**os.environ, "DATABASE_URL": database_url()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode().splitlines(), err.decode()


@pytest.fixture
async def pool() -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url(), min_size=1, max_size=2, connect_timeout=10)
    try:
        yield pool
    finally:
        await pool.close()


async def test_keys_made_listed_and_revoked_offline(pool: asyncpg.Pool, tenant: str) -> None:
    code, out, err = await cli("keys", "create", "--role", "reader", "--tenant", tenant, "--label", "gw 12")
    assert code == 0, err
    details, token = orjson.loads(out[0]), out[-1]
    identity = await KeyRing(pool).identify(token)
    assert identity is not None
    assert (identity.tenant, identity.subject, {str(r) for r in identity.roles}) == (
        tenant,
        details["id"],
        {"reader"},
    )
    code, out, err = await cli("keys", "list", "--tenant", tenant)
    assert code == 0, err
    assert [orjson.loads(line)["id"] for line in out] == [details["id"]]
    assert token not in "".join(out)  # never the secret again
    code, out, err = await cli("keys", "revoke", details["id"])
    assert (code, out) == (0, [f"revoked {details['id']}"]), err
    assert await KeyRing(pool).identify(token) is None
    code, _, err = await cli("keys", "revoke", details["id"])
    assert code == 1, err
    assert "not revoked already" in err


async def test_a_key_without_its_tenant_is_refused_and_nothing_is_made(
    pool: asyncpg.Pool, tenant: str
) -> None:
    code, _, err = await cli("keys", "create", "--role", "writer")
    assert code == 2, err
    assert "--tenant" in err
    code, _, err = await cli("keys", "create", "--role", "operator", "--tenant", tenant)
    assert code == 2, err
    assert "names no tenant" in err
    assert await KeyRing(pool).listing(tenant) == []


async def test_grants_made_offline_equal_those_of_the_admin_api(
    api: Api, pool: asyncpg.Pool, tenant: str
) -> None:
    other = f"town-{uuid.uuid4().hex[:8]}"
    response = await api.request(
        "POST", "/admin/grants", {"to": other, "types": ["WaterObserved"], "attrs": ["waterLevel"]}
    )
    assert response.status == 201, await response.text()
    api_id = (await response.json())["id"]
    code, out, err = await cli(
        "grants",
        "create",
        "--tenant",
        tenant,
        "--to",
        other,
        "--types",
        "WaterObserved",
        "--attrs",
        "waterLevel",
    )
    assert code == 0, err
    made = orjson.loads(out[-1])
    found = {g.id: g for g in await stored_grants.of_tenant(pool, tenant)}
    via_api, via_cli = found[api_id], found[made["id"]]
    assert (via_cli.grantee, via_cli.types, via_cli.attrs) == (via_api.grantee, via_api.types, via_api.attrs)
    code, out, err = await cli("grants", "list", "--tenant", tenant)
    assert code == 0, err
    assert {orjson.loads(line)["id"] for line in out} == {via_api.id, via_cli.id}
    code, out, err = await cli("grants", "revoke", made["id"])
    assert (code, out) == (0, [f"revoked {made['id']}"]), err
    revoked = await stored_grants.by_id(pool, made["id"])
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert [g.id for g in await stored_grants.active(pool, tenant, [other])] == [via_api.id]
    code, _, err = await cli("grants", "revoke", made["id"])
    assert code == 1, err
    assert "not revoked already" in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--to", "SAME", "--types", "WaterObserved"], "its own data"),
        (["--to", "bad tenant!", "--types", "WaterObserved"], "not valid"),
        (["--to", "ayagawa", "--types", " , "], "names nothing"),
    ],
)
async def test_a_bad_grant_is_refused_and_nothing_is_stored(
    pool: asyncpg.Pool, tenant: str, args: list[str], says: str
) -> None:
    args = [tenant if a == "SAME" else a for a in args]
    code, _, err = await cli("grants", "create", "--tenant", tenant, *args)
    assert code == 2, err
    assert says in err, err
    assert await stored_grants.of_tenant(pool, tenant) == []
