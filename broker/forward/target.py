"""The external NGSI-LD broker of adapter mode, as one HTTP client sees it (clauses 6.31.3.1, 6.32.3.1).

Changes go as batch upserts (``POST /ngsi-ld/v1/entityOperations/upsert?options=update``) and batch
deletes, one request per tenant and batch, the tenant mapped (NGSILD-Tenant), with
``Authorization: Bearer`` when a token is set. Each answer sorts the rows sent into three kinds:
delivered; refused for good (a 4xx about the data: 400, 409, 413, 422...; kept as a dead letter);
or not delivered yet (5xx, no answer, a timeout, and 401, 403, 404, 405, 408, 429, which say the
target or the credentials are not right yet, not the change: retried after a back-off). A batch
refused as a whole is sent again entity by entity, so one bad change does not hold back the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from broker.netguard import AddressPolicy, GuardedResolver, RefusedAddress
from broker.store.forwarding import DELETE, Pending, Refused
from broker.store.tenants import DEFAULT_TENANT

log = logging.getLogger(__name__)

UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert?options=update"
DELETE_PATH = "/ngsi-ld/v1/entityOperations/delete"
ALLOW_PRIVATE = "NGSI_FORWARD_ALLOW_PRIVATE"
# 4xx answers that are about the target or the credentials, not about the change: retried.
RETRIED_4XX = frozenset({401, 403, 404, 405, 408, 429})
_MAX_ANSWER = 65_536
_MAX_REASON = 300


@dataclass(slots=True)
class Answer:
    """What became of the rows sent: delivered ids, refused rows, and why the rest must wait."""

    done: list[int] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    retry: str | None = None  # set: the target is not reachable (or not ready); the rest wait


class _Unreachable(Exception):
    """No usable answer: retry later."""


def forward_policy(*, allow_private: bool, own: Sequence[Any] = ()) -> AddressPolicy:
    """The address rule of the forwarding URL (the operator's own setting may allow private ones)."""
    return AddressPolicy(
        what="forwarding target", setting=ALLOW_PRIVATE, allow_private=allow_private, own=own
    )


class Target:
    """Sends batches of changes to one external broker."""

    def __init__(
        self,
        url: str,
        guard: GuardedResolver,
        *,
        token: str = "",
        tenant_map: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        # What logs and /health show: without user:password, should the URL carry them.
        self.shown = _without_credentials(self.url)
        self._guard = guard
        self._token = token
        self._tenants = dict(tenant_map or {})
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self._guard),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._guard.close()

    def tenant_for(self, tenant: str) -> str:
        """The target's tenant for one of ours: mapped, else the same name."""
        return self._tenants.get(tenant, tenant)

    async def send(self, tenant: str, rows: Sequence[Pending]) -> Answer:
        """Send ``rows`` (one per entity, all of ``tenant``): upserts in one request, deletions in another."""
        answer = Answer()
        for kind in ("upsert", DELETE):
            batch = [r for r in rows if r.op == kind]
            if batch and answer.retry is None:
                await self._send_batch(tenant, batch, answer, split=True)
        return answer

    async def _send_batch(self, tenant: str, rows: Sequence[Pending], answer: Answer, *, split: bool) -> None:
        deleting = rows[0].op == DELETE
        body = [r.entity_id for r in rows] if deleting else [r.data for r in rows]
        try:
            status, content = await self._post(DELETE_PATH if deleting else UPSERT_PATH, tenant, body)
        except _Unreachable as exc:
            answer.retry = str(exc)
            return
        if status in (200, 201, 204):
            answer.done.extend(r.id for r in rows)
        elif status == 207:
            self._sort_multi_status(rows, content, answer, deleting)
        elif status >= 500 or status in RETRIED_4XX or status < 200 or 300 <= status < 400:
            answer.retry = f"HTTP {status}: {_reason(content)}"
        elif split and len(rows) > 1:
            log.info("forwarding: a batch of %d got HTTP %d; sending it one by one", len(rows), status)
            for row in rows:
                if answer.retry is not None:
                    return
                await self._send_batch(tenant, [row], answer, split=False)
        else:
            answer.refused.extend(Refused(r, status, _reason(content)) for r in rows)

    def _sort_multi_status(
        self, rows: Sequence[Pending], content: Any, answer: Answer, deleting: bool
    ) -> None:
        """A 207: the entities in ``errors`` failed, each for its own reason; the others are done."""
        errors: dict[str, Any] = {}
        if isinstance(content, dict):
            for item in content.get("errors") or []:
                if isinstance(item, dict) and isinstance(item.get("entityId"), str):
                    errors[item["entityId"]] = item.get("error") or {}
        for row in rows:
            problem = errors.get(row.entity_id)
            if problem is None:
                answer.done.append(row.id)
                continue
            status = problem.get("status") if isinstance(problem, dict) else None
            status = status if isinstance(status, int) else None
            if deleting and status == 404:
                answer.done.append(row.id)  # not there: what a deletion wants
            elif status is not None and (status >= 500 or status in RETRIED_4XX - {404}):
                answer.retry = f"HTTP {status} for {row.entity_id}: {_reason(problem)}"
            else:
                answer.refused.append(Refused(row, status if status is not None else 207, _reason(problem)))

    async def _post(self, path: str, tenant: str, body: list[Any]) -> tuple[int, Any]:
        """POST ``body``; the status and the decoded answer (None when not JSON); _Unreachable if none."""
        assert self._session is not None, "Target.open() first"
        url = self.url + path
        headers = {"Content-Type": "application/json"}
        theirs = self.tenant_for(tenant)
        if theirs != DEFAULT_TENANT:
            headers["NGSILD-Tenant"] = theirs
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            self._guard.check_url(url)  # a literal address: the connector does not resolve it
            async with self._session.post(
                url, data=orjson.dumps(body), headers=headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(_MAX_ANSWER)
                status = response.status
        except RefusedAddress as exc:
            raise _Unreachable(self._guard.policy.explain(self.shown, exc)) from None
        except TimeoutError:
            raise _Unreachable(f"no answer within {self._timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                raise _Unreachable(self._guard.policy.explain(self.shown, exc.os_error)) from None
            raise _Unreachable(f"cannot connect: {exc}") from None
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            raise _Unreachable(f"request failed: {type(exc).__name__}: {exc}") from None
        try:
            content = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            content = raw.decode("utf-8", "replace")
        return status, content


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _reason(content: Any) -> str:
    """A short reason from a ProblemDetails (title: detail), or the answer's text."""
    if isinstance(content, dict):
        parts = [str(content[k]) for k in ("title", "detail") if content.get(k)]
        text = ": ".join(parts) if parts else orjson.dumps(content).decode()
    else:
        text = "" if content is None else str(content)
    return text[:_MAX_REASON] or "(no details)"
