"""What every benchmark needs: a schema of its own, a broker process, a private Mosquitto, percentiles, RSS.

Benchmarks run the broker as a subprocess on loopback against a fresh schema of the bench
database (BENCH_DATABASE_URL, else DATABASE_URL, else the local ``ngsi_bench`` database) and
drop it at the end, so nothing they write outlives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DB = "postgresql://ngsi:ngsi@127.0.0.1:5432/ngsi_bench"


def bench_dsn() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_DB


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema},public"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 of ``samples`` (0s when there are too few to cut)."""
    if len(samples) < 2:
        return (samples[0],) * 3 if samples else (0.0, 0.0, 0.0)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


@contextlib.asynccontextmanager
async def bench_schema(prefix: str, keep: bool = False) -> AsyncIterator[tuple[asyncpg.Connection, str, str]]:
    """A fresh schema: yields (admin connection, schema name, DSN whose search_path is the schema)."""
    base = bench_dsn()
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield admin, schema, with_schema(base, schema)
    finally:
        if not keep:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@dataclass
class Broker:
    """A running ``python -m broker`` (its workers are its children when NGSI_WORKERS > 1)."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> list[float]:
        """Resident memory of the broker and each of its child processes, in MB."""
        return [rss_mb(pid) for pid in [self.process.pid, *children(self.process.pid)]]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the broker and its child processes have used so far."""
        return sum(cpu_seconds(pid) for pid in [self.process.pid, *children(self.process.pid)])


@contextlib.asynccontextmanager
async def broker(dsn: str, workers: int = 1, **env: str) -> AsyncIterator[Broker]:
    """Start a broker process on a free loopback port and wait until it is ready; stop it after."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": dsn,
        "NGSI_PORT": str(port),
        "NGSI_HOST": "127.0.0.1",
        "NGSI_LOG_LEVEL": "WARNING",
        "NGSI_WORKERS": str(workers),
        "NGSI_MQTT_INGEST": "false",
        # The benchmarks' notification receivers listen on 127.0.0.1.
        "NGSI_NOTIFY_ALLOW_PRIVATE": "true",
        **env,
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "broker", env=environment, cwd=ROOT)
    running = Broker(process, port)
    try:
        await wait_ready(running)
        yield running
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_ready(running: Broker, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if running.process.returncode is not None:
                raise RuntimeError(f"the broker exited with {running.process.returncode}")
            try:
                async with session.get(f"{running.base}/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the broker did not become ready")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        # Fields after the command (which may hold spaces, in parentheses): utime is the 14th field.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


_MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
log_dest file {log}
log_type error
log_type warning
log_type notice
sys_interval 1
max_queued_messages 2000000
max_queued_bytes 0
max_inflight_messages 1000
"""


@dataclass
class Mosquitto:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def dropped_lines(self) -> int:
        """Lines in which Mosquitto says it dropped messages."""
        try:
            return sum("dropped" in line.lower() for line in self.log.read_text().splitlines())
        except OSError:
            return 0


@contextlib.contextmanager
def mosquitto() -> Iterator[Mosquitto]:
    """A private Mosquitto on a free loopback port, configured like deploy/mosquitto.conf's queues."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    folder = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    folder.chmod(0o777)
    port = free_port()
    log = folder / "mosquitto.log"
    log.touch()
    log.chmod(0o666)
    conf = folder / "mosquitto.conf"
    conf.write_text(_MOSQUITTO_CONF.format(port=port, log=log))
    process = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start; see {log}")
            time.sleep(0.05)
        yield Mosquitto(port, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
