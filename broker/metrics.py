"""The broker's Prometheus metrics, counted where things happen (one line at each edge).

Every metric is labelled, and every label takes values from a bounded set (a route's pattern,
never its raw path; a status; an adapter family; an outcome; a dead letter's kind), so the
number of series stays fixed however many entities, devices or tenants there are.

With several workers (NGSI_WORKERS above 1) the figures of all processes must add up:
worker 0 makes a directory, names it in PROMETHEUS_MULTIPROC_DIR for itself and the workers it
starts, and removes it when it stops (``multiprocess_dir``); each process then keeps its values
in memory-mapped files there (prometheus_client's multiprocess mode) and a scrape answered by
any worker reads them all. One process alone keeps them in this module's registry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds: requests answer in milliseconds, a slow query or a notification in seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NOTIFY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

HTTP_REQUESTS = Counter(
    "ngsi_http_requests",
    "HTTP requests answered, by method, route pattern and status code",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "ngsi_http_request_duration_seconds",
    "Time from receiving a request to its answer, by method and route pattern",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
WRITE_TRANSACTIONS = Counter(
    "ngsi_write_transactions",
    "Transactions the write path committed (group commit: one may carry several calls), by outcome",
    ["outcome"],
    registry=REGISTRY,
)
DEVICE_MESSAGES = Counter(
    "ngsi_device_messages",
    "Device messages by adapter family, transport (mqtt, http) and outcome "
    "(accepted = stored, rejected = dead-lettered, duplicate, ignored, foreign)",
    ["adapter", "transport", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "ngsi_dead_letters",
    "Device messages kept as dead letters, by adapter family and kind of reason",
    ["adapter", "reason"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "ngsi_notifications",
    "Notification attempts by endpoint scheme (http, mqtt) and outcome (sent, failed)",
    ["scheme", "outcome"],
    registry=REGISTRY,
)
NOTIFICATION_LATENCY = Histogram(
    "ngsi_notification_latency_seconds",
    "Time from the commit that queued a notification to its delivery, by endpoint scheme",
    ["scheme"],
    buckets=_NOTIFY_BUCKETS,
    registry=REGISTRY,
)
# Sampled per process (broker.api.metrics): with several workers the live processes' values add up.
DB_POOL = Gauge(
    "ngsi_db_pool_connections",
    "PostgreSQL connections of the broker's pools: open, in use and the maximum",
    ["state"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
MQTT_CONNECTED = Gauge(
    "ngsi_mqtt_connected",
    "Device ingest MQTT clients connected (per process 1 or 0; summed over the workers)",
    ["client"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
DEVICE_BACKLOG = Gauge(
    "ngsi_device_backlog",
    "Device messages received and not yet stored or dead-lettered",
    ["adapter"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)


class _Nothing:
    """A metric's value that keeps nothing (NGSI_METRICS=off): counting costs a call that returns."""

    _multiprocess = False

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        pass

    def inc(self, amount: float) -> None:
        pass

    def set(self, value: float, timestamp: float | None = None) -> None:
        pass

    def set_exemplar(self, exemplar: object) -> None:
        pass

    def get(self) -> float:
        return 0.0

    def get_exemplar(self) -> None:
        return None


def switch_off() -> None:
    """NGSI_METRICS=off: from now on every metric of this process counts nothing (see use_directory)."""
    values.ValueClass = _Nothing


# ------------------------------------------------------------------------------- counting, fast

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
M = TypeVar("M", Counter, Gauge, Histogram)
# The labelled children in use: labels() validates and locks on every call (~2 us), a dict
# lookup does not. Bounded as the label sets are.
_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: M, *labels: str) -> M:
    """``metric.labels(*labels)``, looked up once."""
    key = (id(metric), labels)
    found: M | None = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    """One HTTP request answered: counted under its route pattern and status, and timed."""
    method = method if method in _METHODS else "other"  # any token is a method to aiohttp
    child(HTTP_REQUESTS, method, route, str(status)).inc()
    child(HTTP_LATENCY, method, route).observe(seconds)


def write_transaction(outcome: str) -> None:
    """The write path committed (or failed) one transaction."""
    child(WRITE_TRANSACTIONS, outcome).inc()


def device_message(adapter: str, transport: str, outcome: str) -> None:
    """A device message's verdict."""
    child(DEVICE_MESSAGES, adapter, transport, outcome).inc()


def dead_letter(adapter: str, reason: str) -> None:
    """A device message kept as a dead letter, with the kind of its reason."""
    child(DEAD_LETTERS, adapter, reason).inc()


def multiprocess() -> bool:
    """Whether this process keeps its values in the shared directory (several workers)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def use_directory(directory: str) -> None:
    """Keep this process's values in ``directory`` from now on (and in the workers it starts).

    prometheus_client chooses where values live when it is imported (from the variable) and
    creates them when a metric's labels are first used: every metric here is labelled, so
    choosing before the first ``labels()`` call moves all of them.
    """
    os.environ[MULTIPROC_ENV] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


@contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A fresh directory for the workers' values while the broker runs, removed afterwards."""
    directory = tempfile.mkdtemp(prefix="ngsi-metrics-")
    use_directory(directory)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def process_gone(pid: int) -> None:
    """A worker exited: its live gauges no longer count (its counters still do)."""
    if multiprocess():
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    """The text format of every metric counted, of this process or of all workers."""
    if not multiprocess():
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def _scheme(uri: str) -> str:
    return "mqtt" if uri[:4].lower() == "mqtt" else "http"


def notification_sent(uri: str, queued: Sequence[datetime | None]) -> None:
    """A notification reached ``uri``: one attempt sent, and how long its rows waited since queued."""
    scheme = _scheme(uri)
    child(NOTIFICATIONS, scheme, "sent").inc()
    now = time.time()
    latency = child(NOTIFICATION_LATENCY, scheme)
    for at in queued:
        if at is not None:
            latency.observe(max(0.0, now - at.timestamp()))


def notification_failed(uri: str) -> None:
    """A notification to ``uri`` failed (it is retried later)."""
    child(NOTIFICATIONS, _scheme(uri), "failed").inc()
