"""The HTTP southbound: webhooks of the network servers and the IoT Agents' HTTP bindings.

Each route only wraps the request as an Inbound, hands it to the pipeline and answers once the
message is committed (200), or dead-lettered (400 with the reason, so a gateway's log says what
is wrong). Gateways keep their payloads; only the URL changes:

    FIWARE IoT Agent JSON   POST /iot/json?k=<apikey>&i=<device>[&t=<time>]
                            POST /iot/json/commands?k=&i=  (a command's result)
    FIWARE IoT Agent UL 2.0 POST /iot/d?k=<apikey>&i=<device>[&t=<time>]
    The Things Stack v3     POST /adapters/tts            (webhook, "Uplink message" enabled)
                            POST /adapters/tts/uplink     (the same, with a path per message type)
                            POST /adapters/tts/<type>     (join, location, service-data, downlink-*:
                                                          acknowledged and counted, not stored)
    ChirpStack v4           POST /adapters/chirpstack     (HTTP integration; ?event=up, JSON marshaler)
    Sigfox backend          POST /adapters/sigfox/uplink  (URL callback, DATA/UPLINK or DATA/BIDIR)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from aiohttp import web

from adapters import commands, sigfox
from adapters.keys import POOL, WRITER
from adapters.message import CHIRPSTACK, IOTA_JSON, IOTA_UL, SIGFOX, TTS, Family
from adapters.pipeline import ACCEPTED, IGNORED, REJECTED, Inbound, Pipeline, Verdict
from broker import edge
from broker.edge import keeps_nul
from broker.errors import BadRequestData, InternalError
from broker.logs import REQUEST_ID

PIPELINE = web.AppKey("device_pipeline", Pipeline)
# The Things Stack webhook messages other than uplinks, counted per type (on /health devices).
TTS_EVENTS: web.AppKey[Counter[str]] = web.AppKey("device_tts_events")

# The paths a TTS webhook appends to its base URL for the message types it may send besides
# uplinks (the webhook form's "join accept", "location solved", "downlink ack"... fields): the
# operator may enable them; the hub has nothing to store of them, so they are acknowledged.
TTS_EVENT_PATHS = (
    "join",
    "location",
    "service-data",
    "downlink-ack",
    "downlink-nack",
    "downlink-sent",
    "downlink-failed",
    "downlink-queued",
    "downlink-queue-invalidated",
)

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
        request_id=REQUEST_ID.get(),
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


async def tts_event(request: web.Request) -> web.Response:
    """A TTS webhook message other than an uplink (its path says which): acknowledged, counted."""
    await request.read()
    request.app[TTS_EVENTS][request.path.rsplit("/", 1)[-1]] += 1
    return edge.json_reply({"status": IGNORED, "entities": []})


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
    app.router.add_post("/adapters/tts/uplink", tts_webhook)
    app[TTS_EVENTS] = Counter()
    for event in TTS_EVENT_PATHS:
        app.router.add_post(f"/adapters/tts/{event}", tts_event)
    app.router.add_post("/adapters/chirpstack", chirpstack_integration)
    app.router.add_post("/adapters/sigfox/uplink", sigfox_callback)
