"""Wiring only: the application, its routes, middleware and the resources it holds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from adapters import wiring as devices
from broker import dashboard
from broker.api import (
    apikeys,
    batch,
    contexts,
    csource_subscriptions,
    discovery,
    entities,
    forwarding,
    grants,
    health,
    info,
    observe,
    personal,
    query,
    registrations,
    retention,
    subscriptions,
    temporal,
    temporal_provision,
    unsupported,
)
from broker.api.keys import (
    CONTEXTS,
    CSOURCE_NOTIFIER,
    CSOURCE_SUBSCRIPTIONS,
    FORWARDER,
    GRANTS,
    KEYS,
    NOTIFIER,
    PERSONAL,
    POOL,
    REGISTRATIONS,
    REGISTRY,
    RESOLVER,
    SETTINGS,
    STATUS,
    SUPERVISOR,
    TENANTS,
    TOKENS,
    WRITER,
)
from broker.api.parameters import refuse_unknown_parameters
from broker.api.request import keep_inline_contexts_if_served, refuse_nul
from broker.auth.grants import Grants
from broker.auth.keys import KeyRing
from broker.auth.middleware import auth_middleware
from broker.auth.model import NoOperatorKey
from broker.auth.oidc import FileJwks, JwksSource, OidcConfig, TokenVerifier, UrlJwks
from broker.auth.ratelimit import RateLimiter
from broker.clock import SYSTEM, Clock
from broker.config import Settings
from broker.errors import error_middleware
from broker.federation.notifier import CSourceNotifier
from broker.federation.service import RegistrationService
from broker.federation.subscriptions import CSourceSubscriptions
from broker.forward.changes import forward_hook
from broker.forward.forwarder import Forwarder
from broker.forward.target import Target, forward_policy
from broker.ingest import Writer
from broker.jsonld.fetch import ContextFetcher, context_policy
from broker.jsonld.resolver import ContextResolver
from broker.netguard import GuardedResolver
from broker.notify.dispatcher import Notifier
from broker.notify.endpoints import notify_policy, own_listeners
from broker.notify.registry import SubscriptionRegistry
from broker.query.duration import parse_keep
from broker.store import apikeys as stored_keys
from broker.store import create_pool, frames, migrate
from broker.store.contexts import ContextStore
from broker.store.personal import PersonalData
from broker.store.tenants import Tenants
from broker.store.type_counts import COMPACTOR, Compactor
from broker.supervise import Supervisor
from broker.temporal.maintenance import HistoryMaintenance

log = logging.getLogger(__name__)

HISTORY_MAINTENANCE = "history-maintenance"
# How long shutdown waits for the pool's connections to be given back before closing them.
POOL_CLOSE_SECONDS = 10.0


def _supervision(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def supervision(app: web.Application) -> AsyncIterator[None]:
        """The supervisor of the process's background tasks: first up, last down."""
        supervisor = Supervisor(clock)
        app[SUPERVISOR] = supervisor
        app[STATUS]["components"] = supervisor.report
        yield
        await supervisor.stop()

    return supervision


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        connect_timeout=settings.db_connect_timeout,
    )
    await migrate(pool)
    app[POOL] = pool
    app[TENANTS] = Tenants()
    app[CONTEXTS] = ContextStore(pool, settings.base_url)
    yield
    try:
        # Every request has been answered by now; a connection still held (a LISTEN being
        # re-established, a stuck delivery) must not keep the process from exiting.
        await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
    except TimeoutError:
        log.warning("database pool not closed within %g s: terminating its connections", POOL_CLOSE_SECONDS)
        pool.terminate()


async def _context_resolver(app: web.Application) -> AsyncIterator[None]:
    """@contexts: the tenant's stored ones, else fetched (unless offline) under the address rule."""
    settings = app[SETTINGS]
    fetcher = None
    if settings.context_allow_fetch:
        fetcher = ContextFetcher(
            timeout=settings.context_fetch_timeout,
            max_bytes=settings.context_max_bytes,
            policy=context_policy(allow_private=settings.context_allow_private),
        )
    app[RESOLVER] = ContextResolver(app[CONTEXTS], fetcher, max_json_depth=settings.max_json_depth)
    yield
    if fetcher is not None:
        await fetcher.close()


async def _subscriptions(app: web.Application) -> AsyncIterator[None]:
    """Compiled subscriptions (kept coherent across processes), the write path that matches them."""
    registry = SubscriptionRegistry(app[POOL], app[RESOLVER])
    await registry.start(app[SUPERVISOR])
    app[REGISTRY] = registry
    settings = app[SETTINGS]
    writer = Writer(
        app[POOL],
        app[TENANTS],
        registry.for_tenant,
        record_history=settings.history,
        max_instances=settings.max_instances,
    )
    app[WRITER] = writer
    app[STATUS]["writes"] = lambda: {"transactions": writer.transactions, "calls": writer.calls}
    yield
    await registry.stop()


async def _notifier(app: web.Application) -> AsyncIterator[None]:
    """The dispatcher of notifications, its loop and LISTEN supervised."""
    settings = app[SETTINGS]
    notifier = Notifier(
        app[POOL],
        app[REGISTRY],
        http_timeout=settings.notify_timeout,
        max_concurrent=settings.notify_concurrency,
        policy=notify_policy(
            allow_private=settings.notify_allow_private,
            allow=settings.notify_allow,
            own=own_listeners(
                settings.host, (settings.port, *settings.iota_ports), (settings.mqtt_url, settings.public_url)
            ),
        ),
    )
    await notifier.start(app[SUPERVISOR])
    app[NOTIFIER] = notifier
    app[STATUS]["notifier"] = notifier.report
    yield
    await notifier.stop()


def _federation(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def federation(app: web.Application) -> AsyncIterator[None]:
        """Context source registrations, their subscriptions, and the notifier of those (supervised)."""
        service = RegistrationService(app[POOL], app[TENANTS], app[RESOLVER])
        app[REGISTRATIONS] = service
        app[CSOURCE_SUBSCRIPTIONS] = CSourceSubscriptions(app[POOL], app[TENANTS], service)
        notifier = CSourceNotifier(
            app[POOL], service, app[NOTIFIER].guard, clock=clock, http_timeout=app[SETTINGS].notify_timeout
        )
        await notifier.start(app[SUPERVISOR])
        app[CSOURCE_NOTIFIER] = notifier
        app[STATUS]["csourceNotifier"] = notifier.report
        yield
        await notifier.stop()

    return federation


async def _history(app: web.Application) -> AsyncIterator[None]:
    """History partitions created ahead, and the retention purge, on a timer."""
    settings = app[SETTINGS]
    maintenance = HistoryMaintenance(
        app[POOL],
        days_ahead=settings.history_days_ahead,
        keep=parse_keep(settings.history_keep),
        interval=settings.retention_interval,
        audit_keep=parse_keep(settings.audit_keep),
    )
    await maintenance.prepare()
    app[SUPERVISOR].spawn(HISTORY_MAINTENANCE, maintenance.run)
    yield
    await app[SUPERVISOR].cancel(HISTORY_MAINTENANCE)


async def _type_counts(app: web.Application) -> AsyncIterator[None]:
    """The compactor of the per-type entity counters (count=true over a whole type)."""
    app[SUPERVISOR].spawn(COMPACTOR, Compactor(app[POOL], clock=app[SUPERVISOR].clock).run)
    yield
    await app[SUPERVISOR].cancel(COMPACTOR)


def _forwarding(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def adapter_mode(app: web.Application) -> AsyncIterator[None]:
        """Adapter mode (NGSI_FORWARD_URL): changes queued in their write transaction, and the
        supervised forwarder that sends them to the external broker."""
        settings = app[SETTINGS]
        if not settings.forward_url:
            yield
            return
        own = own_listeners(
            settings.host, (settings.port, *settings.iota_ports), (settings.mqtt_url, settings.public_url)
        )
        dns = aiohttp.ThreadedResolver()
        guard = GuardedResolver(dns, forward_policy(allow_private=settings.forward_allow_private, own=own))
        await guard.policy.learn_listeners(dns)
        target = Target(
            settings.forward_url,
            guard,
            token=settings.forward_token,
            tenant_map=dict(settings.forward_tenant_map),
            timeout=settings.forward_timeout,
        )
        forwarder = Forwarder(
            app[POOL],
            target,
            scope=settings.forward_scope,
            clock=clock,
            batch=settings.forward_batch,
            backoff_max=settings.forward_backoff_max,
        )
        app[WRITER].add_hook(forward_hook(settings.forward_scope))
        await forwarder.start(app[SUPERVISOR])
        app[FORWARDER] = forwarder
        app[STATUS]["forwarding"] = forwarder.report
        yield
        await forwarder.stop()

    return adapter_mode


def _keys(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def keys(app: web.Application) -> AsyncIterator[None]:
        """The API keys; with authentication on, an operator key must exist before anything serves
        (unless an OpenID Connect provider is configured: its operator tokens administer then)."""
        settings = app[SETTINGS]
        app[KEYS] = KeyRing(app[POOL], ttl=settings.auth_cache_seconds, clock=clock)
        app[GRANTS] = Grants(app[POOL], ttl=settings.auth_cache_seconds, clock=clock)
        app[PERSONAL] = PersonalData(app[POOL], ttl=settings.auth_cache_seconds, clock=clock)
        needs_key = settings.auth_enabled and not settings.oidc_enabled
        if needs_key and await stored_keys.operators(app[POOL]) == 0:
            raise NoOperatorKey(
                "authentication is on (NGSI_AUTH) and no operator key exists: create one with "
                "`city-data-hub keys create --role operator` (or `python -m broker keys create "
                "--role operator`), keep the key it prints, then start the broker again"
            )
        yield

    return keys


def _tokens(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def tokens(app: web.Application) -> AsyncIterator[None]:
        """The OpenID Connect provider's token verifier and its key set, when one is configured."""
        settings = app[SETTINGS]
        if not settings.oidc_enabled:
            yield
            return
        source: JwksSource = (
            UrlJwks(settings.oidc_jwks_url, timeout=settings.oidc_jwks_timeout)
            if settings.oidc_jwks_url
            else FileJwks(settings.oidc_jwks_file)
        )
        config = OidcConfig(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            tenant_claim=settings.oidc_tenant_claim,
            roles_claim=settings.oidc_roles_claim,
            refresh=settings.oidc_jwks_refresh,
            leeway=settings.oidc_leeway,
        )
        verifier = TokenVerifier(config, source, clock=clock)
        try:
            if await verifier.start() == 0 and settings.oidc_jwks_file:
                # A file is read where the broker runs: holding no key it is a mistake, not an outage.
                raise OSError(f"NGSI_OIDC_JWKS_FILE {settings.oidc_jwks_file} holds no RS256 or ES256 key")
            app[TOKENS] = verifier
            yield
        finally:
            await verifier.close()

    return tokens


def _device_host(app: web.Application) -> devices.Host:
    """What the device side is given of the broker (it imports nothing of broker.api or the store)."""
    return devices.Host(
        settings=app[SETTINGS],
        pool=app[POOL],
        writer=app[WRITER],
        term_maps=app[RESOLVER].term_map,
        status=app[STATUS],
        forget_frames=frames.forget_before,
        supervisor=app[SUPERVISOR],
    )


def create_app(settings: Settings, *, clock: Clock = SYSTEM) -> web.Application:
    """The broker application for ``settings`` (resources open when it starts); its supervised
    parts back off on ``clock`` (a test's hand-driven clock)."""
    # Authentication first: a refused request reaches no other check and no handler.
    authenticate = (
        [
            auth_middleware(
                lambda request: request.app[KEYS],
                lambda request: request.app[GRANTS],
                RateLimiter(dict(settings.rate_limits), clock=clock),
                lambda request: request.app.get(TOKENS),
            )
        ]
        if settings.auth_enabled
        else []
    )
    app = web.Application(
        middlewares=[
            # Outermost: the request id is set for everything after it, the final status is counted.
            observe.observe_middleware(count=settings.metrics, log_access=settings.access_log),
            error_middleware(),
            *authenticate,
            keep_inline_contexts_if_served,
            refuse_nul,
            refuse_unknown_parameters,
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[STATUS] = {}
    app[dashboard.CLOCK] = clock
    app.on_response_prepare.append(observe.add_request_id)
    app.cleanup_ctx.extend(
        [
            _supervision(clock),
            _database,
            _tokens(clock),
            _keys(clock),
            _history,
            _type_counts,
            _context_resolver,
            _subscriptions,
            _notifier,
            _federation(clock),
            _forwarding(clock),
        ]
    )
    # The device side: provisioning and dead letters, then the pipeline and its MQTT subscriptions.
    app.cleanup_ctx.extend(devices.contexts(_device_host))
    app.cleanup_ctx.append(observe.sampler(clock))
    app.router.add_routes(health.routes)
    if settings.metrics:
        app.router.add_routes(observe.routes)
    app.router.add_routes(query.routes)
    app.router.add_routes(entities.routes)
    app.router.add_routes(batch.routes)
    app.router.add_routes(contexts.routes)
    app.router.add_routes(discovery.routes)
    app.router.add_routes(info.routes)
    app.router.add_routes(subscriptions.routes)
    app.router.add_routes(registrations.routes)
    app.router.add_routes(csource_subscriptions.routes)
    app.router.add_routes(temporal.routes)
    app.router.add_routes(temporal_provision.routes)
    app.router.add_routes(retention.routes)
    app.router.add_routes(apikeys.routes)
    app.router.add_routes(grants.routes)
    app.router.add_routes(forwarding.routes)
    app.router.add_routes(personal.routes)
    app.router.add_routes(dashboard.routes)
    devices.add_routes(app)
    unsupported.add_routes(app)
    return app
