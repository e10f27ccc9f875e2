"""What an operator sees of the requests: request ids, the access log, Prometheus metrics at /metrics.

Every request gets a request id (its X-Request-Id when sane, else a new one), returned in the
answer's X-Request-Id and set for everything done while serving it: its log lines, and the
notifications its changes cause (broker.ingest carries it into the outbox rows). HTTP requests
are counted and timed per route pattern (``/ngsi-ld/v1/entities/{entity_id}``, never the raw
path) and status. /metrics adds, at each scrape, what only the database knows (outbox depth
and age, history size; cached for a few seconds) and this process's pool and MQTT state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker import metrics
from broker.api.keys import POOL, SETTINGS, STATUS, SUPERVISOR
from broker.clock import Clock
from broker.logs import REQUEST_ID, TENANT, request_id_from
from broker.store import gauges

log = logging.getLogger(__name__)
access_log = logging.getLogger("broker.access")

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_KEY = web.RequestKey("request_id", str)
SAMPLER = "metrics-sampler"
# Seconds between two samples of this process's pool and MQTT state, and how long the
# database's figures are reused by scrapes (several Prometheus servers, a dashboard).
SAMPLE_SECONDS = 5.0
DB_CACHE_SECONDS = 5.0
_UNMATCHED = "unmatched"
_TENANT_SHOWN = 64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
routes = web.RouteTableDef()


def observe_middleware(*, count: bool, log_access: bool) -> Any:
    """The outermost middleware: request id and tenant for the request's context, then (``count``)
    its count and latency per route pattern, and (``log_access``) its access log line (INFO,
    shown whatever NGSI_LOG_LEVEL says: switching it on is asking for it)."""
    if log_access:
        access_log.setLevel(logging.INFO)

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request[REQUEST_ID_KEY] = request_id
        REQUEST_ID.set(request_id)
        TENANT.set(request.headers.get("NGSILD-Tenant", "")[:_TENANT_SHOWN] or None)
        if not count and not log_access:
            return await handler(request)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            if count:
                metrics.http_request(request.method, _route(request), status, elapsed)
            if log_access:
                access_log.info("%s %s %d %.1f ms", request.method, request.path_qs, status, elapsed * 1000)

    return observe


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else _UNMATCHED


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer names its request id (streamed ones too)."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id


# ------------------------------------------------------------------------------------------ /metrics


class _DatabaseFigures:
    """The database's figures, read at most every DB_CACHE_SECONDS."""

    def __init__(self) -> None:
        self._figures: gauges.Figures | None = None
        self._read_at = float("-inf")

    async def get(self, request: web.Request) -> gauges.Figures | None:
        now = time.monotonic()
        if now - self._read_at >= DB_CACHE_SECONDS:
            try:
                self._figures = await gauges.read(request.app[POOL])
            except Exception as exc:  # the database away: the rest of the metrics still answer
                log.warning("database figures not read for /metrics: %s", exc)
                self._figures = None
            self._read_at = now
        return self._figures


_DB = web.AppKey("metrics_db_figures", _DatabaseFigures)


class _Snapshot(Collector):
    """The database's figures as gauge families (one scrape's, collected once)."""

    def __init__(self, figures: gauges.Figures) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self._figures
        yield GaugeMetricFamily(
            "ngsi_outbox_rows", "Notification rows queued in the outbox", value=f.outbox_depth
        )
        yield GaugeMetricFamily(
            "ngsi_outbox_oldest_seconds", "Age of the oldest queued notification row", value=f.outbox_oldest
        )
        depth = GaugeMetricFamily(
            "ngsi_outbox_subscription_rows",
            f"Rows queued for the {gauges.TOP_SUBSCRIPTIONS} subscriptions with the most",
            labels=["tenant", "subscription"],
        )
        oldest = GaugeMetricFamily(
            "ngsi_outbox_subscription_oldest_seconds",
            f"Age of the oldest row queued, for the {gauges.TOP_SUBSCRIPTIONS} deepest subscriptions",
            labels=["tenant", "subscription"],
        )
        for backlog in f.deepest:
            depth.add_metric([backlog.tenant, backlog.subscription_id], backlog.depth)
            oldest.add_metric([backlog.tenant, backlog.subscription_id], backlog.oldest)
        yield depth
        yield oldest
        yield GaugeMetricFamily(
            "ngsi_history_rows", "Attribute history rows (PostgreSQL's estimate)", value=f.history_rows
        )


def sample(app: web.Application) -> None:
    """Set this process's gauges: pool connections, the device ingest's MQTT state and backlog."""
    pool = app.get(POOL)
    if pool is not None:
        size, idle = pool.get_size(), pool.get_idle_size()
        metrics.child(metrics.DB_POOL, "open").set(size)
        metrics.child(metrics.DB_POOL, "in_use").set(size - idle)
        metrics.child(metrics.DB_POOL, "max").set(pool.get_max_size())
    report = app[STATUS].get("devices")
    devices = report() if report is not None else None
    if isinstance(devices, dict):
        metrics.child(metrics.DEVICE_BACKLOG, "pipeline").set(devices.get("backlog", 0))
        mqtt = devices.get("mqtt")
        metrics.child(metrics.MQTT_CONNECTED, "ingest").set(
            1 if isinstance(mqtt, dict) and mqtt.get("connected") else 0
        )


@routes.get("/metrics")
async def scrape(request: web.Request) -> web.Response:
    """Prometheus metrics (text format 0.0.4) of every worker; an operations endpoint, not part of
    ETSI GS CIM 009 V1.9.1 (like /health and /ready)."""
    sample(request.app)
    body = metrics.exposition()
    figures = await request.app[_DB].get(request)
    if figures is not None:
        registry = CollectorRegistry()
        registry.register(_Snapshot(figures))
        body += generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def sampler(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def sampling(app: web.Application) -> AsyncIterator[None]:
        """This process's gauges sampled on a timer (a scrape may be answered by another worker)."""
        app[_DB] = _DatabaseFigures()

        async def run() -> None:
            while True:
                sample(app)
                await clock.sleep(SAMPLE_SECONDS)

        if app[SETTINGS].metrics:
            app[SUPERVISOR].spawn(SAMPLER, run)
        yield
        if app[SETTINGS].metrics:
            await app[SUPERVISOR].cancel(SAMPLER)

    return sampling
