"""UltraLight 2.0, the FIWARE IoT Agent UL text format: ``t|15|h|45``, groups split by ``#``.

A group is ``key|value`` pairs; a group with an odd number of fields starts with the time the
measures were taken, returned as the ``TimeInstant`` measure (as the IoT Agent does). A value is
an int or a float when the token is a finite number written in decimal (``15``, ``-0.5``,
``1e3``), else it stays text (``on``, ``0x1F``, ``NaN``, ``1_000``), so a device that sends a
code keeps its exact characters. Whitespace around the whole payload is ignored (HTTP bodies
often end in a newline). Command replies are ``<device>@<command>|<result>``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.message import Measures, Rejected, to_utc

TIME_INSTANT = "TimeInstant"
# Decimal numbers only: Python's float() also takes '1_000', 'inf' and surrounding spaces.
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def value_of(token: str) -> Any:
    """A UL token as a number when it is a finite decimal number, else as the text itself."""
    if _INTEGER.fullmatch(token):
        return int(token)
    if _DECIMAL.fullmatch(token):
        number = float(token)
        if math.isfinite(number):
            return number
    return token


def parse(text: str) -> list[Measures]:
    """The measure groups of a UL 2.0 payload, one dict per ``#`` group; Rejected if malformed."""
    body = text.strip()
    if not body:
        raise Rejected("UltraLight payload is empty")
    groups: list[Measures] = []
    for number, group in enumerate(body.split("#"), start=1):
        if group:
            groups.append(_group(group, number))
    if not groups:
        raise Rejected("UltraLight payload has no measures")
    return groups


def _group(group: str, number: int) -> Measures:
    fields = group.split("|")
    measures: Measures = {}
    if len(fields) % 2 == 1:
        # The IoT Agent's convention: an odd field count means a leading timestamp.
        stamp = fields.pop(0)
        try:
            to_utc(stamp)
        except Rejected:
            raise Rejected(
                f"UltraLight group {number} has an odd number of fields and {stamp!r} first is not a time"
            ) from None
        measures[TIME_INSTANT] = stamp
    for key, token in zip(fields[::2], fields[1::2], strict=True):
        if not key:
            raise Rejected(f"UltraLight group {number} has an empty measure name (in {group!r})")
        measures[key] = value_of(token)
    if len(measures) == (TIME_INSTANT in measures):
        raise Rejected(f"UltraLight group {number} has no measures")
    return measures


def to_text(groups: Sequence[Mapping[str, Any]]) -> str:
    """The UL 2.0 payload of measure groups (a ``TimeInstant`` measure leads its group); ValueError if
    a name or a value cannot be written in UL (empty, or containing ``|``, ``#`` or a line break)."""
    return "#".join(_group_text(group) for group in groups)


def _group_text(group: Mapping[str, Any]) -> str:
    fields: list[str] = []
    if TIME_INSTANT in group:
        fields.append(_token(group[TIME_INSTANT], TIME_INSTANT))
    for key, value in group.items():
        if key != TIME_INSTANT:
            fields += [_token(key, "name"), _token(value, key, empty_ok=True)]
    return "|".join(fields)


def _token(value: Any, what: str, *, empty_ok: bool = False) -> str:
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float | str):
        text = str(value)
    else:
        raise ValueError(f"{what}: {value!r} cannot be written in UltraLight")
    if (not text and not empty_ok) or any(c in text for c in "|#\r\n"):
        raise ValueError(f"{what}: {text!r} cannot be written in UltraLight")
    return text


@dataclass(frozen=True, slots=True)
class CommandReply:
    """A device's answer to a command: ``dev1@ping|pong`` -> device dev1, command ping, result pong."""

    device: str
    command: str
    result: str


def parse_command_reply(text: str) -> CommandReply:
    """A UL command reply ``<device>@<command>|<result>``; Rejected if it is not one."""
    head, bar, result = text.strip().partition("|")
    device, at, command = head.partition("@")
    if not bar or not at or not device or not command:
        raise Rejected(f"UltraLight command reply {text[:80]!r} is not <device>@<command>|<result>")
    return CommandReply(device, command, result)


def format_command(device: str, command: str, value: Any) -> str:
    """The UL command the IoT Agent sends: ``dev1@ping|value``, or ``dev1@set|a=1|b=2`` for parameters."""
    if isinstance(value, Mapping):
        params = "|".join(f"{_token(k, 'parameter')}={_token(v, k, empty_ok=True)}" for k, v in value.items())
        return f"{device}@{command}|{params}"
    return f"{device}@{command}|{_token(value, command, empty_ok=True)}"
