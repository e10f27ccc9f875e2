"""Dead letters: device messages that could not be accepted, kept with the reason, and replayed.

The pipeline adds one for every rejected message (raw bytes as received, capped; the topic or URL;
the headers needed to parse it again; the device and the reason in words). Operators list them
per tenant (NGSILD-Tenant or Fiware-Service; '' holds those whose tenant is unknown), read one,
delete it, or replay it once a mapping is fixed: replay hands the letter to the Replayer the
pipeline provides and records its outcome on the letter.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
from aiohttp import web

from adapters.keys import DEAD_LETTERS, REPLAYER, SETTINGS
from adapters.message import Rejected, to_utc
from adapters.store import deadletters as sql
from broker import edge
from broker.errors import AlreadyExists, BadRequestData, NotImplementedYet, ResourceNotFound
from broker.model.entity import format_time

log = logging.getLogger(__name__)

ACCEPTED = "accepted"  # the Replayer's answer for a message stored this time
_MAX_TEXT = 4096  # origin, reason and header values beyond this are cut
_MAX_HEADERS = 32


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    tenant: str
    received_at: datetime
    family: str
    origin: str
    headers: dict[str, str]
    device: str | None
    raw: bytes  # as received, cut at the size limit
    raw_size: int  # the size as received
    reason: str
    replayed_at: datetime | None
    replay_result: str | None


class Replayer(Protocol):
    """Runs a dead letter through the pipeline again (provided by the pipeline's wiring)."""

    async def replay(self, letter: DeadLetter) -> str:
        """ "accepted", or the reason the message is refused again."""
        ...


def _text(value: Any, limit: int = _MAX_TEXT) -> str:
    """Any value as text PostgreSQL can store (no NUL, no lone surrogate), cut at ``limit`` characters."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = text[:limit].replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a lenient decoder upstream) becomes U+FFFD; valid pairs are joined.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return b"" if value is None else _text(value).encode()


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {_text(k, 256): _text(v) for k, v in list(value.items())[:_MAX_HEADERS]}


def _letter(row: asyncpg.Record) -> DeadLetter:
    return DeadLetter(**dict(row))


class DeadLetters:
    """The dead_letters table (migration 0005)."""

    def __init__(self, pool: asyncpg.Pool, *, max_raw_bytes: int = 65536) -> None:
        self._pool = pool
        self._max_raw = max_raw_bytes

    async def add(
        self,
        tenant: str | None,
        family: str,
        origin: str,
        headers: Mapping[str, str],
        device: str | None,
        raw: bytes,
        reason: str,
    ) -> int:
        """Keep a rejected message; return its id. Odd values are coerced, never refused (a dead
        letter is the last place a message can go); database errors propagate for the caller's retry."""
        data = _bytes(raw)
        return int(
            await self._pool.fetchval(
                sql.ADD,
                _text(tenant, 256),
                _text(family, 64),
                _text(origin),
                _headers(headers),
                None if device is None else _text(device, 1024),
                data[: self._max_raw],
                len(data),
                _text(reason) or "no reason given",
            )
        )

    async def page(
        self,
        tenant: str,
        *,
        limit: int = 100,
        offset: int = 0,
        device: str | None = None,
        since: datetime | None = None,
    ) -> list[DeadLetter]:
        """``tenant``'s letters, newest first, of ``device`` and received at or after ``since`` if given."""
        rows = await self._pool.fetch(
            sql.PAGE,
            tenant,
            device,
            since,
            limit,
            offset,
        )
        return [_letter(row) for row in rows]

    async def to_replay(
        self, tenant: str, *, limit: int, device: str | None = None, since: datetime | None = None
    ) -> list[DeadLetter]:
        """Letters not yet replayed successfully, oldest first (so replays keep the order received)."""
        rows = await self._pool.fetch(
            sql.TO_REPLAY,
            tenant,
            device,
            since,
            limit,
            ACCEPTED,
        )
        return [_letter(row) for row in rows]

    async def get(self, tenant: str, letter_id: int) -> DeadLetter | None:
        row = await self._pool.fetchrow(sql.GET, tenant, letter_id)
        return None if row is None else _letter(row)

    async def delete(self, tenant: str, letter_id: int) -> bool:
        status = await self._pool.execute(sql.DELETE, tenant, letter_id)
        return bool(status != "DELETE 0")

    async def forget_before(self, days: int) -> int:
        """Drop letters received more than ``days`` ago (retention); return how many."""
        status = await self._pool.execute(sql.FORGET_BEFORE, days)
        return int(status.rsplit(" ", 1)[-1])

    async def mark_replayed(self, letter_id: int, result: str) -> None:
        await self._pool.execute(
            sql.MARK_REPLAYED,
            letter_id,
            _text(result) or "no reason given",
        )


# --- HTTP: this broker's operator API (not part of NGSI-LD) -----------------------------------

routes = web.RouteTableDef()
LETTERS = "/admin/deadletters"
DEFAULT_LIMIT = 20


def summary(letter: DeadLetter) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": letter.id,
        "receivedAt": format_time(letter.received_at),
        "family": letter.family,
        "origin": letter.origin,
        "device": letter.device,
        "reason": letter.reason,
        "rawSize": letter.raw_size,
    }
    if letter.replayed_at is not None:
        out["replayedAt"] = format_time(letter.replayed_at)
        out["replayResult"] = letter.replay_result
    return out


def detail(letter: DeadLetter) -> dict[str, Any]:
    """A letter with its raw bytes as base64, and as text when they are UTF-8."""
    out = summary(letter)
    out["headers"] = letter.headers
    out["raw"] = base64.b64encode(letter.raw).decode()
    out["truncated"] = letter.raw_size > len(letter.raw)
    with contextlib.suppress(UnicodeDecodeError):
        out["rawText"] = letter.raw.decode("utf-8")
    return out


def _letter_id(request: web.Request) -> int:
    raw = request.match_info["letter_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequestData(f"dead letter id {raw!r} is not a number")
    return int(raw)


def _filters(request: web.Request) -> tuple[str | None, datetime | None]:
    device = request.query.get("device")
    since = request.query.get("since")
    try:
        moment = None if since is None else to_utc(since, where="since")
    except Rejected as rejected:
        raise BadRequestData(rejected.reason) from None
    return device, moment


def _limit(request: web.Request) -> tuple[int, int]:
    page = edge.paging(request, request.app[SETTINGS].max_page)
    if page.limit == 0:
        raise BadRequestData("limit must be positive")
    return page.limit, page.offset


@routes.get(LETTERS)
async def list_letters(request: web.Request) -> web.Response:
    """List a tenant's dead letters, newest first (limit, offset, device, since)."""
    limit, offset = _limit(request)
    device, since = _filters(request)
    letters = await request.app[DEAD_LETTERS].page(
        edge.tenant_of(request), limit=limit, offset=offset, device=device, since=since
    )
    return edge.json_reply([summary(letter) for letter in letters])


async def _existing(request: web.Request) -> DeadLetter:
    letter_id = _letter_id(request)
    letter = await request.app[DEAD_LETTERS].get(edge.tenant_of(request), letter_id)
    if letter is None:
        raise ResourceNotFound(f"dead letter {letter_id} does not exist in this tenant")
    return letter


@routes.get(LETTERS + "/{letter_id}")
async def get_letter(request: web.Request) -> web.Response:
    """One dead letter with its raw message."""
    return edge.json_reply(detail(await _existing(request)))


@routes.delete(LETTERS + "/{letter_id}")
async def delete_letter(request: web.Request) -> web.Response:
    """Forget a dead letter: 204, 404 if there is none."""
    letter = await _existing(request)
    await request.app[DEAD_LETTERS].delete(letter.tenant, letter.id)
    return web.Response(status=204)


def _replayer(request: web.Request) -> Replayer:
    replayer = request.app.get(REPLAYER)
    if replayer is None:
        raise NotImplementedYet("dead letters cannot be replayed: the device pipeline is not running")
    return replayer


async def _replay(request: web.Request, letter: DeadLetter) -> dict[str, Any]:
    if letter.raw_size > len(letter.raw):
        # Parsing a cut message would only give a misleading reason (or, worse, part of a measurement).
        result = f"not replayed: only {len(letter.raw)} of its {letter.raw_size} bytes were kept"
    else:
        result = await _replayer(request).replay(letter)
    await request.app[DEAD_LETTERS].mark_replayed(letter.id, result)
    log.info("dead letter %d replayed: %s", letter.id, result)
    return {"id": letter.id, "result": result}


@routes.post(LETTERS + "/{letter_id}/replay")
async def replay_letter(request: web.Request) -> web.Response:
    """Run one dead letter through the pipeline again; 409 if a replay was accepted already."""
    letter = await _existing(request)
    if letter.replay_result == ACCEPTED:
        raise AlreadyExists(f"dead letter {letter.id} was replayed and accepted already")
    _replayer(request)
    return edge.json_reply(await _replay(request, letter))


@routes.post(LETTERS + "/replay")
async def replay_letters(request: web.Request) -> web.Response:
    """Replay a tenant's letters not yet accepted (device, since, limit), oldest first; one outcome each."""
    _replayer(request)
    limit, _ = _limit(request)
    device, since = _filters(request)
    letters = await request.app[DEAD_LETTERS].to_replay(
        edge.tenant_of(request), limit=limit, device=device, since=since
    )
    return edge.json_reply([await _replay(request, letter) for letter in letters])
