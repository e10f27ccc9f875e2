"""broker.shape: typed member checks that raise the error they are given, with one form of message."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from broker.errors import BadRequestData
from broker.shape import Shape


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Wrong(ValueError):
    """A caller's own error type."""


SHAPE = Shape(BadRequestData, is_null=lambda value: value == "null!")
LENIENT = Shape(Wrong, null_is_absent=True)


def detail(call: Any) -> str:
    """The detail of the BadRequestData that ``call()`` raises."""
    with pytest.raises(BadRequestData) as raised:
        call()
    return raised.value.detail


def test_members_are_typed_and_named_with_their_prefix() -> None:
    body = {"name": "gauge", "tags": ["a", "b"], "on": True}
    assert SHAPE.required(body, "name", SHAPE.text()) == "gauge"
    assert SHAPE.optional(body, "tags", SHAPE.list_of(SHAPE.text())) == ["a", "b"]
    assert SHAPE.optional(body, "missing", SHAPE.flag()) is None
    assert detail(lambda: SHAPE.required(body, "id", SHAPE.text(), "device.")) == "device.id is required"
    assert detail(lambda: SHAPE.required(body, "on", SHAPE.text(), "device.")) == (
        "device.on must be a non-empty string"
    )


def test_null_is_refused_or_taken_as_absent_as_the_shape_says() -> None:
    assert detail(lambda: SHAPE.optional({"q": None}, "q", SHAPE.text())) == "q must not be null"
    assert detail(lambda: SHAPE.optional({"q": "null!"}, "q", SHAPE.text())) == "q must not be null"
    assert LENIENT.optional({"q": None}, "q", LENIENT.text()) is None
    with pytest.raises(Wrong, match="q is required"):
        LENIENT.required({"q": None}, "q", LENIENT.text())


def test_list_entries_are_named_by_their_index() -> None:
    check = SHAPE.list_of(SHAPE.obj())
    assert detail(lambda: check([{}, 3], "entities")) == "entities[1] must be a JSON object"
    assert detail(lambda: check([], "entities")) == "entities must be a non-empty array"
    assert SHAPE.list_of(SHAPE.text(), non_empty=False)([], "tags") == []


def test_one_of_and_enum_of_give_the_value_they_name() -> None:
    assert SHAPE.one_of({"keyValues": 3})("keyValues", "format") == 3
    assert SHAPE.enum_of(Colour)("blue", "colour") is Colour.BLUE
    assert detail(lambda: SHAPE.enum_of(Colour)("green", "colour")) == (
        "colour 'green' is not one of red, blue"
    )


def test_numbers_are_finite_not_booleans_and_within_their_bound() -> None:
    seconds = SHAPE.number(unit="seconds", above=0)
    assert seconds(1, "throttling") == 1.0
    assert detail(lambda: seconds(True, "t")) == "t must be a number of seconds"
    assert detail(lambda: seconds(float("inf"), "t")) == "t must be a number of seconds"
    assert detail(lambda: seconds(0, "t")) == "t must be greater than 0 seconds, got 0"
    assert detail(lambda: SHAPE.number(non_negative=True)(-1, "t")) == "t must not be negative, got -1"


def test_text_has_a_length_limit_and_of_type_refuses_booleans_for_numbers() -> None:
    assert detail(lambda: SHAPE.text(limit=3)("abcd", "key")) == "key is longer than 3 characters"
    assert detail(lambda: SHAPE.of_type(int, "an integer")(True, "n")) == "n must be an integer"
    assert SHAPE.of_type(int, "an integer")(7, "n") == 7


def test_unknown_members_are_named() -> None:
    with pytest.raises(BadRequestData, match="endpoint: unknown member headers, x"):
        SHAPE.unknown({"uri": 1, "x": 2, "headers": 3}, {"uri"}, "endpoint")
