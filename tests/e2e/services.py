"""Services an e2e fault test owns: a whole PostgreSQL cluster and a Mosquitto it may restart.

The shared PostgreSQL and Mosquitto of the machine serve every other test (and other helpers'
runs), so a test that stops a server must own it: ``OwnedPostgres`` is a cluster of its own made
by initdb in a temporary directory, ``OwnedMosquitto`` a Mosquitto with its own port, config and
persistence directory. Both listen on 127.0.0.1 only, on a free port.

PostgreSQL refuses to run as root and Mosquitto drops from root to its ``mosquitto`` user, so
when the tests run as root the data directories belong to those users and the PostgreSQL tools
run through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("NGSI_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT = 60.0  # generous: the machine is small and busy
PG_USER = "ngsi"
PG_DATABASE = "ngsi"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_root() -> bool:
    return os.geteuid() == 0


def _give_to(path: Path, user: str) -> None:
    """Make ``path`` (a directory this process created) belong to ``user`` when running as root."""
    if _as_root():
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class OwnedPostgres:
    """A PostgreSQL 15 cluster in a temporary directory, with the role and PostGIS database the broker uses."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()

    @property
    def dsn(self) -> str:
        return f"postgresql://{PG_USER}:{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if _as_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> None:
        """initdb, a loopback-only configuration, start, then the ngsi role and its PostGIS database."""
        _give_to(self.root, "postgres")
        # trust on loopback only: the cluster lives for one test module and listens on 127.0.0.1.
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "100",
            # A clean restart (-m fast) checkpoints anyway; the data survive without fsync, faster here.
            "fsync": "off",
            "shared_buffers": "32MB",
            "logging_collector": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.start()
        self._psql("postgres", f"CREATE ROLE {PG_USER} LOGIN SUPERUSER PASSWORD '{PG_USER}'")
        self._psql("postgres", f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}")
        self._psql(PG_DATABASE, "CREATE EXTENSION IF NOT EXISTS postgis")

    def _psql(self, database: str, sql: str) -> None:
        self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql
        )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """The whole server down and up again: every connection is closed, new ones are refused meanwhile."""
        self.stop()
        self.start()

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and _accepts(self.port)


class OwnedMosquitto:
    """A Mosquitto with persistence in a temporary directory, so queued QoS 1 messages survive a restart."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.conf = root / "mosquitto.conf"
        self.log = root / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_conf(self) -> None:
        _give_to(self.root, "mosquitto")
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.root}/\n"
            "autosave_interval 1\n"
            # Far above the few hundred messages a test queues for an absent consumer.
            "max_queued_messages 100000\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        # In the foreground, so this object holds its pid; it logs to its file, not to a pipe.
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto not accepting on {self.port}: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, so Mosquitto writes its persistence file (sessions and queued messages) first."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _missing(*binaries: str) -> str | None:
    absent = [name for name in binaries if not (Path(name).exists() or shutil.which(name))]
    return f"not installed: {', '.join(absent)} (deploy/setup.sh installs them)" if absent else None


def _workdir(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o700)
    return root


@pytest.fixture(scope="module")
def owned_postgres() -> Iterator[OwnedPostgres]:
    """A PostgreSQL cluster of this module's own, which its tests may stop and restart."""
    why = _missing(str(PG_BIN / "initdb"), str(PG_BIN / "pg_ctl"), str(PG_BIN / "psql"))
    if why is None and _as_root() and shutil.which("runuser") is None:
        why = "running as root without runuser, and PostgreSQL refuses to run as root"
    if why:
        pytest.skip(why)
    root = _workdir("ngsi-e2e-pg-")
    cluster = OwnedPostgres(root)
    try:
        cluster.init()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster._run("pg_ctl", "-D", str(cluster.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def owned_mosquitto() -> Iterator[OwnedMosquitto]:
    """A Mosquitto of this module's own, with persistence, which its tests may restart."""
    why = _missing(MOSQUITTO)
    if why:
        pytest.skip(why)
    root = _workdir("ngsi-e2e-mqtt-")
    server = OwnedMosquitto(root)
    server.write_conf()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
