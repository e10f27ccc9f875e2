"""The NGSI-LD error hierarchy (ETSI GS CIM 009 clause 5.5.2) and the one place that renders it.

Code anywhere raises an ``NgsiLdError`` subclass; ``error_middleware`` turns it into an
RFC 7807 ProblemDetails body with the ETSI error type URI and the HTTP status of
clause 6.3.2. Nothing else chooses a status for an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from broker.clock import SYSTEM, Clock
from broker.store.faults import TRANSIENT

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"
# Error types NGSI-LD does not define (authentication): this project's own namespace.
PROJECT_ERROR_BASE = "urn:city-data-hub:errors:"
PROBLEM_JSON = "application/json"

log = logging.getLogger(__name__)
# ProblemDetails members the class decides (``detail`` is the one argument).
_RESERVED = frozenset({"type", "title", "status", "detail"})


class NgsiLdError(Exception):
    """An error the API reports to its client as ProblemDetails."""

    type_name: ClassVar[str] = "InternalError"
    title: ClassVar[str] = "Internal error"
    # Fixed per class: an error of another HTTP status is another class.
    status: ClassVar[int] = 500
    # Seconds a client is told to wait before trying again (a Retry-After header), if any.
    retry_after: ClassVar[int | None] = None

    def __init__(self, detail: str, **extra: Any) -> None:
        """``extra`` members are added to the ProblemDetails (e.g. the IoT Agent's "name")."""
        reserved = _RESERVED.intersection(extra)
        if reserved:
            raise TypeError(f"{', '.join(sorted(reserved))} of an error is fixed by its class")
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """HTTP headers the response carries besides the body (e.g. Retry-After)."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    @property
    def type_uri(self) -> str:
        return ERROR_BASE + self.type_name

    def problem(self) -> dict[str, Any]:
        """The ProblemDetails object (RFC 7807) describing this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extra)
        return body


class InvalidRequest(NgsiLdError):
    type_name = "InvalidRequest"
    title = "The request associated to the operation is syntactically invalid or includes wrong content"
    status = 400


class MethodNotAllowed(InvalidRequest):
    """The path exists but not with this method (HTTP 405; the response names the allowed ones)."""

    title = "The method is not allowed on this resource"
    status = 405

    def __init__(self, detail: str, allowed: str = "") -> None:
        super().__init__(detail)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allowed} if self.allowed else {}


class NotAcceptable(InvalidRequest):
    """None of the media types the Accept header names can be produced (clause 6.3.6)."""

    title = "The requested representation cannot be produced"
    status = 406


class UnsupportedMediaType(InvalidRequest):
    """The body's Content-Type is not one the operation takes (clause 6.3.4)."""

    title = "The request body's media type is not supported"
    status = 415


class BadRequestData(NgsiLdError):
    type_name = "BadRequestData"
    title = "The request includes input data which does not meet the requirements of the operation"
    status = 400


class PayloadTooLarge(BadRequestData):
    """The body is larger than NGSI_MAX_BODY_BYTES (HTTP 413)."""

    title = "The request body is too large"
    status = 413


class AlreadyExists(NgsiLdError):
    type_name = "AlreadyExists"
    title = "The referred element already exists"
    status = 409


class AlreadyRunning(AlreadyExists):
    """A run of the operation is going on in another process (the history purge): 409, retry later."""

    title = "The operation is already running"


class OperationNotSupported(NgsiLdError):
    type_name = "OperationNotSupported"
    title = "The operation is not supported"
    status = 422


class NotImplementedYet(OperationNotSupported):
    """A part of the API this broker does not offer yet: 501, honestly."""

    title = "Not implemented by this broker yet"
    status = 501


class ResourceNotFound(NgsiLdError):
    type_name = "ResourceNotFound"
    title = "The referred resource has not been found"
    status = 404


class Unauthorized(NgsiLdError):
    """No credentials, or ones that prove nothing (HTTP 401). NGSI-LD V1.9.1 names no error type
    for it: the type is this project's."""

    type_name = "Unauthorized"
    title = "The request needs valid credentials"
    status = 401

    @property
    def type_uri(self) -> str:
        return PROJECT_ERROR_BASE + self.type_name

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="ngsi-ld"'}


class Forbidden(NgsiLdError):
    """Authenticated, but not allowed to do this (HTTP 403); the type is this project's."""

    type_name = "Forbidden"
    title = "The credentials do not allow this request"
    status = 403

    @property
    def type_uri(self) -> str:
        return PROJECT_ERROR_BASE + self.type_name


class TooManyRequests(NgsiLdError):
    """The identity has used up its request rate (HTTP 429, Retry-After); the type is this project's."""

    type_name = "TooManyRequests"
    title = "Too many requests; retry later"
    status = 429

    def __init__(self, detail: str, wait: float) -> None:
        super().__init__(detail)
        self.wait = wait

    @property
    def type_uri(self) -> str:
        return PROJECT_ERROR_BASE + self.type_name

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.wait)))}


class InternalError(NgsiLdError):
    type_name = "InternalError"
    title = "There has been an error during the operation execution"
    status = 500


class TooComplexQuery(NgsiLdError):
    type_name = "TooComplexQuery"
    title = "The query is too complex and cannot be resolved"
    status = 403


class TooManyResults(NgsiLdError):
    type_name = "TooManyResults"
    title = "The query leads to too many results"
    status = 403


class LdContextNotAvailable(NgsiLdError):
    type_name = "LdContextNotAvailable"
    title = "A remote JSON-LD @context referenced in a request cannot be retrieved"
    status = 503


class NonexistentTenant(NgsiLdError):
    type_name = "NonexistentTenant"
    title = "The addressed tenant does not exist"
    status = 404


class Conflict(InternalError):
    """A write lost a race it could not resolve by retrying (rare): 503, the client may retry."""

    title = "The entities were changed concurrently; retry the request"
    status = 503


class DatabaseUnavailable(InternalError):
    """PostgreSQL is away (restart, failover, cut connections): 503, nothing was stored; retry later."""

    title = "The database is unavailable; retry later"
    status = 503
    # A PostgreSQL restart takes a few seconds.
    retry_after = 5


class ServerBusy(InternalError):
    """The process has NGSI_HTTP_MAX_CONNECTIONS connections open: 503, retry in a moment."""

    title = "The broker has too many connections open; retry later"
    status = 503
    retry_after = 1


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(error: NgsiLdError) -> web.Response:
    """Render ``error`` as a ProblemDetails response."""
    return web.Response(
        body=orjson.dumps(error.problem()),
        status=error.status,
        content_type=PROBLEM_JSON,
        headers=error.headers() or None,
    )


class Outages:
    """Says once in the log that the database is away, not once per request answered 503.

    An outage starts with the first transient error and is over once ``quiet`` seconds pass
    without one; the requests answered 503 meanwhile are counted and told when it ends.
    """

    def __init__(self, clock: Clock = SYSTEM, *, quiet: float = 10.0) -> None:
        self._clock = clock
        self._quiet = quiet
        self._last: float | None = None
        self.refused = 0

    def failed(self, error: BaseException) -> None:
        now = self._clock.monotonic()
        self._end_if_quiet(now)
        if self._last is None:
            log.error(
                "database unavailable (%s: %s); answering 503 until it is back", type(error).__name__, error
            )
        self._last = now
        self.refused += 1

    def served(self) -> None:
        if self._last is not None:
            self._end_if_quiet(self._clock.monotonic())

    def _end_if_quiet(self, now: float) -> None:
        if self._last is not None and now - self._last >= self._quiet:
            log.warning("database reachable again; %d requests were answered 503 meanwhile", self.refused)
            self._last = None
            self.refused = 0


def error_middleware(outages: Outages | None = None) -> Middleware:
    """The middleware rendering every error leaving a handler as NGSI-LD ProblemDetails.

    A transient database error (broker.store.faults.TRANSIENT) is a 503 DatabaseUnavailable with
    Retry-After: nothing of the request was stored, and the same request succeeds later.
    """
    watch = outages or Outages()

    @web.middleware
    async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except NgsiLdError as error:
            return problem_response(error)
        except web.HTTPException as http_error:
            if http_error.status < 400:
                raise
            return problem_response(_from_http_exception(request, http_error))
        except TRANSIENT as exc:
            if not _from_database(exc):
                return _unexpected(request)
            watch.failed(exc)
            return problem_response(
                DatabaseUnavailable(f"the database is unavailable ({type(exc).__name__})")
            )
        except Exception:
            return _unexpected(request)
        watch.served()
        return response

    return render_errors


def _unexpected(request: web.Request) -> web.Response:
    """A bug: the traceback goes to the log, the client gets a 500 without it."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem_response(InternalError("unexpected error; see the broker log"))


def _from_database(error: BaseException) -> bool:
    """True when a transient error came from the database driver, not e.g. from a client that left.

    asyncpg's own errors say so by their class; an OSError (a refused or reset socket, a timeout)
    says so by having been raised inside asyncpg.
    """
    if not isinstance(error, OSError):
        return True
    frame = error.__traceback__
    while frame is not None:
        if str(frame.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg"):
            return True
        frame = frame.tb_next
    return False


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> NgsiLdError:
    """Map aiohttp's own errors (routing, body size) onto the ETSI types."""
    if exc.status == 404:
        return ResourceNotFound(f"no resource at {request.path}")
    if exc.status == 405:
        return MethodNotAllowed(
            f"method {request.method} is not allowed on {request.path}", exc.headers.get("Allow", "")
        )
    if exc.status == 413:
        return PayloadTooLarge(exc.text or "request body too large")
    if exc.status >= 500:
        log.error("HTTP %d on %s %s: %s", exc.status, request.method, request.path, exc.text)
        return InternalError(exc.text or exc.reason)
    return InvalidRequest(exc.text or exc.reason)
