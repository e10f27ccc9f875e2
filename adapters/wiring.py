"""The device side's composition root: its cleanup contexts, its routes, and how the parts connect.

broker/app.py (the broker's composition root) knows the device side through this module only: it
registers ``contexts(host)`` (what the broker gives the device side, a ``Host``; provisioning and
dead letters; then the pipeline) after its own resources and adds the device routes with
``add_routes``. ``device_adapters`` builds the pipeline from the parts (family parsers, codecs,
models, schemas, provisioning, dead letters), subscribes to the uplink topics of every family on
MQTT, and starts the command dispatcher. Nothing here decides anything about a message: it only
connects the parts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

import asyncpg
from aiohttp import web

from adapters import commands, iotagent, lorawan, sigfox
from adapters import http as device_http
from adapters.codecs import decode
from adapters.deadletters import DeadLetter, DeadLetters
from adapters.device import DeviceConfig, EntityUpdate, ModelName
from adapters.keys import (
    DEAD_LETTERS,
    DEVICES,
    HOST,
    POOL,
    REPLAYER,
    SETTINGS,
    WRITER,
    ForgetFrames,
    Host,
    TermMaps,
)
from adapters.message import (
    CHIRPSTACK,
    FAMILIES,
    IOTA_JSON,
    IOTA_UL,
    SIGFOX,
    TTS,
    DeviceMessage,
    Family,
    Rejected,
)
from adapters.models import common, generic, normalise_message
from adapters.mqtt import MqttIngest
from adapters.pipeline import ACCEPTED, REDACTED_HEADER, REJECTED, Inbound, Pipeline, Verdict
from adapters.provisioning import Registry
from adapters.provisioning import api as provisioning_api
from adapters.pseudonym import Pseudonymiser
from adapters.store import secrets as kept_secrets
from adapters.topics import Topics, family_of_topic
from adapters.validate import Validator
from broker.jsonld.context import TermMap

__all__ = ["Host", "add_routes", "contexts", "family_of_topic"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0
PSEUDONYM_SECRET = "pseudonym"  # its name in hub_secrets
MQTT = web.AppKey("device_mqtt", MqttIngest)
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
COMMANDS = web.AppKey("device_commands", commands.Dispatcher)
HOUSEKEEPING = "device-housekeeping"


def parse(inbound: Inbound, *, mqtt_families: Collection[Family] = FAMILIES) -> DeviceMessage | None:
    """The DeviceMessage in ``inbound``, read by its family's parser (None: nothing to store).

    A message from MQTT of a family not in ``mqtt_families`` (a legacy IoT Agent topic carries
    both JSON and UltraLight; the body tells them apart) is left alone: ignored, not stored.
    """
    family, origin, body, at = inbound.family, inbound.origin, inbound.body, inbound.received_at
    if family == TTS:
        return lorawan.parse_tts(origin, body, at)
    if family == CHIRPSTACK:
        return lorawan.parse_chirpstack(origin, body, at)
    if family == SIGFOX:
        return sigfox.parse(origin, body, at)
    message = iotagent.parse(origin, body, at, inbound.headers)
    if inbound.mqtt and message.family not in mqtt_families:
        return None
    return message


def with_measures(device: DeviceConfig, message: DeviceMessage) -> DeviceMessage:
    """The network's decoded payload when present, else the raw payload decoded with the device's codec."""
    if message.measures:
        return message
    if message.payload is None:
        raise Rejected("the message carries no measures")
    if device.codec is None:
        raise Rejected(
            "the network sent no decoded payload and the device has no codec "
            "(provision one: cayennelpp, layout, json, ultralight)"
        )
    return replace(message, measures=decode(device.codec, message.payload, device.layout))


class _Mapper:
    """Measures to entities: decode when needed, then the device's Smart Data Model.

    The models expand names with the bundled contexts themselves; a generic device naming a
    @context of its own (model parameter "context") has it resolved by the broker first.
    """

    def __init__(self, pseudonyms: Pseudonymiser, term_maps: TermMaps | None = None) -> None:
        self._pseudonyms = pseudonyms
        self._term_maps = term_maps

    async def __call__(self, device: DeviceConfig, message: DeviceMessage) -> list[EntityUpdate]:
        terms: common.Terms = common.bundled_terms
        own = generic.context(device)
        if device.model is None and not common.is_bundled(own):
            if self._term_maps is None:
                raise Rejected(f"device {device.device_id} names a @context that cannot be resolved here")
            resolved = await self._term_maps(list(own))

            def terms(context: tuple[str, ...]) -> TermMap:
                return resolved if context == own else common.bundled_terms(context)

        return normalise_message(device, with_measures(device, message), self._pseudonyms, terms)


class _Redactor:
    """Keeps raw watch-tag ids out of dead letters: bodies that may carry them are pseudonymised."""

    def __init__(self, pseudonyms: Pseudonymiser) -> None:
        self._pseudonyms = pseudonyms

    def __call__(self, device: DeviceConfig | None, inbound: Inbound) -> bytes:
        if device is not None and device.model != ModelName.BEACON_DETECTOR:
            return inbound.body
        if device is None and inbound.family not in (IOTA_JSON, IOTA_UL):
            return inbound.body
        tenant = device.tenant if device is not None else ""
        return self._pseudonyms.redact_body(tenant, inbound.body)


class _Replayer:
    """Runs a dead letter through the pipeline again; its outcome goes back on the letter."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def replay(self, letter: DeadLetter) -> str:
        if letter.headers.get(REDACTED_HEADER):
            return "not replayable: its watch-tag ids were replaced by pseudonyms before it was kept"
        if letter.family not in FAMILIES:
            return f"not replayable: {letter.family!r} is not a family this broker reads"
        inbound = Inbound(
            family=Family(letter.family),
            origin=letter.origin,
            body=letter.raw,
            received_at=letter.received_at,
            headers=letter.headers,
            replay=True,
        )
        verdict = await self._pipeline.replay(inbound)
        return ACCEPTED if verdict.status != REJECTED else (verdict.reason or REJECTED)


async def pseudonym_secret(pool: asyncpg.Pool, configured: str) -> bytes:
    """The configured secret, else the one generated at first start and kept in the database."""
    if configured:
        return configured.encode()
    async with pool.acquire() as conn:
        return await kept_secrets.kept(conn, PSEUDONYM_SECRET, secrets.token_bytes(32))


def default_client_id() -> str:
    return f"ngsi-hub-{socket.gethostname()}"


async def device_adapters(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the device pipeline, its MQTT subscriptions and the command dispatcher."""
    settings, pool, writer, host = app[SETTINGS], app[POOL], app[WRITER], app[HOST]
    supervisor = host.supervisor
    registry: Registry = app[DEVICES]
    pseudonyms = Pseudonymiser(await pseudonym_secret(pool, settings.pseudonym_secret))
    topics = Topics(settings.mqtt_families, settings.mqtt_topic_prefix)
    pipeline = Pipeline(
        writer,
        registry,
        partial(parse, mqtt_families=topics.families),
        _Mapper(pseudonyms, host.term_maps),
        Validator().check,
        app[DEAD_LETTERS],
        redact=_Redactor(pseudonyms),
        max_batch=settings.device_batch,
        max_bytes=settings.device_max_bytes,
        max_depth=settings.max_json_depth,
        owns=registry.owns,
        clock=supervisor.clock,
    )
    pipeline.start(supervisor)
    app[device_http.PIPELINE] = pipeline
    app[REPLAYER] = _Replayer(pipeline)
    writer.add_hook(commands.command_hook(registry))
    ingest = None
    if settings.mqtt_ingest and topics.filters:

        def receive(topic: str, body: bytes) -> asyncio.Future[Verdict]:
            usual = topics.usual_topic(topic)
            return pipeline.submit(Inbound(family_of_topic(usual), usual, body, _now(), mqtt=True))

        ingest = MqttIngest(
            settings.mqtt_url,
            settings.mqtt_client_id or default_client_id(),
            topics.filters,
            receive,
            share_group=settings.mqtt_share_group or None,
            backlog=lambda: pipeline.backlog,
            clock=supervisor.clock,
        )
        await ingest.start(supervisor)
        app[MQTT] = ingest
    tts_events = app[device_http.TTS_EVENTS]
    host.status["devices"] = lambda: _report(pipeline, ingest, tts_events)
    dispatcher = commands.Dispatcher(
        pool, writer, registry, ingest.publish if ingest else None, clock=supervisor.clock
    )
    await dispatcher.start(supervisor)
    app[COMMANDS] = dispatcher
    supervisor.spawn(HOUSEKEEPING, partial(_housekeeping, pool, app[DEAD_LETTERS], host.forget_frames))
    log.info("device adapters ready (MQTT ingest %s)", "on" if ingest else "off")
    yield
    await supervisor.cancel(HOUSEKEEPING)
    await dispatcher.stop()
    # A graceful stop: take no more messages, store what was taken and acknowledge it while the
    # MQTT connection is still open; what is left after the grace period is redelivered later.
    if ingest is not None:
        ingest.pause()
    if not await pipeline.drain(SHUTDOWN_GRACE_SECONDS):
        log.warning("device messages still being stored at shutdown; MQTT will redeliver them")
    if ingest is not None:
        await ingest.close()
    await pipeline.close()


# Redelivery keys must outlive the longest redelivery: a persistent MQTT session waits 7 days
# (deploy/mosquitto.conf persistent_client_expiration), network servers retry for minutes.
FRAME_KEEP_DAYS = 8
# Dead letters are for fixing a mapping and replaying; a month covers a holiday, not an archive.
DEAD_LETTER_KEEP_DAYS = 30


async def _housekeeping(pool: asyncpg.Pool, letters: DeadLetters, forget_frames: ForgetFrames) -> None:
    """Hourly: drop redelivery keys no network would redeliver any more (about a million a day
    for one town's plows) and dead letters past their month."""
    while True:
        try:
            async with pool.acquire() as conn:
                keys = await forget_frames(conn, FRAME_KEEP_DAYS)
            old = await letters.forget_before(DEAD_LETTER_KEEP_DAYS)
            if keys or old:
                log.info(
                    "forgot %d device frame keys (> %d days) and %d dead letters (> %d days)",
                    keys,
                    FRAME_KEEP_DAYS,
                    old,
                    DEAD_LETTER_KEEP_DAYS,
                )
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("device housekeeping failed (%s); next try in an hour", exc)
        await asyncio.sleep(3600)


def _report(pipeline: Pipeline, ingest: MqttIngest | None, tts_events: Counter[str]) -> dict[str, object]:
    """The device side's counters since this process started, for /health."""
    stats = pipeline.stats
    report: dict[str, object] = {
        "received": stats.received,
        "accepted": stats.accepted,
        "duplicates": stats.duplicates,
        "rejected": stats.rejected,
        "faults": stats.faults,
        "ignored": stats.ignored,
        # IoT Agent messages on MQTT for apikeys no tenant here has: another IoT Agent's.
        "foreign": stats.foreign,
        "backlog": pipeline.backlog,
        "batches": stats.batches,
        "largestBatch": stats.largest_batch,
        "databaseRetries": stats.retries,
        # TTS webhook messages other than uplinks (join, location, downlink-*), per type.
        "ttsEvents": dict(tts_events),
    }
    if ingest is not None:
        report["mqtt"] = {
            "connected": ingest.connected,
            "received": ingest.received,
            "acknowledged": ingest.acknowledged,
            "pausedForBacklog": ingest.paused_times,
        }
    return report


def _now() -> datetime:
    return datetime.now(UTC)


def contexts(host: Callable[[web.Application], Host]) -> list[CleanupContext]:
    """The device side's cleanup contexts, to run after the broker's: ``host(app)`` says what the
    broker gives it, then provisioning and dead letters open, then the pipeline."""

    async def given(app: web.Application) -> AsyncIterator[None]:
        found = host(app)
        app[HOST], app[SETTINGS], app[POOL], app[WRITER] = found, found.settings, found.pool, found.writer
        yield

    return [given, provisioning_api.provisioning_context, device_adapters]


def add_routes(app: web.Application) -> None:
    """The device side's routes: provisioning and dead letters, then the webhooks and HTTP bindings."""
    provisioning_api.add_routes(app)
    device_http.add_routes(app)
