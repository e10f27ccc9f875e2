"""Typed application state of the device side (aiohttp AppKeys), and what the broker gives it.

The device side imports nothing of broker.api, broker.config or the broker's store modules (a
test holds it to that, tests/unit/test_adapter_imports.py). What it needs of them the broker's
composition root (broker/app.py) hands over as a ``Host``, through adapters.wiring, which puts
the parts under these keys before the device contexts start: SETTINGS, POOL and WRITER for the
handlers, HOST for the wiring itself. DEVICES and DEAD_LETTERS are created by
adapters.provisioning.api.provisioning_context; REPLAYER by the pipeline's wiring (the dead-letter
replay handlers answer 501 while it is missing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import asyncpg
from aiohttp import web

from broker.ingest import Writer
from broker.jsonld.context import TermMap
from broker.store.pool import Connection
from broker.supervise import Supervisor

if TYPE_CHECKING:
    from adapters.deadletters import DeadLetters, Replayer
    from adapters.provisioning import Registry


class DeviceSettings(Protocol):
    """The settings the device side reads (the broker's Settings has them, read once at start)."""

    @property
    def max_page(self) -> int: ...
    @property
    def device_batch(self) -> int: ...
    @property
    def device_max_bytes(self) -> int: ...
    @property
    def pseudonym_secret(self) -> str: ...
    @property
    def mqtt_ingest(self) -> bool: ...
    @property
    def mqtt_url(self) -> str: ...
    @property
    def mqtt_client_id(self) -> str: ...
    @property
    def mqtt_share_group(self) -> str: ...
    @property
    def mqtt_families(self) -> tuple[str, ...]: ...
    @property
    def mqtt_topic_prefix(self) -> str: ...
    @property
    def max_json_depth(self) -> int: ...


# The compiled term map of a list of @context references (the broker's resolver, cached).
TermMaps = Callable[[list[str]], Awaitable[TermMap]]
# What a part reports on /health: a callable giving its counters (JSON-ready), called per request.
Report = Callable[[], object]
# Drops the redelivery keys of device frames older than a number of days; returns how many.
ForgetFrames = Callable[[Connection, int], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Host:
    """What the broker gives the device side: its settings, pool, write path and a few services."""

    settings: DeviceSettings
    pool: asyncpg.Pool
    writer: Writer
    term_maps: TermMaps
    # The /health registry: the device side adds its counters under "devices".
    status: dict[str, Report]
    forget_frames: ForgetFrames
    supervisor: Supervisor


HOST: web.AppKey[Host] = web.AppKey("device_host")
SETTINGS: web.AppKey[DeviceSettings] = web.AppKey("device_settings")
POOL = web.AppKey("device_pool", asyncpg.Pool)
WRITER = web.AppKey("device_writer", Writer)
DEVICES: web.AppKey[Registry] = web.AppKey("devices")
DEAD_LETTERS: web.AppKey[DeadLetters] = web.AppKey("dead_letters")
REPLAYER: web.AppKey[Replayer] = web.AppKey("replayer")
