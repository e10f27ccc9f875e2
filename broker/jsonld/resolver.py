"""Resolving a request's @context (URLs, inline objects, arrays) into a cached TermMap.

The core context is bundled and never fetched. Other URLs are looked up in the
database cache (table jsonld_contexts, shared by every broker process), and only
then fetched with a timeout and a size limit; the fetched document is stored so a
restart, or the next process, works offline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from yarl import URL

from broker.errors import BadRequestData, LdContextNotAvailable
from broker.jsonld.context import (
    ContextError,
    TermMap,
    bundled_document,
    compile_contexts,
    context_objects,
    core_document,
    core_term_map,
    is_core_url,
)

ContextRef = str | Mapping[str, Any] | list[Any] | None

log = logging.getLogger(__name__)

_MAX_DEPTH = 8
_CACHE_SIZE = 1024


async def _refuse_internal(url: str) -> None:
    """Refuse URLs resolving to loopback, private or link-local addresses (no SSRF via a Link header)."""
    host = URL(url).host or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError as exc:
        raise LdContextNotAvailable(f"@context {url}: host {host!r} cannot be resolved ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise LdContextNotAvailable(
                f"@context {url} resolves to the non-public address {address}; "
                "set NGSI_CONTEXT_ALLOW_PRIVATE=true to allow it"
            )


class ContextCache(Protocol):
    """Where fetched and hosted @context documents are kept (the database)."""

    async def find(self, url: str) -> dict[str, Any] | None: ...

    async def remember(self, url: str, document: dict[str, Any]) -> None: ...


class ContextResolver:
    """Turns @context references into TermMaps, caching both documents and compiled maps."""

    def __init__(
        self,
        cache: ContextCache,
        session: aiohttp.ClientSession | None,
        *,
        timeout: float,
        max_bytes: int,
        allow_fetch: bool,
        allow_private: bool = False,
    ) -> None:
        self._cache = cache
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_bytes = max_bytes
        self._allow_fetch = allow_fetch
        self._allow_private = allow_private
        self._maps: OrderedDict[bytes, TermMap] = OrderedDict()
        self._documents: dict[str, dict[str, Any]] = {}

    async def term_map(self, ref: ContextRef) -> TermMap:
        """The compiled TermMap of ``ref`` (None or only core URLs give the core map)."""
        if ref is None or (isinstance(ref, str) and is_core_url(ref)):
            return core_term_map()
        key = orjson.dumps(ref, option=orjson.OPT_SORT_KEYS)
        cached = self._maps.get(key)
        if cached is not None:
            self._maps.move_to_end(key)
            return cached
        local: list[Mapping[str, Any]] = []
        await self._collect(ref, 0, set(), local)
        try:
            term_map = compile_contexts(local, core_document())
        except ContextError as exc:
            raise BadRequestData(f"invalid @context: {exc}") from None
        self._maps[key] = term_map
        if len(self._maps) > _CACHE_SIZE:
            self._maps.popitem(last=False)
        return term_map

    def forget(self, url: str) -> None:
        """Drop a URL's document and every compiled map (after a delete or reload)."""
        self._documents.pop(url, None)
        self._maps.clear()

    async def _collect(self, ref: Any, depth: int, seen: set[str], out: list[Mapping[str, Any]]) -> None:
        """Flatten ``ref`` into local context objects, in order, dereferencing URLs."""
        if depth > _MAX_DEPTH:
            raise BadRequestData("@context nesting is deeper than 8 levels")
        if ref is None:
            return
        if isinstance(ref, list):
            for item in ref:
                await self._collect(item, depth + 1, seen, out)
        elif isinstance(ref, str):
            if is_core_url(ref) or ref in seen:
                return
            seen.add(ref)
            document = await self.document(ref)
            for item in context_objects(document):
                await self._collect(item, depth + 1, seen, out)
        elif isinstance(ref, Mapping):
            imported = ref.get("@import")
            if isinstance(imported, str):
                await self._collect(imported, depth + 1, seen, out)
            out.append(ref)
        else:
            raise BadRequestData(f"@context entries must be URLs or objects, not {type(ref).__name__}")

    async def document(self, url: str) -> dict[str, Any]:
        """The @context document at ``url``: memory, bundled, then database, then the network."""
        document = self._documents.get(url) or bundled_document(url)
        if document is not None:
            return document
        document = await self._cache.find(url)
        if document is None:
            document = await self._fetch(url)
            await self._cache.remember(url, document)
        self._documents[url] = document
        return document

    async def _fetch(self, url: str) -> dict[str, Any]:
        if not url.startswith(("http://", "https://")):
            raise BadRequestData(f"@context reference {url!r} is not an http(s) URL")
        if not self._allow_fetch or self._session is None:
            raise LdContextNotAvailable(f"@context {url} is not cached and fetching is disabled")
        if not self._allow_private:
            await _refuse_internal(url)
        try:
            async with self._session.get(
                url,
                timeout=self._timeout,
                headers={"Accept": "application/ld+json, application/json;q=0.9"},
            ) as response:
                if response.status != 200:
                    raise LdContextNotAvailable(f"@context {url} answered HTTP {response.status}")
                body = await response.content.read(self._max_bytes + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LdContextNotAvailable(
                f"@context {url} could not be fetched: {exc or type(exc).__name__}"
            ) from None
        if len(body) > self._max_bytes:
            raise LdContextNotAvailable(f"@context {url} is larger than {self._max_bytes} bytes")
        try:
            document = orjson.loads(body)
            context_objects(document)
        except (orjson.JSONDecodeError, ContextError) as exc:
            raise LdContextNotAvailable(f"@context {url} is not a JSON-LD context document: {exc}") from None
        log.info("fetched @context %s (%d bytes)", url, len(body))
        return dict(document)

    async def refetch(self, url: str) -> dict[str, Any]:
        """Download ``url`` again (reload of a Cached context); the caller stores it."""
        document = await self._fetch(url)
        self.forget(url)
        return document
