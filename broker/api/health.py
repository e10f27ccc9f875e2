"""Liveness and readiness for orchestrators and the operator at 3 a.m."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from broker import __version__
from broker.api.keys import POOL, STATUS, SUPERVISOR

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP; with the counters of the parts that report them.

    Each worker process answers for itself (``pid``), e.g. ``devices``: messages received,
    accepted, duplicates, rejected (dead letters), the pipeline backlog and the MQTT connection.
    """
    body: dict[str, object] = {"status": "ok", "version": __version__, "pid": os.getpid()}
    for name, report in request.app[STATUS].items():
        body[name] = report()
    return web.json_response(body)


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Readiness: the database answers within two seconds and no supervised part is down.

    A 503 names each part that is down and why (``down``), so a load balancer takes the worker
    out and the operator sees which part to look at.
    """
    down = request.app[SUPERVISOR].problems()
    database = "ok"
    try:
        async with asyncio.timeout(2):
            await request.app[POOL].fetchval("SELECT 1")
    except Exception as exc:
        database = str(exc) or type(exc).__name__
        down["database"] = database
    if down:
        return web.json_response({"status": "unavailable", "database": database, "down": down}, status=503)
    return web.json_response({"status": "ready", "database": "ok"})
