"""Liveness and readiness for orchestrators and the operator at 3 a.m."""

from __future__ import annotations

import asyncio

from aiohttp import web

from broker import __version__
from broker.api.keys import POOL

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP."""
    return web.json_response({"status": "ok", "version": __version__})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Readiness: the database answers within two seconds."""
    try:
        async with asyncio.timeout(2):
            await request.app[POOL].fetchval("SELECT 1")
    except Exception as exc:
        return web.json_response(
            {"status": "unavailable", "database": str(exc) or type(exc).__name__}, status=503
        )
    return web.json_response({"status": "ready", "database": "ok"})
