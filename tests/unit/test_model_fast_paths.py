"""The shortcuts the write path takes (cached time and name checks, UTC formatting) answer as the long way did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import BadRequestData
from broker.jsonld.context import core_term_map
from broker.model.entity import format_time
from broker.model.parse import check_time, parse_entity


def slow_format(moment: datetime) -> str:
    """format_time the long way (the reference): shortest exact form, clause 4.6.3."""
    moment = moment.astimezone(UTC)
    micro = moment.microsecond
    spec = "seconds" if micro == 0 else "milliseconds" if micro % 1000 == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


@given(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.just(UTC)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_format_time_gives_the_same_text_for_utc_and_offset_times(moment: datetime, minutes: int) -> None:
    shifted = moment.astimezone(timezone(timedelta(minutes=minutes)))

    assert format_time(moment) == slow_format(moment)
    assert format_time(shifted) == slow_format(moment)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-11-22T10:00:00+09:00", "2026-11-22T01:00:00Z"),
        ("2026-11-22T01:00:00.000Z", "2026-11-22T01:00:00Z"),
        ("2026-11-22T01:00:00.5Z", "2026-11-22T01:00:00.500Z"),
        ("2026-11-22T01:00:00.000123Z", "2026-11-22T01:00:00.000123Z"),
    ],
)
def test_a_date_time_is_written_in_its_shortest_exact_form(sent: str, stored: str) -> None:
    """Clause 4.6.3 and the examples of annex C: no '.000' when there are no milliseconds (issue 13 item 14)."""
    assert check_time(sent, "observedAt") == stored


def test_a_repeated_observed_at_is_normalised_the_same_each_time() -> None:
    first = check_time("2025-09-01T10:00:03.205+09:00", "observedAt")
    again = check_time("2025-09-01T10:00:03.205+09:00", "observedAt")

    assert first == again == "2025-09-01T01:00:03.205Z"


def test_a_bad_observed_at_is_refused_every_time_it_is_sent() -> None:
    for _ in range(2):
        with pytest.raises(BadRequestData, match="not an ISO 8601"):
            check_time("2025-13-01T00:00:00Z", "observedAt")


def test_a_forbidden_attribute_name_is_refused_every_time_it_is_sent() -> None:
    body = {"id": "urn:ngsi-ld:T:1", "type": "T", "bad name": 1}
    for _ in range(2):
        with pytest.raises(BadRequestData, match="forbidden character"):
            parse_entity(body, core_term_map())


def test_an_instance_with_two_value_members_names_the_one_it_must_not_have() -> None:
    body = {"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property", "value": 1, "object": "urn:x:y"}}

    with pytest.raises(BadRequestData, match="a Property cannot have a 'object' member"):
        parse_entity(body, core_term_map())
