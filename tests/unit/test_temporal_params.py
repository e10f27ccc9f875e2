"""Temporal query parameters (clause 4.11), aggregation parameters and ISO 8601 durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import BadRequestData
from broker.query.duration import format_duration, parse_duration, parse_keep
from broker.query.temporal import TimeRel, parse_aggregation, parse_temporal

T0 = "2026-11-22T00:00:00Z"
T1 = "2026-11-23T00:00:00Z"


def test_no_timerel_means_every_instance_on_observed_at() -> None:
    tq = parse_temporal({})
    assert (tq.timerel, tq.time_at, tq.timeproperty, tq.last_n) == (None, None, "observedAt", None)


def test_between_keeps_both_bounds_as_utc_datetimes() -> None:
    tq = parse_temporal({"timerel": "between", "timeAt": T0, "endTimeAt": "2026-11-23T09:00:00+09:00"})
    assert tq.timerel is TimeRel.BETWEEN
    assert tq.time_at == datetime(2026, 11, 22, tzinfo=UTC)
    assert tq.end_time_at == datetime(2026, 11, 23, tzinfo=UTC)


@pytest.mark.parametrize("rel", ["before", "after"])
def test_before_and_after_need_only_time_at(rel: str) -> None:
    tq = parse_temporal({"timerel": rel, "timeAt": T0, "lastN": "3", "timeproperty": "modifiedAt"})
    assert (tq.timerel, tq.last_n, tq.timeproperty) == (TimeRel(rel), 3, "modifiedAt")


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"timerel": "during", "timeAt": T0}, "timerel must be"),
        ({"timerel": "after"}, "needs timeAt"),
        ({"timeAt": T0}, "need timerel"),
        ({"timerel": "between", "timeAt": T0}, "needs endTimeAt"),
        ({"timerel": "between", "timeAt": T1, "endTimeAt": T0}, "later than timeAt"),
        ({"timerel": "after", "timeAt": T0, "endTimeAt": T1}, "between only"),
        ({"timerel": "after", "timeAt": "yesterday"}, "ISO 8601"),
        ({"timerel": "after", "timeAt": "2026-13-01T00:00:00Z"}, "not an ISO 8601"),
        ({"timeproperty": "seenAt"}, "timeproperty"),
        ({"lastN": "0"}, "lastN"),
        ({"lastN": "-2"}, "lastN"),
        ({"lastN": "ten"}, "lastN"),
    ],
)
def test_a_wrong_temporal_query_is_a_bad_request_saying_why(params: dict[str, str], says: str) -> None:
    with pytest.raises(BadRequestData, match=says):
        parse_temporal(params)


def test_a_temporal_query_object_may_carry_last_n_as_a_number() -> None:
    assert parse_temporal({"lastN": 5}).last_n == 5


def test_aggregation_methods_come_in_order_without_duplicates_and_stdev_means_stddev() -> None:
    aggregation = parse_aggregation("avg,max,avg,stdev", "PT10M")
    assert aggregation.methods == ("avg", "max", "stddev")
    assert aggregation.period == timedelta(minutes=10)


def test_aggregation_without_a_period_or_with_p0d_makes_one_period() -> None:
    assert parse_aggregation(["sum"], None).period is None
    assert parse_aggregation(["sum"], "P0D").period is None


@pytest.mark.parametrize(
    ("methods", "period", "says"),
    [
        (None, "PT1H", "needs aggrMethods"),
        ("median", "PT1H", "not one of"),
        ("avg", "P1M", "months and years"),
        ("avg", "ten minutes", "not an ISO 8601 duration"),
        ([], None, "must list"),
    ],
)
def test_wrong_aggregation_parameters_are_bad_requests(
    methods: object, period: str | None, says: str
) -> None:
    with pytest.raises(BadRequestData, match=says):
        parse_aggregation(methods, period)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT10M", timedelta(minutes=10)),
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT0.5S", timedelta(milliseconds=500)),
    ],
)
def test_fixed_length_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "7D", "P1Y", "PT-1M", "P1.5D"])
def test_other_duration_texts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|months"):
        parse_duration(text)


def test_keep_is_forever_when_empty_and_must_be_positive() -> None:
    assert parse_keep("") is None
    assert parse_keep("forever") is None
    assert parse_keep("P7D") == timedelta(days=7)
    with pytest.raises(ValueError, match="positive"):
        parse_keep("PT0S")


@given(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=100_000)))
def test_a_formatted_duration_parses_back_to_the_same_length(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value
