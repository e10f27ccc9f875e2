"""Resolving a request's @context (URLs, inline objects, arrays) into a cached TermMap.

The core context is bundled and never fetched. Other URLs are looked up in the tenant's
@contexts in the database (table jsonld_contexts, shared by every broker process), and only
then fetched (broker/jsonld/fetch.py: timeout, size limit, address rule on every hop); the
fetched document is stored so a restart, or the next process, works offline. A context
hosted here is some tenant's: another tenant's hosted URL resolves to nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import orjson

from broker.edge import has_nul, too_deep
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
from broker.jsonld.fetch import ContextFetcher
from broker.store.faults import TRANSIENT
from broker.store.tenants import DEFAULT_TENANT

ContextRef = str | Mapping[str, Any] | list[Any] | None

log = logging.getLogger(__name__)

_MAX_DEPTH = 8
_CACHE_SIZE = 1024
# Uses of stored @contexts are counted in memory and written once this many have gathered (and
# before the @context API reads them), not with one UPDATE per request.
FLUSH_USES_EVERY = 100


class ContextCache(Protocol):
    """Where fetched and hosted @context documents are kept, per tenant (the database)."""

    def is_hosted(self, url: str) -> bool: ...

    async def find(self, tenant: str, url: str) -> dict[str, Any] | None: ...

    async def remember(self, tenant: str, url: str, document: dict[str, Any]) -> None: ...

    async def keep_implicit(self, tenant: str, document: dict[str, Any]) -> str: ...

    async def count_uses(self, tenant: str, uses: Mapping[str, int]) -> None: ...


class ContextResolver:
    """Turns @context references into TermMaps, caching both documents and compiled maps per tenant."""

    def __init__(
        self, cache: ContextCache, fetcher: ContextFetcher | None, *, max_json_depth: int = 64
    ) -> None:
        self._cache = cache
        # None: offline (NGSI_CONTEXT_ALLOW_FETCH=false), only bundled and stored contexts resolve.
        self._fetcher = fetcher
        self._max_json_depth = max_json_depth
        # Per (tenant, context) the compiled map and the stored @context URLs it was made of.
        self._maps: OrderedDict[tuple[str, bytes], tuple[TermMap, tuple[str, ...]]] = OrderedDict()
        self._documents: dict[tuple[str, str], dict[str, Any]] = {}
        self._uses: dict[str, dict[str, int]] = {}
        self._pending_uses = 0
        # Per (tenant, inline context) the URL it was kept under as ImplicitlyCreated.
        self._implicit: dict[tuple[str, bytes], str] = {}

    async def term_map(self, ref: ContextRef, *, tenant: str = DEFAULT_TENANT) -> TermMap:
        """The compiled TermMap of ``ref`` in ``tenant`` (None or only core URLs give the core map).

        An inline @context (an object, or an array holding one) is kept as ImplicitlyCreated
        (within a request: once it has succeeded, see ``deferring_inline``); each use of a stored
        @context is counted for its numberOfHits and lastUsage.
        """
        if ref is None or (isinstance(ref, str) and is_core_url(ref)):
            return core_term_map()
        key = (tenant, orjson.dumps(ref, option=orjson.OPT_SORT_KEYS))
        cached = self._maps.get(key)
        if cached is not None:
            self._maps.move_to_end(key)
            await self._count(tenant, cached[1])
            await self._inline(ref, key)
            return cached[0]
        local: list[Mapping[str, Any]] = []
        seen: set[str] = set()
        await self._collect(ref, tenant, 0, seen, local)
        try:
            term_map = compile_contexts(local, core_document())
        except ContextError as exc:
            raise BadRequestData(f"invalid @context: {exc}") from None
        # Bundled documents (core, Smart Data Models) are no stored rows: nothing to count for them.
        urls = [url for url in seen if not is_core_url(url) and bundled_document(url) is None]
        self._maps[key] = (term_map, tuple(urls))
        if len(self._maps) > _CACHE_SIZE:
            self._maps.popitem(last=False)
        await self._count(tenant, urls)
        await self._inline(ref, key)
        return term_map

    async def _inline(self, ref: ContextRef, key: tuple[str, bytes]) -> None:
        """Keep an inline @context as ImplicitlyCreated and count its use: at once, or, while a
        request is being served (``deferring_inline``), once it has succeeded."""
        if not _is_inline(ref):
            return
        deferred = _PENDING.get()
        # A task the request started inherits the variable but may outlive the request: it keeps at once.
        if deferred is None or deferred[0] is not asyncio.current_task():
            await self._keep(key, ref)
        else:
            deferred[1].append((self, key, ref))

    async def _keep(self, key: tuple[str, bytes], ref: ContextRef) -> None:
        tenant = key[0]
        url = self._implicit.get(key)
        if url is None:
            url = await self._cache.keep_implicit(tenant, {"@context": ref})
            if len(self._implicit) >= _CACHE_SIZE:
                self._implicit.clear()
            self._implicit[key] = url
        await self._count(tenant, [url])

    async def _count(self, tenant: str, urls: tuple[str, ...] | list[str]) -> None:
        if not urls:
            return
        counts = self._uses.setdefault(tenant, {})
        for url in urls:
            counts[url] = counts.get(url, 0) + 1
        self._pending_uses += len(urls)
        if self._pending_uses >= FLUSH_USES_EVERY:
            await self.flush_uses()

    async def flush_uses(self) -> None:
        """Write the uses counted so far (the @context API calls this before it answers).

        Best effort: numberOfHits is a statistic, so a database that is away loses these counts
        rather than failing the request that happened to reach the threshold.
        """
        uses, self._uses, self._pending_uses = self._uses, {}, 0
        for tenant, counts in uses.items():
            try:
                await self._cache.count_uses(tenant, counts)
            except TRANSIENT as exc:
                log.warning("@context use counts of tenant %r not written: %s", tenant, exc)

    def forget(self, tenant: str, url: str) -> None:
        """Drop a URL's document and every compiled map (after a delete or reload)."""
        self._documents.pop((tenant, url), None)
        self._maps.clear()
        self._implicit.clear()

    async def _collect(
        self, ref: Any, tenant: str, depth: int, seen: set[str], out: list[Mapping[str, Any]]
    ) -> None:
        """Flatten ``ref`` into local context objects, in order, dereferencing URLs."""
        if depth > _MAX_DEPTH:
            raise BadRequestData("@context nesting is deeper than 8 levels")
        if ref is None:
            return
        if isinstance(ref, list):
            for item in ref:
                await self._collect(item, tenant, depth + 1, seen, out)
        elif isinstance(ref, str):
            if is_core_url(ref) or ref in seen:
                return
            seen.add(ref)
            document = await self.document(ref, tenant)
            for item in context_objects(document):
                await self._collect(item, tenant, depth + 1, seen, out)
        elif isinstance(ref, Mapping):
            imported = ref.get("@import")
            if isinstance(imported, str):
                await self._collect(imported, tenant, depth + 1, seen, out)
            out.append(ref)
        else:
            raise BadRequestData(f"@context entries must be URLs or objects, not {type(ref).__name__}")

    async def document(self, url: str, tenant: str = DEFAULT_TENANT) -> dict[str, Any]:
        """The @context document at ``url``: memory, bundled, the tenant's stored ones, the network."""
        document = self._documents.get((tenant, url)) or bundled_document(url)
        if document is not None:
            return document
        document = await self._cache.find(tenant, url)
        if document is None:
            if self._cache.is_hosted(url):
                raise LdContextNotAvailable(f"@context {url} is not hosted for this tenant")
            document = await self._fetch(url)
            await self._cache.remember(tenant, url, document)
        self._documents[(tenant, url)] = document
        return document

    async def _fetch(self, url: str) -> dict[str, Any]:
        if not url.startswith(("http://", "https://")):
            raise BadRequestData(f"@context reference {url!r} is not an http(s) URL")
        if self._fetcher is None:
            raise LdContextNotAvailable(f"@context {url} is not cached and fetching is disabled")
        body = await self._fetcher.get(url)
        try:
            document = orjson.loads(body)
            context_objects(document)
        except (orjson.JSONDecodeError, ContextError) as exc:
            raise LdContextNotAvailable(f"@context {url} is not a JSON-LD context document: {exc}") from None
        # What cannot be stored (jsonb holds no U+0000, orjson writes at most 255 levels) cannot be cached.
        if has_nul(body) or too_deep(body, document, self._max_json_depth):
            raise LdContextNotAvailable(f"@context {url} holds a NUL character or nests too deep to be kept")
        log.info("fetched @context %s (%d bytes)", url, len(body))
        return dict(document)

    async def refetch(self, tenant: str, url: str) -> dict[str, Any]:
        """Download ``url`` again (reload of a Cached context); the caller stores it."""
        document = await self._fetch(url)
        self.forget(tenant, url)
        return document


# Inline @contexts met while one request is served: (resolver, (tenant, context), the context).
Pending = list[tuple[ContextResolver, tuple[str, bytes], ContextRef]]
_PENDING: ContextVar[tuple[asyncio.Task[Any] | None, Pending] | None] = ContextVar(
    "ngsi_pending_inline_contexts", default=None
)


@asynccontextmanager
async def deferring_inline() -> AsyncIterator[Pending]:
    """While inside, inline @contexts are not kept but gathered; ``keep_pending`` keeps them
    (the request was served), or nothing does (it was refused and changes nothing)."""
    pending: Pending = []
    token = _PENDING.set((asyncio.current_task(), pending))
    try:
        yield pending
    finally:
        _PENDING.reset(token)


async def keep_pending(pending: Pending) -> None:
    """Keep the inline @contexts a served request carried (ImplicitlyCreated) and count their use.

    Best effort, like the use counts: the request has succeeded, so a database that is away
    loses the listing of its inline @context rather than turning the success into an error.
    """
    for resolver, key, ref in pending:
        try:
            await resolver._keep(key, ref)
        except TRANSIENT as exc:
            log.warning("inline @context of tenant %r not kept: %s", key[0], exc)


def _is_inline(ref: Any) -> bool:
    """True when a @context is, or holds, a JSON object (not only URLs)."""
    return isinstance(ref, Mapping) or (isinstance(ref, list) and any(isinstance(i, Mapping) for i in ref))
