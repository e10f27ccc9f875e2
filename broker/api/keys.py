"""Typed application state shared by the handlers."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from aiohttp import web

from broker.auth.grants import Grants
from broker.auth.keys import KeyRing
from broker.auth.oidc import TokenVerifier
from broker.config import Settings
from broker.federation.notifier import CSourceNotifier
from broker.federation.service import RegistrationService
from broker.federation.subscriptions import CSourceSubscriptions
from broker.forward.forwarder import Forwarder
from broker.ingest import Writer
from broker.jsonld.resolver import ContextResolver
from broker.notify.dispatcher import Notifier
from broker.notify.registry import SubscriptionRegistry
from broker.store.contexts import ContextStore
from broker.store.personal import PersonalData
from broker.store.tenants import Tenants
from broker.supervise import Supervisor

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
TENANTS = web.AppKey("tenants", Tenants)
WRITER = web.AppKey("writer", Writer)
RESOLVER = web.AppKey("resolver", ContextResolver)
CONTEXTS = web.AppKey("contexts", ContextStore)
REGISTRY = web.AppKey("registry", SubscriptionRegistry)
NOTIFIER = web.AppKey("notifier", Notifier)
FORWARDER = web.AppKey("forwarder", Forwarder)
# Every background task of the process runs under it; /ready reports what it says is down.
SUPERVISOR = web.AppKey("supervisor", Supervisor)
# The API keys (issue 12): made and checked whether authentication is on or off.
KEYS = web.AppKey("keys", KeyRing)
# Sharing grants between tenants and open data (issue 12).
GRANTS = web.AppKey("grants", Grants)
# Personal entity types per tenant and the audit log of their reads (issue 12 item 4).
PERSONAL = web.AppKey("personal", PersonalData)
# The OpenID Connect provider's tokens: set only when NGSI_OIDC_ISSUER is.
TOKENS = web.AppKey("tokens", TokenVerifier)
# What a part reports on /health: a callable giving its counters (JSON-ready), called per request.
Report = Callable[[], object]
# Parts that report counters on /health register a Report under their name (e.g. "devices").
STATUS = web.AppKey("status", dict[str, Report])
# Context source registrations, their subscriptions and the notifier of those (issue 14 items 1-2).
REGISTRATIONS = web.AppKey("registrations", RegistrationService)
CSOURCE_SUBSCRIPTIONS = web.AppKey("csource_subscriptions", CSourceSubscriptions)
CSOURCE_NOTIFIER = web.AppKey("csource_notifier", CSourceNotifier)
