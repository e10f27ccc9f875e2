"""Settings, parsed once from the environment into a frozen value.

Every knob the service has is listed in SETTINGS, which also feeds ``--help``:
one table, so the documentation cannot drift from the parser.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from broker.auth.ratelimit import parse_rates
from broker.query.duration import check_keep


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    field: str
    default: str
    help: str
    parse: Callable[[str], Any] = str


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or a positive integer")
    return value


def _json_depth(text: str) -> int:
    value = _positive_int(text)
    if value > 200:
        # orjson serialises at most 255 levels, and stored values gain a few (attribute, instance).
        raise ValueError("must be at most 200")
    return value


def _port_list(text: str) -> tuple[int, ...]:
    ports = tuple(int(part) for part in text.split(",") if part.strip())
    if any(not 0 < port < 65536 for port in ports):
        raise ValueError("must be a comma-separated list of TCP ports")
    return ports


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


def _allow_list(text: str) -> tuple[str, ...]:
    """Host names, IP addresses and CIDRs, comma-separated."""
    entries = tuple(part.strip() for part in text.split(",") if part.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            if not _HOST_NAME.fullmatch(entry):
                raise ValueError(f"{entry!r} is not a host name, IP address or CIDR") from None
    return entries


def _forward_url(text: str) -> str:
    url = text.strip()
    if url and not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", url):
        raise ValueError("must be an http(s):// URL without query or fragment")
    return url.rstrip("/")


def _forward_scope(text: str) -> str:
    scope = text.strip().lower()
    if scope not in ("devices", "all"):
        raise ValueError("must be devices or all")
    return scope


_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def _tenant_map(text: str) -> tuple[tuple[str, str], ...]:
    """``ours=theirs,...``; an empty side names that broker's default tenant."""
    pairs: list[tuple[str, str]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        ours, equals, theirs = (side.strip() for side in part.partition("="))
        if not equals or any(side and not _TENANT.fullmatch(side) for side in (ours, theirs)):
            raise ValueError(f"{part!r} is not ourTenant=theirTenant")
        pairs.append((ours, theirs))
    return tuple(pairs)


def _auth_mode(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in {"on", "off", "auto"}:
        raise ValueError("must be on, off or auto")
    return lowered


def _log_format(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in {"plain", "json"}:
        raise ValueError("must be plain or json")
    return lowered


def _rates(text: str) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(parse_rates(text).items()))


def _http_url(text: str) -> str:
    if text and not text.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return text


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number")
    return value


MQTT_FAMILIES = ("json", "ul", "tts", "chirpstack")


def _mqtt_families(text: str) -> tuple[str, ...]:
    """Families of device topics to subscribe to, comma-separated (empty: none)."""
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in MQTT_FAMILIES]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not one of {', '.join(MQTT_FAMILIES)}")
    return names


def _topic_prefix(text: str) -> str:
    """A topic prefix: MQTT topic levels without wildcards, without a leading or trailing '/'."""
    prefix = text.strip()
    if any(c in prefix for c in "+#\x00") or prefix.startswith(("/", "$")) or prefix.endswith("/"):
        raise ValueError("must be topic levels such as hub1 or city/hub1 (no +, #, $ or outer /)")
    return prefix


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


SETTINGS: tuple[Setting, ...] = (
    Setting("NGSI_HOST", "host", "127.0.0.1", "address the HTTP API listens on"),
    Setting("NGSI_PORT", "port", "1026", "port of the NGSI-LD HTTP API", _positive_int),
    Setting(
        "DATABASE_URL",
        "database_url",
        "postgresql://ngsi:ngsi@127.0.0.1:5432/ngsi",
        "PostgreSQL (with PostGIS) connection URL",
    ),
    Setting("MQTT_URL", "mqtt_url", "mqtt://127.0.0.1:1883", "MQTT broker the device adapters connect to"),
    Setting(
        "NGSI_DB_POOL_MIN", "db_pool_min", "2", "minimum PostgreSQL connections per process", _positive_int
    ),
    Setting(
        "NGSI_DB_POOL_MAX", "db_pool_max", "20", "maximum PostgreSQL connections per process", _positive_int
    ),
    Setting(
        "NGSI_DB_CONNECT_TIMEOUT",
        "db_connect_timeout",
        "60",
        "seconds to keep retrying the database at start before giving up",
        _positive_float,
    ),
    Setting(
        "NGSI_MAX_BODY_BYTES",
        "max_body_bytes",
        "1048576",
        "largest request body accepted (bytes); larger answers 413",
        _positive_int,
    ),
    Setting(
        "NGSI_MAX_JSON_DEPTH",
        "max_json_depth",
        "64",
        "deepest nesting of arrays and objects accepted in a JSON body or device message "
        "(at most 200; deeper answers 400 or becomes a dead letter)",
        _json_depth,
    ),
    Setting(
        "NGSI_MAX_BATCH",
        "max_batch",
        "1000",
        "most entities accepted in one batch operation",
        _positive_int,
    ),
    Setting(
        "NGSI_MAX_INSTANCES",
        "max_instances",
        "1000",
        "most instances (datasetIds) one attribute of an entity may have; more answers 400",
        _positive_int,
    ),
    Setting(
        "NGSI_MAX_PAGE",
        "max_page",
        "1000",
        "largest 'limit' a query may ask for; more answers 403 TooManyResults",
        _positive_int,
    ),
    Setting(
        "NGSI_MAX_PURGE",
        "max_purge",
        "10000",
        "most entities one purge (DELETE /ngsi-ld/v1/entities?type=...&q=...) may delete; "
        "a purge matching more answers 403 TooManyResults and deletes nothing",
        _positive_int,
    ),
    Setting(
        "NGSI_MAX_JOIN_LEVEL",
        "max_join_level",
        "3",
        "deepest joinLevel a query or retrieval with join=inline|flat may ask for; more answers 400",
        _positive_int,
    ),
    Setting(
        "NGSI_CONTEXT_FETCH_TIMEOUT",
        "context_fetch_timeout",
        "5",
        "seconds allowed to fetch a remote @context",
        _positive_float,
    ),
    Setting(
        "NGSI_CONTEXT_MAX_BYTES",
        "context_max_bytes",
        "2097152",
        "largest remote @context document accepted (bytes)",
        _positive_int,
    ),
    Setting(
        "NGSI_CONTEXT_ALLOW_FETCH",
        "context_allow_fetch",
        "true",
        "fetch remote @contexts not in the cache (false: offline, only bundled/cached ones)",
        _bool,
    ),
    Setting(
        "NGSI_CONTEXT_ALLOW_PRIVATE",
        "context_allow_private",
        "false",
        "allow fetching @contexts from loopback/private addresses (off: a Link header cannot make the "
        "broker probe the internal network)",
        _bool,
    ),
    Setting(
        "NGSI_NOTIFY_TIMEOUT",
        "notify_timeout",
        "5",
        "seconds a notification endpoint has to answer before the attempt counts as failed",
        _positive_float,
    ),
    Setting(
        "NGSI_NOTIFY_CONCURRENCY",
        "notify_concurrency",
        "4",
        "subscriptions delivered to at once per process (each holds a database connection)",
        _positive_int,
    ),
    Setting(
        "NGSI_NOTIFY_ALLOW_PRIVATE",
        "notify_allow_private",
        "false",
        "allow notification (and context source) endpoints on loopback/private/link-local addresses "
        "(off: a subscription cannot make the broker post into or probe the internal network); the "
        "broker's own listeners stay refused unless the allow-list (NGSI_NOTIFY_ALLOW) names them",
        _bool,
    ),
    Setting(
        "NGSI_NOTIFY_ALLOW",
        "notify_allow",
        "",
        "host names, IP addresses and CIDRs (comma-separated) notification endpoints may name even "
        "when private or one of the broker's own listeners (e.g. receiver.lan,10.1.2.0/24)",
        _allow_list,
    ),
    Setting(
        "NGSI_PUBLIC_URL",
        "public_url",
        "",
        "base URL clients reach this broker at, used in hosted @context URLs (default http://HOST:PORT)",
    ),
    Setting(
        "NGSI_HTTP_IDLE_TIMEOUT",
        "http_idle_timeout",
        "20",
        "seconds an HTTP connection may go without sending a complete request header (a new one, "
        "or an idle keep-alive one) before it is closed",
        _positive_float,
    ),
    Setting(
        "NGSI_HTTP_MAX_CONNECTIONS",
        "http_max_connections",
        "2000",
        "open HTTP connections per broker process, all ports together; a connection beyond them is "
        "answered 503 with Retry-After and closed",
        _positive_int,
    ),
    Setting(
        "NGSI_AUTH",
        "auth",
        "auto",
        "authentication of HTTP requests by API key (and OpenID Connect token, with NGSI_OIDC_ISSUER): "
        "on, off, or auto (off while the API listens on a loopback address only, on as soon as it "
        "listens beyond it)",
        _auth_mode,
    ),
    Setting(
        "NGSI_AUTH_CACHE_SECONDS",
        "auth_cache_seconds",
        "5",
        "seconds a checked API key is trusted without reading it again; a key revoked through "
        "another process stops working within this time",
        _positive_float,
    ),
    Setting(
        "NGSI_RATE_LIMITS",
        "rate_limits",
        "anonymous=20,reader=100,writer=200,admin=50,device=500,operator=0",
        "requests per second per identity with authentication on, as role=rate pairs (an API key "
        "gets its most generous role's rate; anonymous: per client address; 0 or a role left out: "
        "unlimited); two seconds' worth may come at once, then 429 with Retry-After",
        _rates,
    ),
    Setting(
        "NGSI_OIDC_ISSUER",
        "oidc_issuer",
        "",
        "OpenID Connect provider whose bearer tokens (JWT) are accepted besides API keys: its exact "
        "iss (Keycloak: https://HOST/realms/REALM); empty: none",
    ),
    Setting(
        "NGSI_OIDC_AUDIENCE",
        "oidc_audience",
        "",
        "the aud a token must name to be accepted here (the broker's client id); required with an issuer",
    ),
    Setting(
        "NGSI_OIDC_JWKS_URL",
        "oidc_jwks_url",
        "",
        "URL of the provider's signing keys (Keycloak: ISSUER/protocol/openid-connect/certs); "
        "or a file instead (NGSI_OIDC_JWKS_FILE)",
        _http_url,
    ),
    Setting(
        "NGSI_OIDC_JWKS_FILE",
        "oidc_jwks_file",
        "",
        "file holding the provider's signing keys as a JWKS document, instead of a URL",
    ),
    Setting(
        "NGSI_OIDC_JWKS_REFRESH",
        "oidc_jwks_refresh",
        "300",
        "seconds the provider's keys are used before they are read again (a token naming a key not "
        "held reads them at once, at most every 10 s)",
        _positive_float,
    ),
    Setting(
        "NGSI_OIDC_JWKS_TIMEOUT",
        "oidc_jwks_timeout",
        "5",
        "seconds allowed to fetch the provider's keys",
        _positive_float,
    ),
    Setting(
        "NGSI_OIDC_TENANT_CLAIM",
        "oidc_tenant_claim",
        "tenant",
        "claim naming the tenant (a string) or tenants (a list) a token acts in; a dotted name is "
        "a path into nested claims; a token without it is an operator's or grants nothing",
    ),
    Setting(
        "NGSI_OIDC_ROLES_CLAIM",
        "oidc_roles_claim",
        "roles",
        "claim listing a token's roles (operator, admin, writer, reader, device, personal; others ignored); "
        "Keycloak's realm roles: realm_access.roles",
    ),
    Setting(
        "NGSI_OIDC_LEEWAY",
        "oidc_leeway",
        "30",
        "seconds of clock difference with the provider tolerated on a token's exp, nbf and iat",
        _non_negative_int,
    ),
    Setting("NGSI_LOG_LEVEL", "log_level", "INFO", "logging level (DEBUG, INFO, WARNING, ERROR)"),
    Setting(
        "NGSI_LOG_FORMAT",
        "log_format",
        "plain",
        "log lines as plain text or json (one JSON object per line: time, level, logger, message, "
        "request_id, tenant)",
        _log_format,
    ),
    Setting(
        "NGSI_ACCESS_LOG",
        "access_log",
        "off",
        "one log line per HTTP request answered (logger broker.access: method, path, status, "
        "milliseconds; query values that are secrets hidden)",
        _bool,
    ),
    Setting(
        "NGSI_METRICS",
        "metrics",
        "on",
        "Prometheus metrics at /metrics (off: no /metrics, nothing is counted or timed)",
        _bool,
    ),
    Setting(
        "NGSI_WORKERS",
        "workers",
        "0",
        "broker processes sharing the HTTP port (SO_REUSEPORT) and the MQTT ingest (shared "
        "subscription); 0: one per CPU core",
        _non_negative_int,
    ),
    Setting(
        "NGSI_IOTA_PORTS",
        "iota_ports",
        "",
        "extra ports serving the same API, for gateways and tools configured for the IoT Agents "
        "(e.g. 4041,7896; empty: none)",
        _port_list,
    ),
    Setting(
        "NGSI_MQTT_INGEST",
        "mqtt_ingest",
        "true",
        "subscribe to the device uplink topics on the MQTT broker (false: HTTP southbound only)",
        _bool,
    ),
    Setting(
        "NGSI_MQTT_CLIENT_ID",
        "mqtt_client_id",
        "",
        "MQTT client id of the persistent ingest session; keep it stable across restarts "
        "(default ngsi-hub-<hostname>)",
    ),
    Setting(
        "NGSI_MQTT_SHARE_GROUP",
        "mqtt_share_group",
        "ngsi-hub",
        "MQTT shared-subscription group the broker processes split device messages in (empty: none)",
    ),
    Setting(
        "NGSI_MQTT_FAMILIES",
        "mqtt_families",
        ",".join(MQTT_FAMILIES),
        "device families whose MQTT topics are consumed (json, ul: IoT Agent; tts, chirpstack); "
        "leave out the ones an IoT Agent or another hub on the same MQTT broker serves",
        _mqtt_families,
    ),
    Setting(
        "NGSI_MQTT_TOPIC_PREFIX",
        "mqtt_topic_prefix",
        "",
        "topic levels in front of every device topic (hub1: hub1/json/<apikey>/<device>/attrs, "
        "hub1/v3/...), stripped on receipt; empty: the usual topics",
        _topic_prefix,
    ),
    Setting(
        "NGSI_DEVICE_MAX_BYTES",
        "device_max_bytes",
        "65536",
        "largest device message accepted (bytes); larger ones go to dead letters",
        _positive_int,
    ),
    Setting(
        "NGSI_DEVICE_BATCH",
        "device_batch",
        "500",
        "most device messages written in one transaction",
        _positive_int,
    ),
    Setting(
        "NGSI_PSEUDONYM_SECRET",
        "pseudonym_secret",
        "",
        "secret keying the pseudonyms of personal device ids (watch-tags); default: one generated "
        "at first start and kept in the database",
    ),
    Setting(
        "NGSI_HISTORY",
        "history",
        "true",
        "append every attribute change to the history the temporal API serves (false only to measure)",
        _bool,
    ),
    Setting(
        "NGSI_HISTORY_KEEP",
        "history_keep",
        "",
        "how long history is kept when no retention policy names the entity type, as an ISO 8601 "
        "duration such as P30D (empty: forever)",
        check_keep,
    ),
    Setting(
        "NGSI_AUDIT_KEEP",
        "audit_keep",
        "P400D",
        "how long the audit log of personal-data reads is kept, as an ISO 8601 duration such as P400D "
        "(empty: forever); purged by the history maintenance job",
        check_keep,
    ),
    Setting(
        "NGSI_HISTORY_DAYS_AHEAD",
        "history_days_ahead",
        "3",
        "daily history partitions created ahead of time",
        _positive_int,
    ),
    Setting(
        "NGSI_RETENTION_INTERVAL",
        "retention_interval",
        "3600",
        "seconds between runs of the history maintenance job (partitions ahead, retention purge)",
        _positive_float,
    ),
    Setting(
        "NGSI_TEMPORAL_MAX_INSTANCES",
        "temporal_max_instances",
        "1000",
        "most instances of one attribute in a temporal response; more gives 206 and Content-Range",
        _positive_int,
    ),
    Setting(
        "NGSI_DASHBOARD_TILES",
        "dashboard_tiles",
        "",
        "map tile URL template of the dashboard's map, {z}/{x}/{y} style (e.g. a town's own tile "
        "server); empty: a plain background with the entities only (the page works offline)",
    ),
    Setting(
        "NGSI_DASHBOARD_REFRESH",
        "dashboard_refresh",
        "5",
        "seconds between the dashboard's refreshes (it polls the APIs)",
        _positive_float,
    ),
    Setting(
        "NGSI_DASHBOARD_DEVICE_INTERVAL",
        "dashboard_device_interval",
        "600",
        "seconds between a device's messages when its Device entity gives no reportInterval (the "
        "10-minute cycle of crisis-management water gauges)",
        _positive_float,
    ),
    Setting(
        "NGSI_DASHBOARD_SILENT_FACTOR",
        "dashboard_silent_factor",
        "3",
        "a device is flagged silent on the dashboard after this many of its intervals without a message",
        _positive_float,
    ),
    Setting(
        "NGSI_FORWARD_URL",
        "forward_url",
        "",
        "adapter mode: base URL of an external NGSI-LD broker (Orion-LD, Scorpio, Stellio) that every "
        "change in the forwarding scope is forwarded to by batch upserts, e.g. http://orion:1026 "
        "(empty: off); see 'Adapter mode'",
        _forward_url,
    ),
    Setting(
        "NGSI_FORWARD_SCOPE",
        "forward_scope",
        "devices",
        "which changes adapter mode forwards: devices (those the device layer makes: measurements, "
        "command status) or all (API writes too)",
        _forward_scope,
    ),
    Setting(
        "NGSI_FORWARD_TENANT_MAP",
        "forward_tenant_map",
        "",
        "tenants of this broker and the target's tenant each is forwarded to, as ours=theirs pairs "
        "(comma-separated; an empty theirs: the target's default tenant); a tenant left out keeps its name",
        _tenant_map,
    ),
    Setting(
        "NGSI_FORWARD_TOKEN",
        "forward_token",
        "",
        "bearer token sent to the forwarding target (Authorization: Bearer); empty: none",
    ),
    Setting(
        "NGSI_FORWARD_BATCH",
        "forward_batch",
        "100",
        "most entities in one batch upsert to the forwarding target",
        _positive_int,
    ),
    Setting(
        "NGSI_FORWARD_TIMEOUT",
        "forward_timeout",
        "10",
        "seconds the forwarding target has to answer a batch before the attempt counts as failed",
        _positive_float,
    ),
    Setting(
        "NGSI_FORWARD_BACKOFF_MAX",
        "forward_backoff_max",
        "60",
        "longest wait (seconds) between attempts while the forwarding target is down; the wait "
        "starts at 0.5 s and doubles per failed attempt",
        _positive_float,
    ),
    Setting(
        "NGSI_FORWARD_ALLOW_PRIVATE",
        "forward_allow_private",
        "false",
        "allow the forwarding URL to reach a loopback/private/link-local address (the broker's own "
        "listeners stay refused)",
        _bool,
    ),
)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    database_url: str
    mqtt_url: str
    db_pool_min: int
    db_pool_max: int
    db_connect_timeout: float
    max_body_bytes: int
    max_json_depth: int
    max_batch: int
    max_instances: int
    max_page: int
    max_purge: int
    max_join_level: int
    context_fetch_timeout: float
    context_max_bytes: int
    context_allow_fetch: bool
    context_allow_private: bool
    notify_timeout: float
    notify_concurrency: int
    notify_allow_private: bool
    notify_allow: tuple[str, ...]
    public_url: str
    http_idle_timeout: float
    http_max_connections: int
    auth: str
    auth_cache_seconds: float
    rate_limits: tuple[tuple[str, float], ...]
    oidc_issuer: str
    oidc_audience: str
    oidc_jwks_url: str
    oidc_jwks_file: str
    oidc_jwks_refresh: float
    oidc_jwks_timeout: float
    oidc_tenant_claim: str
    oidc_roles_claim: str
    oidc_leeway: int
    log_level: str
    log_format: str
    access_log: bool
    metrics: bool
    workers: int
    iota_ports: tuple[int, ...]
    mqtt_ingest: bool
    mqtt_client_id: str
    mqtt_share_group: str
    mqtt_families: tuple[str, ...]
    mqtt_topic_prefix: str
    device_max_bytes: int
    device_batch: int
    pseudonym_secret: str = field(repr=False)  # never in a log or a traceback
    history: bool
    history_keep: str
    audit_keep: str
    history_days_ahead: int
    retention_interval: float
    temporal_max_instances: int
    dashboard_tiles: str
    dashboard_refresh: float
    dashboard_device_interval: float
    dashboard_silent_factor: float
    forward_url: str
    forward_scope: str
    forward_tenant_map: tuple[tuple[str, str], ...]
    forward_token: str = field(repr=False)  # a credential: never in a log
    forward_batch: int
    forward_timeout: float
    forward_backoff_max: float
    forward_allow_private: bool

    @property
    def base_url(self) -> str:
        """The URL this broker is reached at, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def oidc_enabled(self) -> bool:
        """An OpenID Connect provider is configured (its tokens count with authentication on)."""
        return bool(self.oidc_issuer)

    @property
    def auth_enabled(self) -> bool:
        """NGSI_AUTH resolved: auto means on unless the broker listens on loopback only."""
        if self.auth != "auto":
            return self.auth == "on"
        return not _loopback(self.host)

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or every address (0.0.0.0 and :: are not loopback either)


# Connections each process holds for good: the LISTENs of subscriptions, the outbox, device
# commands and provisioning.
LISTEN_CONNECTIONS = 4


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env, setting.default)
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.env}={raw!r}: {exc}") from None
    settings = Settings(**values)
    if settings.db_pool_min > settings.db_pool_max:
        raise ConfigError("NGSI_DB_POOL_MIN must not exceed NGSI_DB_POOL_MAX")
    # Adapter mode holds one more LISTEN and one connection while a batch is sent.
    needed = LISTEN_CONNECTIONS + settings.notify_concurrency + 2 + (2 if settings.forward_url else 0)
    if settings.db_pool_max < needed:
        # With fewer, the LISTENs and deliveries hold every connection and requests wait forever.
        raise ConfigError(
            f"NGSI_DB_POOL_MAX={settings.db_pool_max} is too small: {LISTEN_CONNECTIONS} connections stay "
            f"LISTENing and NGSI_NOTIFY_CONCURRENCY={settings.notify_concurrency} deliveries hold one each; "
            f"use at least {needed}"
        )
    _check_oidc(settings)
    return settings


def _check_oidc(settings: Settings) -> None:
    """An issuer needs an audience and one key source; those mean nothing without an issuer."""
    sources = [
        env
        for env, value in (
            ("NGSI_OIDC_JWKS_URL", settings.oidc_jwks_url),
            ("NGSI_OIDC_JWKS_FILE", settings.oidc_jwks_file),
        )
        if value
    ]
    if not settings.oidc_issuer:
        named = [*sources, *(["NGSI_OIDC_AUDIENCE"] if settings.oidc_audience else [])]
        if named:
            raise ConfigError(f"{', '.join(named)} set without NGSI_OIDC_ISSUER")
        return
    if not settings.oidc_audience:
        raise ConfigError(
            "NGSI_OIDC_ISSUER needs NGSI_OIDC_AUDIENCE (the aud its tokens name for this broker)"
        )
    if len(sources) != 1:
        raise ConfigError("NGSI_OIDC_ISSUER needs exactly one of NGSI_OIDC_JWKS_URL and NGSI_OIDC_JWKS_FILE")


def help_text() -> str:
    """The environment variables, their defaults and meaning, for ``--help``."""
    width = max(len(s.env) for s in SETTINGS)
    lines = ["Environment variables (read once at start):"]
    for s in SETTINGS:
        default = s.default if s.default else "(empty)"
        lines.append(f"  {s.env.ljust(width)}  {s.help} [default: {default}]")
    return "\n".join(lines)
