"""Which notification endpoints the broker will connect to (broker.netguard's rule, from the settings).

Checked twice: when a subscription is created or changed (400 naming the rule and the setting)
and at every connection a delivery makes (the name may resolve elsewhere by then); a refused
delivery is a failed attempt whose lastErrorReason says only that the policy refused it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from broker.errors import BadRequestData
from broker.netguard import AddressPolicy, GuardedResolver, Listener, RefusedAddress, host_port

log = logging.getLogger(__name__)

ALLOW_PRIVATE = "NGSI_NOTIFY_ALLOW_PRIVATE"
ALLOW = "NGSI_NOTIFY_ALLOW"
# What lastErrorReason says of a delivery the address policy refused, whatever the address.
REFUSED = "endpoint refused by the address policy"
# ...and of a failure at an address the client could not otherwise see (details go to the log).
WITHHELD = "delivery to a non-public address failed (details in the broker's log)"


def own_listeners(host: str, ports: Iterable[int], urls: Iterable[str]) -> list[Listener]:
    """The broker's own HTTP ports on ``host`` and what ``urls`` name (its MQTT broker, its public
    URL): refused as endpoints unless the allow-list names them."""
    listeners = [Listener(host, port) for port in ports]
    for url in urls:
        url_host, port = host_port(url)
        if url_host:
            listeners.append(Listener(url_host, port))
    return listeners


def notify_policy(
    *, allow_private: bool = False, allow: Iterable[str] = (), own: Iterable[Listener] = ()
) -> AddressPolicy:
    """The address rule of notification endpoints (NGSI_NOTIFY_ALLOW_PRIVATE, NGSI_NOTIFY_ALLOW)."""
    return AddressPolicy(
        what="notification endpoint",
        setting=ALLOW_PRIVATE,
        allow_setting=ALLOW,
        allow_private=allow_private,
        allow=allow,
        own=own,
    )


async def check_endpoint(resolver: GuardedResolver, uri: str, within: float = 5.0) -> None:
    """BadRequestData when ``uri``'s host names or resolves to an address the policy refuses.

    A name that does not resolve now (or not within ``within`` seconds) is accepted: delivery
    resolves and checks it again.
    """
    host, port = host_port(uri)
    if not host or urlsplit(uri).scheme.lower() not in ("http", "https", "mqtt", "mqtts"):
        return  # the subscription parser has refused it already
    try:
        async with asyncio.timeout(within):
            await resolver.addresses(host, port)
    except RefusedAddress as refused:
        raise BadRequestData(resolver.policy.explain(host, refused)) from None
    except (OSError, TimeoutError) as exc:
        log.info("notification endpoint host %s does not resolve now (%r); accepted", host, exc)
