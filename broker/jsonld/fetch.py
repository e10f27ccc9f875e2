"""Downloading a remote @context without letting a Link header reach the internal network.

The address rule (broker.netguard: public addresses only, unless NGSI_CONTEXT_ALLOW_PRIVATE) is
applied where the connection is made: the connector resolves names through ``GuardedResolver``,
which refuses a name resolving to a forbidden address, and connects to exactly the addresses it
checked (no second lookup a DNS answer could change in between). Redirects are followed here, hop by hop,
so every target is checked the same way; a literal IP address, which the connector does not
resolve, is checked before the request.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from broker.errors import LdContextNotAvailable
from broker.netguard import AddressPolicy, GuardedResolver, RefusedAddress, literal

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


def context_policy(*, allow_private: bool) -> AddressPolicy:
    """The address rule of @context fetches (NGSI_CONTEXT_ALLOW_PRIVATE)."""
    return AddressPolicy(what="@context", setting="NGSI_CONTEXT_ALLOW_PRIVATE", allow_private=allow_private)


class ContextFetcher:
    """GETs @context documents: every hop checked, the body read whole up to ``max_bytes``."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        policy: AddressPolicy | None = None,
        dns: AbstractResolver | None = None,
    ) -> None:
        self._timeout = timeout
        self.max_bytes = max_bytes
        self._policy = policy or context_policy(allow_private=False)
        self._dns = dns
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = GuardedResolver(self._dns or aiohttp.ThreadedResolver(), self._policy)
            # trust_env stays off: a proxy from the environment would connect where the rule cannot see.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str) -> bytes:
        """The body at ``url`` after at most MAX_REDIRECTS checked redirects; LdContextNotAvailable else."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(url)
        except RefusedAddress as exc:
            raise LdContextNotAvailable(self._policy.explain(url, exc)) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                raise LdContextNotAvailable(self._policy.explain(url, exc.os_error)) from None
            raise LdContextNotAvailable(f"@context {url} could not be fetched: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LdContextNotAvailable(
                f"@context {url} could not be fetched: {exc or type(exc).__name__}"
            ) from None

    async def _follow(self, url: str) -> bytes:
        target = URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            self._check_literal(url, target)
            async with self._client().get(
                target,
                allow_redirects=False,
                headers={"Accept": "application/ld+json, application/json;q=0.9"},
            ) as response:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    target = response.url.join(URL(location))
                    continue
                if response.status != 200:
                    raise LdContextNotAvailable(f"@context {url} answered HTTP {response.status}")
                return await self._read(url, response)
        raise LdContextNotAvailable(f"@context {url} redirects more than {MAX_REDIRECTS} times")

    def _check_literal(self, url: str, target: URL) -> None:
        """A hop's scheme, and its host when it is an IP address (names are checked by the resolver)."""
        if target.scheme not in ("http", "https"):
            raise LdContextNotAvailable(f"@context {url} leads to {target}, which is not an http(s) URL")
        address = literal(target.host or "")
        if address is not None:
            self._policy.check(target.host or "", target.port or 0, address)

    async def _read(self, url: str, response: aiohttp.ClientResponse) -> bytes:
        """The whole body (it arrives in several network chunks), refused beyond ``max_bytes``."""
        too_large = LdContextNotAvailable(f"@context {url} is larger than {self.max_bytes} bytes")
        if response.content_length is not None and response.content_length > self.max_bytes:
            raise too_large
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise too_large
        return bytes(body)
