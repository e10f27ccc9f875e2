"""UltraLight 2.0: measure groups, timestamps, number tokens, command replies and commands."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.codecs import ultralight
from adapters.message import Rejected


def test_pairs_become_measures_with_numbers_as_numbers() -> None:
    assert ultralight.parse("t|15|h|45.5|s|on") == [{"t": 15, "h": 45.5, "s": "on"}]


def test_each_hash_separated_group_is_one_measurement() -> None:
    assert ultralight.parse("t|15#t|16#\n") == [{"t": 15}, {"t": 16}]


def test_a_group_with_an_odd_field_count_starts_with_its_time_instant() -> None:
    groups = ultralight.parse("2025-09-01T10:00:00+09:00|t|15#t|16")
    assert groups == [{"TimeInstant": "2025-09-01T10:00:00+09:00", "t": 15}, {"t": 16}]


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("15", 15),
        ("-3", -3),
        ("+7", 7),
        ("0.5", 0.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("-2.5E-1", -0.25),
        ("NaN", "NaN"),
        ("inf", "inf"),
        ("1e999", "1e999"),
        ("1_000", "1_000"),
        ("0x1F", "0x1F"),
        (" 15", " 15"),
        ("", ""),
        ("on", "on"),
    ],
)
def test_a_token_is_a_number_only_when_it_is_a_finite_decimal(token: str, value: Any) -> None:
    parsed = ultralight.parse(f"x|{token}")[0]["x"]
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  \n", "empty"),
        ("#", "no measures"),
        ("t|15|h", "group 1 has an odd number of fields and 't' first is not a time"),
        ("|t|15", "group 1 has an odd number of fields and '' first is not a time"),
        ("t|1#t|15|h", "group 2 has an odd number of fields and 't' first is not a time"),
        ("t|15#|4", "group 2 has an empty measure name"),
        ("2025-09-01T00:00:00Z", "group 1 has no measures"),
    ],
)
def test_malformed_payloads_are_rejected_with_the_group(text: str, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        ultralight.parse(text)


def test_a_command_reply_names_device_command_and_result() -> None:
    reply = ultralight.parse_command_reply("dev1@ping|pong|extra")
    assert (reply.device, reply.command, reply.result) == ("dev1", "ping", "pong|extra")


@pytest.mark.parametrize("text", ["dev1ping|pong", "dev1@ping", "@ping|x", "dev1@|x", ""])
def test_a_malformed_command_reply_is_rejected(text: str) -> None:
    with pytest.raises(Rejected, match=re.escape("not <device>@<command>|<result>")):
        ultralight.parse_command_reply(text)


def test_commands_are_formatted_as_the_iot_agent_sends_them() -> None:
    assert ultralight.format_command("dev1", "ping", "value") == "dev1@ping|value"
    assert ultralight.format_command("gauge-1", "mode", 300) == "gauge-1@mode|300"
    assert ultralight.format_command("d", "set", {"a": 1, "b": "x"}) == "d@set|a=1|b=x"
    assert ultralight.format_command("d", "reset", None) == "d@reset|"
    with pytest.raises(ValueError, match="cannot be written"):
        ultralight.format_command("d", "say", "a|b")


# Text that stays text: no separators, not a decimal number, no whitespace the payload's trim would cut.
texts = st.text(
    st.characters(blacklist_characters="|#\r\n", blacklist_categories=["Cs"]), max_size=12
).filter(lambda s: isinstance(ultralight.value_of(s), str) and s == s.strip())
names = st.text(
    st.characters(blacklist_characters="|#\r\n", blacklist_categories=("Cs", "Zs", "Cc")),
    min_size=1,
    max_size=8,
).filter(lambda s: s != "TimeInstant")
values = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), texts)
groups = st.dictionaries(names, values, min_size=1, max_size=5)
stamps = st.sampled_from(["2025-09-01T10:00:00+09:00", "2025-01-15T21:40:20.512Z", "1756688400"])


@given(st.lists(st.tuples(st.one_of(st.none(), stamps), groups), min_size=1, max_size=4))
def test_parsing_formatted_groups_gives_them_back(items: list[tuple[str | None, dict[str, Any]]]) -> None:
    measures = [({"TimeInstant": stamp} if stamp else {}) | group for stamp, group in items]
    text = ultralight.to_text(measures)
    assert ultralight.parse(text) == measures


@given(st.text(max_size=40))
def test_any_text_parses_or_is_rejected_never_anything_else(text: str) -> None:
    outcome: list[dict[str, Any]] | Rejected
    try:
        outcome = ultralight.parse(text)
    except Rejected as rejected:
        outcome = rejected
    if isinstance(outcome, Rejected):
        assert outcome.reason.startswith("UltraLight")
    else:
        assert all(group for group in outcome)
