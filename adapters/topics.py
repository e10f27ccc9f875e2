"""Which device topics this hub consumes on MQTT: per family (NGSI_MQTT_FAMILIES), under an
optional prefix (NGSI_MQTT_TOPIC_PREFIX).

Next to a FIWARE IoT Agent or another hub on the same MQTT broker, consuming every family's
topics stores each message twice or dead-letters the other's devices (issue 13 item 16): a
family left out is not subscribed to at all, so its messages stay with whoever else subscribes
(the members of our own shared-subscription group included). A prefix gives a hub topics of its
own: with ``hub1`` it subscribes to ``hub1/json/+/+/attrs``, ``hub1/v3/+/devices/+/up``, ... and
hands the pipeline the usual topic (``/json/...``, ``v3/...``), which dead letters keep for a replay.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters import iotagent, lorawan
from adapters.message import CHIRPSTACK, IOTA_JSON, IOTA_UL, TTS, Family

# NGSI_MQTT_FAMILIES names -> the family, and the topics only that family uses.
NAMES: dict[str, Family] = {"json": IOTA_JSON, "ul": IOTA_UL, "tts": TTS, "chirpstack": CHIRPSTACK}
_OWN_TOPICS: dict[Family, tuple[str, ...]] = {
    IOTA_JSON: iotagent.JSON_TOPICS,
    IOTA_UL: iotagent.UL_TOPICS,
    TTS: lorawan.TTS_TOPICS,
    CHIRPSTACK: lorawan.CHIRPSTACK_TOPICS,
}
# Topics that do not begin with '/' (the network servers'); the IoT Agents' all do.
_LPWA = (TTS, CHIRPSTACK)


def family_of_topic(topic: str) -> Family:
    """The family an MQTT topic belongs to (IoT Agent legacy topics: the parser looks at the body)."""
    if topic.startswith("v3/"):
        return TTS
    if topic.startswith("application/"):
        return CHIRPSTACK
    return IOTA_UL if topic.startswith("/ul/") else IOTA_JSON


def with_prefix(prefix: str, topic: str) -> str:
    """``topic`` under ``prefix``: hub1 + /json/... -> hub1/json/..., hub1 + v3/... -> hub1/v3/..."""
    if not prefix:
        return topic
    return f"{prefix}{topic}" if topic.startswith("/") else f"{prefix}/{topic}"


class Topics:
    """The topic filters to subscribe to, and the usual topic and family of a received one."""

    def __init__(self, families: Iterable[str], prefix: str = "") -> None:
        self.families: frozenset[Family] = frozenset(NAMES[name] for name in families)
        self.prefix = prefix
        usual = [t for family in NAMES.values() if family in self.families for t in _OWN_TOPICS[family]]
        if self.families & {IOTA_JSON, IOTA_UL}:
            usual.extend(iotagent.LEGACY_TOPICS)
        self.usual: tuple[str, ...] = tuple(usual)
        self.filters: tuple[str, ...] = tuple(with_prefix(prefix, t) for t in usual)
        self._lpwa = tuple(
            t.split("/") for family in _LPWA if family in self.families for t in _OWN_TOPICS[family]
        )

    def usual_topic(self, topic: str) -> str:
        """``topic`` as received, without the prefix (unchanged when it does not carry it)."""
        if not self.prefix or not topic.startswith(f"{self.prefix}/"):
            return topic
        rest = topic[len(self.prefix) :]  # '/...'
        # '/v3/...' is a TTS topic under the prefix, or the legacy IoT Agent topic of apikey 'v3':
        # the network servers' topic shapes tell them apart.
        if rest.startswith(("/v3/", "/application/")):
            levels = rest[1:].split("/")
            if any(_matches(f, levels) for f in self._lpwa):
                return rest[1:]
        return rest

    def consumes(self, family: Family) -> bool:
        """Whether messages of ``family`` are taken from MQTT (legacy topics carry both IoT Agent ones)."""
        return family in self.families


def _matches(levels_of_filter: list[str], levels: list[str]) -> bool:
    """Whether topic ``levels`` match a filter's (its wildcards: '+' only; paho's matcher takes
    ~40 us a call, a tenth of a message's whole preparation)."""
    return len(levels) == len(levels_of_filter) and all(
        f in ("+", level) for f, level in zip(levels_of_filter, levels, strict=True)
    )
