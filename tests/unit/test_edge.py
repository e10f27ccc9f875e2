"""The JSON nesting limit shared by every entrance."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from broker.edge import nests_deeper, too_deep


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def test_a_value_at_the_limit_passes_and_one_level_more_does_not() -> None:
    for depth in (1, 5, 64):
        at_limit = nested(depth)
        assert not too_deep(orjson.dumps(at_limit), at_limit, depth)
        deeper = nested(depth + 1)
        assert too_deep(orjson.dumps(deeper), deeper, depth)


def test_brackets_inside_strings_do_not_make_a_shallow_value_deep() -> None:
    value = {"text": "[[[[{{{{" * 50}
    assert not too_deep(orjson.dumps(value), value, 3)


def test_a_value_deeper_than_orjson_can_serialise_is_caught() -> None:
    raw = b'{"x": ' + b"[" * 300 + b"]" * 300 + b"}"
    assert too_deep(raw, orjson.loads(raw), 64)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=40,
)


@given(json_values, st.integers(1, 12))
def test_too_deep_agrees_with_the_recursive_definition(value: Any, limit: int) -> None:
    assert too_deep(orjson.dumps(value), value, limit) == (depth_of(value) > limit)


def test_a_parsed_value_is_walked_whole_when_its_text_was_never_seen() -> None:
    """Device payloads decoded from base64 or hex: no text to count brackets in."""
    assert nests_deeper(nested(65), 64)
    assert not nests_deeper(nested(64), 64)
