"""An inline @context is kept (ImplicitlyCreated) once the request that carried it has succeeded (issue 11)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from broker.jsonld.resolver import ContextResolver, deferring_inline, keep_pending

INLINE = {"fuzz": "https://example.org/fuzz#"}


class _Cache:
    """Records what the resolver keeps; nothing is hosted, fetched or cached."""

    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []
        self.uses: list[Mapping[str, int]] = []

    def is_hosted(self, url: str) -> bool:
        return False

    async def find(self, tenant: str, url: str) -> dict[str, Any] | None:
        return None

    async def remember(self, tenant: str, url: str, document: dict[str, Any]) -> None:
        raise AssertionError("nothing is fetched here")

    async def keep_implicit(self, tenant: str, document: dict[str, Any]) -> str:
        self.kept.append(document)
        return f"http://hub/jsonldContexts/{len(self.kept)}"

    async def count_uses(self, tenant: str, uses: Mapping[str, int]) -> None:
        self.uses.append(dict(uses))


async def test_outside_a_request_an_inline_context_is_kept_at_once_and_once() -> None:
    cache = _Cache()
    resolver = ContextResolver(cache, None)

    for _ in range(3):
        await resolver.term_map(INLINE, tenant="t")

    assert cache.kept == [{"@context": INLINE}]


async def test_within_a_request_it_is_kept_only_when_the_request_is_served() -> None:
    cache = _Cache()
    resolver = ContextResolver(cache, None)

    async with deferring_inline() as refused:
        term_map = await resolver.term_map(INLINE, tenant="t")
    assert term_map.expand("fuzz:x") == "https://example.org/fuzz#x"
    assert cache.kept == []

    async with deferring_inline() as served:
        await resolver.term_map(INLINE, tenant="t")  # the compiled map is cached by now
    await keep_pending(served)

    assert refused
    assert served
    assert cache.kept == [{"@context": INLINE}]


async def test_a_task_the_request_starts_keeps_its_inline_context_itself() -> None:
    """A task inherits the request's context variables but may outlive it: it does not defer."""
    cache = _Cache()
    resolver = ContextResolver(cache, None)

    async with deferring_inline() as pending:
        await asyncio.get_running_loop().create_task(resolver.term_map(INLINE, tenant="t"))

    assert pending == []
    assert cache.kept == [{"@context": INLINE}]
