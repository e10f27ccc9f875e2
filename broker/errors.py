"""The NGSI-LD error hierarchy (ETSI GS CIM 009 clause 5.5.2) and the one place that renders it.

Code anywhere raises an ``NgsiLdError`` subclass; ``error_middleware`` turns it into an
RFC 7807 ProblemDetails body with the ETSI error type URI and the HTTP status of
clause 6.3.2. Nothing else chooses a status for an error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson
from aiohttp import web

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"
PROBLEM_JSON = "application/json"

log = logging.getLogger(__name__)


class NgsiLdError(Exception):
    """An error the API reports to its client as ProblemDetails."""

    type_name: ClassVar[str] = "InternalError"
    title: ClassVar[str] = "Internal error"
    status: int = 500

    def __init__(self, detail: str, *, status: int | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.extra = extra

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


class BadRequestData(NgsiLdError):
    type_name = "BadRequestData"
    title = "The request includes input data which does not meet the requirements of the operation"
    status = 400


class AlreadyExists(NgsiLdError):
    type_name = "AlreadyExists"
    title = "The referred element already exists"
    status = 409


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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(error: NgsiLdError, headers: dict[str, str] | None = None) -> web.Response:
    """Render ``error`` as a ProblemDetails response."""
    return web.Response(
        body=orjson.dumps(error.problem()),
        status=error.status,
        content_type=PROBLEM_JSON,
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error leaving a handler as NGSI-LD ProblemDetails."""
    try:
        return await handler(request)
    except NgsiLdError as error:
        return problem_response(error)
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        # Keep what HTTP requires of the status, such as Allow on a 405.
        kept = {name: value for name, value in http_error.headers.items() if name in ("Allow", "Retry-After")}
        return problem_response(_from_http_exception(request, http_error), kept)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(InternalError("unexpected error; see the broker log"))


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> NgsiLdError:
    """Map aiohttp's own errors (routing, body size) onto the ETSI types."""
    if exc.status == 404:
        return ResourceNotFound(f"no resource at {request.path}")
    if exc.status == 405:
        return InvalidRequest(f"method {request.method} is not allowed on {request.path}", status=405)
    if exc.status == 413:
        return BadRequestData(exc.text or "request body too large", status=413)
    if exc.status >= 500:
        return InternalError(exc.text or exc.reason, status=exc.status)
    return InvalidRequest(exc.text or exc.reason, status=exc.status)
