"""The HTTP southbound: webhooks of the network servers and the IoT Agents' HTTP bindings.

Each route only wraps the request as an Inbound, hands it to the pipeline and answers once the
message is committed (200), or dead-lettered (400 with the reason, so a gateway's log says what
is wrong). Gateways keep their payloads; only the URL changes:

    FIWARE IoT Agent JSON   POST /iot/json?k=<apikey>&i=<device>[&t=<time>]
                            POST /iot/json/commands?k=&i=  (a command's result)
    FIWARE IoT Agent UL 2.0 POST /iot/d?k=<apikey>&i=<device>[&t=<time>]
    The Things Stack v3     POST /adapters/tts            (webhook, "Uplink message" enabled)
    ChirpStack v4           POST /adapters/chirpstack     (HTTP integration; ?event=up, JSON marshaler)
    Sigfox backend          POST /adapters/sigfox/uplink  (URL callback, DATA/UPLINK or DATA/BIDIR)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from adapters import commands, sigfox
from adapters.keys import POOL, WRITER
from adapters.message import CHIRPSTACK, IOTA_JSON, IOTA_UL, SIGFOX, TTS, Family
from adapters.pipeline import ACCEPTED, REJECTED, Inbound, Pipeline, Verdict
from broker import edge
from broker.edge import keeps_nul
from broker.errors import BadRequestData, InternalError

PIPELINE = web.AppKey("device_pipeline", Pipeline)

# How long a webhook waits for its message to be committed before answering 503 (the network
# server retries; the frame counter makes the retry harmless).
_COMMIT_WAIT = 20.0
# Headers that name the tenant and service path; kept with a dead letter for its replay.
_KEPT_HEADERS = ("fiware-service", "fiware-servicepath", "ngsild-tenant")


class DeviceBacklog(InternalError):
    """The message is queued but not yet committed (the database is slow or away)."""

    title = "The message is queued but could not be stored in time; retry later"
    status = 503


async def _receive(request: web.Request, family: Family) -> Verdict:
    inbound = Inbound(
        family=family,
        origin=request.path_qs,
        body=await request.read(),
        received_at=datetime.now(UTC),
        headers={name: request.headers[name] for name in _KEPT_HEADERS if name in request.headers},
    )
    future = request.app[PIPELINE].submit(inbound)
    try:
        async with asyncio.timeout(_COMMIT_WAIT):
            verdict = await asyncio.shield(future)
    except TimeoutError:
        raise DeviceBacklog("the message is queued; it will be stored when the database allows") from None
    if verdict.status == REJECTED:
        raise BadRequestData(f"message stored as a dead letter: {verdict.reason}")
    return verdict


def _ok(verdict: Verdict) -> web.Response:
    body = {"status": verdict.status, "entities": list(verdict.entities)}
    return edge.json_reply(body)


# Each handler below is marked keeps_nul: a NUL in its query (k, i, t) is the message's fault,
# so the message is dead-lettered like any other it cannot take, not only refused.
@keeps_nul
async def iota_json(request: web.Request) -> web.Response:
    """IoT Agent JSON HTTP binding: measures of device ``i`` in service group ``k``."""
    return _ok(await _receive(request, IOTA_JSON))


@keeps_nul
async def iota_ultralight(request: web.Request) -> web.Response:
    """IoT Agent UltraLight 2.0 HTTP binding: ``t|15|h|45`` for device ``i`` in service group ``k``."""
    return _ok(await _receive(request, IOTA_UL))


@keeps_nul
async def tts_webhook(request: web.Request) -> web.Response:
    """The Things Stack v3 webhook: the uplink message JSON, as on MQTT."""
    return _ok(await _receive(request, TTS))


@keeps_nul
async def chirpstack_integration(request: web.Request) -> web.Response:
    """ChirpStack v4 HTTP integration: events other than ``up`` are acknowledged and ignored."""
    return _ok(await _receive(request, CHIRPSTACK))


@keeps_nul
async def sigfox_callback(request: web.Request) -> web.Response:
    """Sigfox backend URL callback; for a BIDIR callback the reply carries the downlink or is 204."""
    verdict = await _receive(request, SIGFOX)
    message = verdict.message
    if verdict.status != ACCEPTED or message is None or not message.wants_reply:
        return _ok(verdict)
    assert verdict.tenant is not None
    app = request.app
    downlink = await commands.take_sigfox_downlink(app[POOL], app[WRITER], verdict.tenant, message.device_id)
    status, body = sigfox.bidir_reply(message.device_id, downlink)
    return web.Response(status=status, body=body, content_type="application/json" if body else None)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/iot/json", iota_json)
    app.router.add_post("/iot/json/commands", iota_json)
    app.router.add_post("/iot/d", iota_ultralight)
    app.router.add_post("/adapters/tts", tts_webhook)
    app.router.add_post("/adapters/chirpstack", chirpstack_integration)
    app.router.add_post("/adapters/sigfox/uplink", sigfox_callback)
