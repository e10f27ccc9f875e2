"""Typed application state of the device adapters (aiohttp AppKeys), next to broker.api.keys.

The values are created by adapters.provisioning.api.provisioning_context, except REPLAYER, which
the pipeline's wiring sets (the dead-letter replay handlers answer 501 while it is missing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from adapters.deadletters import DeadLetters, Replayer
    from adapters.provisioning import Registry

DEVICES: web.AppKey[Registry] = web.AppKey("devices")
DEAD_LETTERS: web.AppKey[DeadLetters] = web.AppKey("dead_letters")
REPLAYER: web.AppKey[Replayer] = web.AppKey("replayer")
