"""Where the broker's outbound connections may go: one address rule for every URL a client gives it.

A client names URLs the broker then connects to: remote @contexts (a Link header), notification
endpoints (HTTP and MQTT) and, once registrations are supported, context sources. Without a rule
any of them turns the broker into the client's hand inside the internal network: posting into
its own device pipeline, publishing into the device topics of its own MQTT broker, or probing
what answers at each internal address. So a name is resolved once, every address it gives is
checked, and the connection goes to exactly those addresses (``GuardedResolver``; a literal IP
address, which connectors do not resolve, is checked by ``AddressPolicy.check`` directly).

The rule, in order: an address or host the allow-list names is allowed; one of the broker's own
listeners (its HTTP ports, its MQTT broker, its public URL) is refused; with private addresses
allowed anything else is allowed; otherwise only a globally routable address is.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressRule = Callable[[Address], bool]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}
_REMEMBERED = 4096  # host names whose last answer was a non-public address, kept for error reports


def plain(address: Address) -> Address:
    """The address itself, or the IPv4 address an IPv6 one carries (mapped, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def public_only(address: Address) -> bool:
    """The default rule: a globally routable address (IPv4 inside IPv6 judged as IPv4)."""
    return plain(address).is_global


def literal(host: str) -> Address | None:
    """``host`` as an IP address when it is one (brackets of an IPv6 URL host allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def host_port(url: str) -> tuple[str, int]:
    """The host and port an http(s) or mqtt(s) URL connects to (the scheme's port by default)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or ""), port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)


def _is_local(address: Address) -> bool:
    """Whether ``address`` belongs to this machine: it can be bound to (no packet is sent)."""
    if address.is_unspecified or address.is_loopback:
        return True
    family = socket.AF_INET6 if isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


class RefusedAddress(OSError):
    """A host names or resolves to an address the policy forbids; ``why`` says which rule."""

    def __init__(self, host: str, port: int, address: Address, why: str) -> None:
        super().__init__(f"{host} resolves to {why} {address}")
        self.host = host
        self.port = port
        self.address = address
        self.why = why


NON_PUBLIC = "the non-public address"
OWN = "the broker's own listener at"


@dataclass(frozen=True, slots=True)
class Listener:
    """Something of the broker's own that answers at ``host:port`` (an empty or wildcard host: all)."""

    host: str
    port: int


def parse_allow(entries: Iterable[str]) -> tuple[frozenset[str], tuple[Network, ...]]:
    """Host names (lower-case) and networks of an allow-list of names, IP addresses and CIDRs."""
    names: set[str] = set()
    networks: list[Network] = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return frozenset(names), tuple(networks)


class AddressPolicy:
    """Which addresses outbound connections of one kind (``what``) may go to."""

    def __init__(
        self,
        *,
        what: str,
        setting: str,
        allow_private: bool = False,
        allow: Iterable[str] = (),
        own: Iterable[Listener] = (),
        public: AddressRule = public_only,
        allow_setting: str = "",
    ) -> None:
        self.what = what
        self.setting = setting
        self.allow_setting = allow_setting
        self.allow_private = allow_private
        self._names, self._networks = parse_allow(allow)
        self._own = tuple(own)
        self._own_addresses: dict[Listener, frozenset[Address]] = {}
        self._public = public

    async def learn_listeners(self, resolver: AbstractResolver) -> None:
        """Resolve the names of the broker's own listeners once (at start): their addresses are refused."""
        for listener in self._own:
            address = literal(listener.host)
            if address is not None or not listener.host:
                continue
            try:
                answers = await resolver.resolve(listener.host, listener.port, socket.AF_UNSPEC)
            except OSError as exc:
                log.warning("own listener %s not resolved (%s): refused by name only", listener.host, exc)
                continue
            self._own_addresses[listener] = frozenset(plain(ipaddress.ip_address(a["host"])) for a in answers)

    def is_public(self, address: Address) -> bool:
        return self._public(address)

    def listed(self, host: str, address: Address | None = None) -> bool:
        """Whether the allow-list names ``host`` or contains ``address``."""
        if host.lower().rstrip(".") in self._names:
            return True
        if address is None:
            return False
        return any(plain(address) in net or address in net for net in self._networks)

    def own(self, host: str, port: int, address: Address) -> bool:
        """Whether ``host:port`` at ``address`` reaches one of the broker's own listeners."""
        address = plain(address)
        for listener in self._own:
            if listener.port != port:
                continue
            if host.lower() == listener.host.lower():
                return True
            bound = literal(listener.host) if listener.host else ipaddress.IPv4Address(0)
            if bound is None:
                if address in self._own_addresses.get(listener, ()):
                    return True
            elif plain(bound) == address or (bound.is_unspecified and _is_local(address)):
                return True
        return False

    def refusal(self, host: str, port: int, address: Address) -> RefusedAddress | None:
        """Why a connection to ``host:port`` at ``address`` is refused; None when it is allowed."""
        if self.listed(host, address):
            return None
        if self.own(host, port, address):
            return RefusedAddress(host, port, address, OWN)
        if address.is_unspecified:  # 0.0.0.0 and :: reach this machine, even with private allowed
            return RefusedAddress(host, port, address, NON_PUBLIC)
        if self.allow_private or self._public(address):
            return None
        return RefusedAddress(host, port, address, NON_PUBLIC)

    def check(self, host: str, port: int, address: Address) -> None:
        """Raise RefusedAddress unless the policy allows ``host:port`` at ``address``."""
        refused = self.refusal(host, port, address)
        if refused is not None:
            raise refused

    def explain(self, shown: str, refused: RefusedAddress) -> str:
        """A refusal as the client is told it: the rule, and the setting that would allow it."""
        if refused.why == OWN:
            how = f"name it in {self.allow_setting} to allow it" if self.allow_setting else "never allowed"
            where = f"{refused.address}:{refused.port}"
            return f"{self.what} {shown} reaches {OWN} {where}, refused even with {self.setting}=true; {how}"
        allow = f" or name it in {self.allow_setting}" if self.allow_setting else ""
        return (
            f"{self.what} {shown} resolves to the non-public address {refused.address}; "
            f"set {self.setting}=true{allow} to allow it"
        )

    def hides_details(self, address: Address) -> bool:
        """Whether a failure at ``address`` must be reported without details: the client could not
        otherwise see it (a non-public address admitted by the allow-list). With private addresses
        allowed wholesale the operator has opened the internal network to clients: details go."""
        return not self.allow_private and not self._public(address)


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` and refuses a host any of whose addresses the policy forbids.

    Remembers the names whose last answer held a non-public address, so a failure to reach them
    can be reported without the details the client should not learn.
    """

    def __init__(self, inner: AbstractResolver, policy: AddressPolicy) -> None:
        self._inner = inner
        self.policy = policy
        self._private: OrderedDict[str, Address] = OrderedDict()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        self._private.pop(host, None)
        for result in results:
            address = ipaddress.ip_address(result["host"])
            if not self.policy.is_public(address):
                self._private[host] = address
                while len(self._private) > _REMEMBERED:
                    self._private.popitem(last=False)
            self.policy.check(host, port, address)
        return results

    async def addresses(self, host: str, port: int) -> Sequence[str]:
        """The checked addresses to connect to for ``host:port`` (a literal is checked, not resolved)."""
        address = literal(host)
        if address is not None:
            self.policy.check(host, port, address)
            return [str(address)]
        return [r["host"] for r in await self.resolve(host, port, socket.AF_UNSPEC)]

    def check_url(self, url: str) -> None:
        """Refuse a URL whose host is a literal address the policy forbids (names: see ``resolve``)."""
        host, port = host_port(url)
        address = literal(host)
        if address is not None:
            self.policy.check(host, port, address)

    def hides_details(self, url: str) -> bool:
        """Whether a failure to reach ``url`` must be reported without details."""
        host, _ = host_port(url)
        address = literal(host)
        if address is None:
            address = self._private.get(host)
        return address is not None and self.policy.hides_details(address)

    async def close(self) -> None:
        await self._inner.close()
