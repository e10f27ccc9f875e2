"""Command line: ``python -m broker`` runs the broker; ``--help`` lists the settings.

With NGSI_WORKERS above 1 (default: one per CPU core) this process is worker 0 and starts the
others as child processes. Every worker serves the same HTTP port (SO_REUSEPORT: the kernel
spreads connections) and joins the same MQTT shared subscription with a client id of its own,
so the workers split both entrances and coordinate only through PostgreSQL (row locks, SKIP
LOCKED claims, advisory locks, LISTEN/NOTIFY). A child that dies is started again; the children
die with the parent (PR_SET_PDEATHSIG), so a killed broker never leaves a worker behind holding
the port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import asyncpg

from broker import __version__, admin_cli, logs, metrics, server
from broker.app import create_app
from broker.auth.model import NoOperatorKey
from broker.config import ConfigError, Settings, help_text, load

log = logging.getLogger("broker")

_WORKER_ENV = "HUB_WORKER_INDEX"
_PARENT_ENV = "HUB_WORKER_PARENT"
_PR_SET_PDEATHSIG = 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m broker",
        description="NGSI-LD context broker with built-in device adapters (city data hub).",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="{keys,grants}", help="without one: serve")
    admin_cli.add_parsers(commands)
    parsed = parser.parse_args(args)
    try:
        settings = load()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if parsed.command in admin_cli.COMMANDS:
        try:
            return asyncio.run(admin_cli.run(parsed, settings))
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"database error: {exc}", file=sys.stderr)
            return 3
    logs.configure(settings.log_level, settings.log_format)
    if not settings.metrics:
        metrics.switch_off()
    index = int(os.environ.get(_WORKER_ENV, "0"))
    count = settings.workers or os.cpu_count() or 1
    if index > 0:
        _die_with_parent()
        return _serve(worker_settings(settings, index, count), reuse_port=True)
    if count == 1:
        return _serve(worker_settings(settings, 0, 1), reuse_port=False)
    # The workers' metrics add up through files in a directory of this process's own.
    with metrics.multiprocess_dir() if settings.metrics else contextlib.nullcontext(""):
        supervisor = _Supervisor(count)
        supervisor.start()
        try:
            return _serve(worker_settings(settings, 0, count), reuse_port=True)
        finally:
            supervisor.stop()


def worker_settings(settings: Settings, index: int, count: int) -> Settings:
    """The settings of worker ``index`` of ``count``: its own MQTT client id (a session each)."""
    base = settings.mqtt_client_id or f"ngsi-hub-{socket.gethostname()}"
    client_id = f"{base}-{index}" if count > 1 or not settings.mqtt_client_id else base
    # Without a shared subscription every worker would receive every message: only one subscribes.
    ingest = settings.mqtt_ingest and (bool(settings.mqtt_share_group) or index == 0)
    return settings.replace(mqtt_client_id=client_id, mqtt_ingest=ingest)


def _serve(settings: Settings, *, reuse_port: bool) -> int:
    # Each request and device message allocates thousands of short-lived objects; with the
    # default threshold (700) the collector ran so often that it showed in every profile.
    # A/B on this machine: MQTT ingest ~1,050 -> ~1,580 msg/s, PATCH p99 46 -> 20 ms.
    gc.set_threshold(50_000, 50, 1000)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(_run(settings, reuse_port))
    except (OSError, asyncpg.PostgresError) as exc:
        log.error("cannot start: %s", exc)
        return 3
    except NoOperatorKey as exc:
        log.error("cannot start: %s", exc)
        return 2
    return 0


async def _run(settings: Settings, reuse_port: bool) -> None:
    """Serve until SIGTERM/SIGINT, then shut down in order (HTTP first, then the resources)."""
    app_runner = server.runner(create_app(settings), settings)
    await app_runner.setup()
    # What start-up built (routes, contexts, compiled schemas and subscriptions) lives as long as
    # the process: keep the collector from walking it again and again.
    gc.freeze()
    try:
        await server.start_sites(app_runner, settings, reuse_port=reuse_port)
        log.info("serving on http://%s:%d (pid %d)", settings.host, settings.port, os.getpid())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await app_runner.cleanup()


def _die_with_parent() -> None:
    """Linux: this worker receives SIGKILL when worker 0 dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # Worker 0 may have died while this process was still starting, before the line above.
    if os.getppid() != int(os.environ.get(_PARENT_ENV, "0")):
        os._exit(0)


class _Supervisor:
    """Starts workers 1..count-1 and starts again any that exits while the broker runs."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        for index in range(1, self._count):
            self._children[index] = self._spawn(index)
        self._thread.start()

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, _WORKER_ENV: str(index), _PARENT_ENV: str(os.getpid())}
        return subprocess.Popen([sys.executable, "-m", "broker"], env=env)

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for index, child in list(self._children.items()):
                code = child.poll()
                if code is not None and not self._stopping.is_set():
                    log.error("worker %d exited with %s; starting it again", index, code)
                    metrics.process_gone(child.pid)
                    time.sleep(1.0)
                    self._children[index] = self._spawn(index)

    def stop(self) -> None:
        self._stopping.set()
        for child in self._children.values():
            if child.poll() is None:
                child.terminate()
        for child in self._children.values():
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    sys.exit(main())
