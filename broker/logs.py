"""Log lines: one per event, plain or JSON (NGSI_LOG_FORMAT), with the request id and tenant, no secrets.

The request id and tenant of the request being served (or of the notification being
delivered) live in context variables, so every line logged while serving it carries them
without being passed around. Every line goes through ``redact`` last: API keys, bearer
tokens, Authorization headers, passwords in URLs and ``secret``/``password``/``apikey``
values are replaced, whatever code logged them.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TENANT: ContextVar[str | None] = ContextVar("tenant", default=None)

# What an incoming X-Request-Id may be to be kept (else one is made): short and printable,
# so it cannot split a log line or carry markup into a header of a notification.
_SANE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_HIDDEN = "***"
_SECRETS = (
    # the password of a URL (postgresql://user:password@host, mqtt://user:password@host)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\g<1>{_HIDDEN}@"),
    # the broker's API keys: ngsk_<id>_<secret>
    (re.compile(r"\bngsk_([0-9a-f]+)_[A-Za-z0-9_-]+"), rf"ngsk_\g<1>_{_HIDDEN}"),
    # Authorization headers and bearer tokens, however they are written
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\g<1> {_HIDDEN}"),
    (
        re.compile(
            r"(?i)([\"']?(?:authorization|x-api-key|fiware-apikey|apikey|api_key|secret|password|passwd|token"
            r"|[a-z_-]*secret)[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)[^\s\"',;&}]+"
        ),
        rf"\g<1>{_HIDDEN}",
    ),
    # a receiverInfo / notifierInfo pair naming a secret: {"key": "X-Webhook-Secret", "value": "..."}
    (
        re.compile(
            r"(?i)([\"']key[\"']\s*:\s*[\"'][^\"']*(?:secret|token|authorization|api-?key|password)[^\"']*[\"']"
            r"\s*,\s*[\"']value[\"']\s*:\s*[\"'])[^\"']*"
        ),
        rf"\g<1>{_HIDDEN}",
    ),
    # IoT Agent southbound query strings carry the group's apikey as k=
    (re.compile(r"([?&]k=)[^&\s]+"), rf"\g<1>{_HIDDEN}"),
)


def redact(text: str) -> str:
    """``text`` with every secret the broker knows the shape of replaced by ***."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def request_id_from(header: str | None) -> str:
    """The incoming X-Request-Id when it is sane, else a new one."""
    if header is not None and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class _Context(logging.Filter):
    """Gives every record the request id and tenant of the context it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.tenant = TENANT.get()
        return True


class PlainFormatter(logging.Formatter):
    """``time level logger: message [request_id tenant]``, secrets removed, on one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        where = " ".join(
            f"{key}={value}"
            for key, value in (
                ("request_id", getattr(record, "request_id", None)),
                ("tenant", record_tenant(record)),
            )
            if value
        )
        if where:
            line = f"{line} [{where}]"
        return _one_line(redact(line))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, tenant (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        tenant = record_tenant(record)
        if tenant:
            entry["tenant"] = tenant
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def record_tenant(record: logging.LogRecord) -> str | None:
    tenant: str | None = getattr(record, "tenant", None)
    return tenant


def _one_line(text: str) -> str:
    # A traceback stays one event: its lines are joined (JSON keeps them in one string anyway).
    return text.replace("\r", "").replace("\n", " | ")


def handler(fmt: str, stream: TextIO) -> logging.Handler:
    """A handler writing ``fmt`` (json or plain) lines to ``stream``, with request id and tenant."""
    out = logging.StreamHandler(stream)
    out.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    out.addFilter(_Context())
    return out


def configure(level: str, fmt: str) -> None:
    """Send the broker's log to stderr at ``level``, as ``fmt`` (json or plain) lines."""
    handler_ = handler(fmt, sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler_)
    root.setLevel(level.upper())
