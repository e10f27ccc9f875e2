"""The broker as operators run it: a real process, killed and restarted, two starting at once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import aiohttp
import asyncpg
import pytest

from tests.conftest import database_url

READY_TIMEOUT = 60.0  # generous: CI machines may be busy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_search_path(dsn: str, schema: str) -> str:
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}search_path={schema},public"


@contextmanager
def broker_process(
    port: int, dsn: str, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A broker process; its MQTT ingest is off unless ``extra_env`` turns it on with a session of its own."""
    env = {
        **os.environ,
        "NGSI_PORT": str(port),
        "NGSI_HOST": "127.0.0.1",
        "DATABASE_URL": dsn,
        "NGSI_MQTT_INGEST": "false",
        # The tests' notification receivers listen on 127.0.0.1.
        "NGSI_NOTIFY_ALLOW_PRIVATE": "true",
        **(extra_env or {}),
    }
    # A file, not a pipe: nobody reads the log while the test runs, and a full pipe would stop
    # the broker (and its workers, which share it) at its next log line.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "broker"], env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


async def wait_ready(session: aiohttp.ClientSession, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
    while asyncio.get_running_loop().time() < deadline:
        assert process.poll() is None, "the broker process exited during start-up"
        try:
            async with session.get(f"http://127.0.0.1:{port}/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail(f"broker on port {port} not ready after {READY_TIMEOUT} s")


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A new empty schema, so migrations run from scratch (PostGIS stays in public)."""
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(database_url())
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


def test_help_lists_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "broker", "--help"], capture_output=True, text=True, check=True, timeout=30
    )
    for name in ("NGSI_PORT", "DATABASE_URL", "MQTT_URL", "NGSI_MAX_BODY_BYTES", "NGSI_MAX_BATCH"):
        assert name in result.stdout


def test_a_bad_setting_stops_the_broker_with_a_clear_message() -> None:
    env = {**os.environ, "NGSI_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "broker"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "NGSI_PORT" in result.stderr


async def test_entities_survive_a_sigkill_and_restart() -> None:
    port = free_port()
    entity_id = f"urn:ngsi-ld:Vehicle:{uuid.uuid4().hex[:8]}"
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    headers = {"NGSILD-Tenant": tenant}
    async with aiohttp.ClientSession() as session:
        with broker_process(port, database_url()) as first:
            await wait_ready(session, port, first)
            body = {"id": entity_id, "type": "Vehicle", "speed": {"type": "Property", "value": 21.5}}
            async with session.post(
                f"http://127.0.0.1:{port}/ngsi-ld/v1/entities", json=body, headers=headers
            ) as response:
                assert response.status == 201
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        with broker_process(port, database_url()) as second:
            await wait_ready(session, port, second)
            url = f"http://127.0.0.1:{port}/ngsi-ld/v1/entities/{entity_id}"
            async with session.get(url, headers=headers) as response:
                assert response.status == 200
                stored = await response.json()
    assert stored["speed"]["value"] == 21.5


async def test_two_processes_starting_at_once_migrate_a_new_database_once() -> None:
    async with fresh_schema() as schema, aiohttp.ClientSession() as session:
        dsn = with_search_path(database_url(), schema)
        ports = [free_port(), free_port()]
        with broker_process(ports[0], dsn) as one, broker_process(ports[1], dsn) as two:
            await asyncio.gather(wait_ready(session, ports[0], one), wait_ready(session, ports[1], two))
        conn = await asyncpg.connect(dsn)
        try:
            applied = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            tables = await conn.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'entities'",
                schema,
            )
        finally:
            await conn.close()
    from broker.store.migrate import migration_files

    assert [row["version"] for row in applied] == [version for version, _, _ in migration_files()]
    assert tables == 1


def test_an_unreachable_database_stops_the_broker_with_a_clear_message() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://ngsi:ngsi@127.0.0.1:1/nowhere",
        "NGSI_DB_CONNECT_TIMEOUT": "1",
        "NGSI_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "broker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert "cannot start" in result.stderr
    assert "database not reachable yet" in result.stderr


async def worker_pids(
    session: aiohttp.ClientSession, port: int, wanted: int, within: float = 60.0
) -> set[int]:
    """The pids answering /health on ``port`` (new connection each time), until ``wanted`` are seen."""
    seen: set[int] = set()
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline and len(seen) < wanted:
        try:
            async with session.get(f"http://127.0.0.1:{port}/health", headers={"Connection": "close"}) as r:
                seen.add((await r.json())["pid"])
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.02)
    return seen


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_workers_share_the_port_a_dead_worker_is_restarted_and_all_die_with_worker_zero() -> None:
    port = free_port()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        with broker_process(port, database_url(), {"NGSI_WORKERS": "2"}) as parent:
            await wait_ready(session, port, parent)
            pids = await worker_pids(session, port, 2)
            assert parent.pid in pids
            assert len(pids) == 2, "the second worker never answered on the shared port"
            (child,) = pids - {parent.pid}

            os.kill(child, signal.SIGKILL)
            replacement = await worker_pids(session, port, 3, within=60.0)
            assert len(replacement - {parent.pid, child}) == 1, "the killed worker was not started again"
            (second_child,) = replacement - {parent.pid, child}

            parent.send_signal(signal.SIGKILL)
            parent.wait(timeout=10)
            for _ in range(50):
                if not alive(second_child):
                    break
                await asyncio.sleep(0.1)
            assert not alive(second_child), "a worker outlived worker 0"


async def test_the_iot_agent_ports_serve_the_provisioning_api_too() -> None:
    port, iota_port = free_port(), free_port()
    async with aiohttp.ClientSession() as session:
        env = {"NGSI_WORKERS": "1", "NGSI_IOTA_PORTS": str(iota_port)}
        with broker_process(port, database_url(), env) as broker:
            await wait_ready(session, port, broker)
            url = f"http://127.0.0.1:{iota_port}/iot/devices"
            async with session.get(
                url, headers={"fiware-service": f"e2e-{uuid.uuid4().hex[:8]}"}
            ) as response:
                assert response.status == 200
                listed = await response.json()
    assert listed == {"count": 0, "devices": []}
