"""ISO 8601 durations of fixed length (aggrPeriodDuration, retention's keep)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"P(?:(?P<weeks>\d{1,6})W)?(?:(?P<days>\d{1,6})D)?"
    r"(?:T(?:(?P<hours>\d{1,7})H)?(?:(?P<minutes>\d{1,9})M)?(?:(?P<seconds>\d{1,10}(?:\.\d{1,6})?)S)?)?"
)
_CALENDAR = re.compile(r"P(?:\d+Y)?(?:\d+M)?")


def parse_duration(text: str) -> timedelta:
    """A duration such as P7D, PT10M, P1DT12H; ValueError for others (months and years vary in length)."""
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        if _CALENDAR.match(text) and ("Y" in text or "M" in text.split("T")[0]):
            raise ValueError(f"{text!r}: months and years have no fixed length; use weeks or days")
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT10M, PT1H or P7D")
    parts = {name: float(value) for name, value in match.groupdict().items() if value is not None}
    try:
        return timedelta(**parts)
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration") from None


def parse_keep(text: str) -> timedelta | None:
    """How long history is kept: a positive duration, or None (forever) for '' or 'forever'."""
    if text.strip() in ("", "forever"):
        return None
    keep = parse_duration(text.strip())
    if keep <= timedelta(0):
        raise ValueError("must be a positive duration (or empty for forever)")
    return keep


def check_keep(text: str) -> str:
    """``text`` stripped, once parse_keep accepts it (settings keep the text, users parse it)."""
    parse_keep(text)
    return text.strip()


def format_duration(value: timedelta) -> str:
    """The ISO 8601 text of a duration in days and seconds, e.g. P7D, PT600S or PT0.25S."""
    seconds = f"{value.seconds}.{value.microseconds:06d}".rstrip("0").rstrip(".")
    out = f"P{value.days}D" if value.days else "P"
    if seconds != "0":
        out += f"T{seconds}S"
    return out if out != "P" else "PT0S"
