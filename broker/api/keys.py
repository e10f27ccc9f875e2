"""Typed application state shared by the handlers."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from broker.config import Settings
from broker.ingest import Writer
from broker.jsonld.resolver import ContextResolver
from broker.store.contexts import ContextStore
from broker.store.tenants import Tenants

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
TENANTS = web.AppKey("tenants", Tenants)
WRITER = web.AppKey("writer", Writer)
RESOLVER = web.AppKey("resolver", ContextResolver)
CONTEXTS = web.AppKey("contexts", ContextStore)
