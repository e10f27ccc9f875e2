"""The temporal query (clause 4.11) and aggregation parameters, parsed once at the edge.

Semantics chosen where the clause leaves room:
* ``before``: time < timeAt; ``after``: time > timeAt; ``between``: timeAt <= time < endTimeAt.
* timeproperty ``observedAt`` (default) reads an instance without observedAt as observed when it
  was written; ``deletedAt`` selects only the markers of removed instances.
* ``lastN``: the N most recent instances per attribute (and datasetId) within the window,
  returned in time order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from broker.errors import BadRequestData
from broker.model.entity import parse_time
from broker.query.duration import parse_duration

TIME_PROPERTIES = ("observedAt", "createdAt", "modifiedAt", "deletedAt")
AGGREGATION_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
# 'stdev' as the issue spells it, accepted beside the spec's 'stddev'.
_METHOD_ALIASES = {"stdev": "stddev"}


class TimeRel(StrEnum):
    BEFORE = "before"
    AFTER = "after"
    BETWEEN = "between"


@dataclass(frozen=True, slots=True)
class TemporalQuery:
    """Which instances of each attribute: a time window on a time property, and lastN."""

    timerel: TimeRel | None = None
    time_at: datetime | None = None
    end_time_at: datetime | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None


@dataclass(frozen=True, slots=True)
class Aggregation:
    """aggregatedValues: the methods and the period (None: the whole window is one period)."""

    methods: tuple[str, ...]
    period: timedelta | None


def _time(raw: Any, name: str) -> datetime:
    if not isinstance(raw, str) or "T" not in raw:
        raise BadRequestData(f"{name} must be an ISO 8601 date-time such as 2026-11-22T10:00:00Z")
    try:
        return parse_time(raw)
    except (ValueError, OverflowError):
        raise BadRequestData(f"{name} {raw!r} is not an ISO 8601 date-time") from None


def _last_n(raw: Any) -> int | None:
    if raw is None:
        return None
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(text, str) or not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise BadRequestData("lastN must be a positive integer")
    return int(text)


def parse_temporal(source: Mapping[str, Any]) -> TemporalQuery:
    """A TemporalQuery from URL parameters or a TemporalQuery object (clause 5.2.21)."""
    raw_rel = source.get("timerel")
    timeproperty = source.get("timeproperty", "observedAt")
    if timeproperty not in TIME_PROPERTIES:
        raise BadRequestData(f"timeproperty must be one of {', '.join(TIME_PROPERTIES)}")
    last_n = _last_n(source.get("lastN"))
    if raw_rel is None:
        if "timeAt" in source or "endTimeAt" in source:
            raise BadRequestData("timeAt and endTimeAt need timerel (before, after or between)")
        return TemporalQuery(timeproperty=timeproperty, last_n=last_n)
    try:
        timerel = TimeRel(raw_rel)
    except ValueError:
        raise BadRequestData("timerel must be before, after or between") from None
    if "timeAt" not in source:
        raise BadRequestData(f"timerel={timerel} needs timeAt")
    time_at = _time(source["timeAt"], "timeAt")
    end = None
    if timerel is TimeRel.BETWEEN:
        if "endTimeAt" not in source:
            raise BadRequestData("timerel=between needs endTimeAt")
        end = _time(source["endTimeAt"], "endTimeAt")
        if end <= time_at:
            raise BadRequestData("endTimeAt must be later than timeAt")
    elif "endTimeAt" in source:
        raise BadRequestData("endTimeAt goes with timerel=between only")
    return TemporalQuery(timerel, time_at, end, timeproperty, last_n)


def parse_aggregation(methods: Any, period: Any) -> Aggregation:
    """aggrMethods (a comma-separated list or an array) and aggrPeriodDuration (ISO 8601)."""
    if methods is None:
        raise BadRequestData("aggregatedValues needs aggrMethods, e.g. aggrMethods=avg,max")
    names = methods.split(",") if isinstance(methods, str) else methods
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BadRequestData("aggrMethods must list aggregation methods")
    chosen: list[str] = []
    for name in (n.strip() for n in names):
        name = _METHOD_ALIASES.get(name, name)
        if name not in AGGREGATION_METHODS:
            known = ", ".join(AGGREGATION_METHODS)
            raise BadRequestData(f"aggregation method {name!r} is not one of {known}")
        if name not in chosen:
            chosen.append(name)
    duration = None
    if period is not None:
        if not isinstance(period, str):
            raise BadRequestData("aggrPeriodDuration must be an ISO 8601 duration string")
        try:
            duration = parse_duration(period)
        except ValueError as exc:
            raise BadRequestData(f"aggrPeriodDuration {exc}") from None
        if duration <= timedelta(0):
            duration = None  # P0D: the whole window is one period (clause 4.5.19)
    return Aggregation(tuple(chosen), duration)
