"""Where an MQTT URL points, and what a publish may ask for: one parser and one QoS set for every use.

``mqtt[s]://[user[:password]@]host[:port][/topic[/subtopic]*]`` (clause 7.2 of GS CIM 009 for
notification endpoints; the same form names the broker the device adapters connect to).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# MQTT QoS levels: 0 at most once, 1 at least once, 2 exactly once. Clause 7.2 lets a
# notification endpoint ask for any of them (notifierInfo MQTT-QoS, default 0).
QOS = frozenset({0, 1, 2})


class MqttVersion(enum.StrEnum):
    """The protocol versions of clause 7.2, as notifierInfo MQTT-Version names them."""

    V311 = "mqtt3.1.1"
    V5 = "mqtt5.0"


@dataclass(frozen=True, slots=True)
class Broker:
    """An MQTT broker and the credentials to connect to it."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Broker:
        """The broker an MQTT URL names (its topic, if any, ignored); ValueError if it is not one."""
        return parse_url(url)[0]

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> tuple[Broker, str]:
    """The broker and the topic (empty when the URL has no path) of an mqtt:// or mqtts:// URL.

    Raises ValueError saying what is wrong: another scheme, no host, a port that is no number.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT URL {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"MQTT URL {url!r} names no host")
    try:
        port = parts.port or (8883 if scheme == "mqtts" else 1883)
    except ValueError:
        raise ValueError(f"MQTT URL {url!r} has an invalid port") from None
    broker = Broker(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.username and parts.password is not None else None,
        tls=scheme == "mqtts",
    )
    return broker, unquote(parts.path.lstrip("/"))
