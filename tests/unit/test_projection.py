"""The pick/omit projection parser (clause 4.21): what it reads back and what it refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import BadRequestData
from broker.query.projection import Projected, parse_projection

NAMES = st.sampled_from(["id", "speed", "accuracy", "ns:source", "x1"])
ITEMS = st.recursive(
    st.builds(Projected, NAMES),
    lambda inner: st.builds(Projected, NAMES, st.lists(inner, min_size=1, max_size=3).map(tuple)),
    max_leaves=8,
)


def written(items: tuple[Projected, ...]) -> str:
    return ",".join(i.name + ("" if i.inner is None else "{" + written(i.inner) + "}") for i in items)


@given(st.lists(ITEMS, min_size=1, max_size=4).map(tuple))
def test_a_written_projection_reads_back_as_it_was(items: tuple[Projected, ...]) -> None:
    depth = _depth(items)
    if depth > 5:
        with pytest.raises(BadRequestData):
            parse_projection(written(items), "pick")
    else:
        assert parse_projection(written(items), "pick") == items


def _depth(items: tuple[Projected, ...]) -> int:
    return 1 + max((_depth(i.inner) for i in items if i.inner is not None), default=0)


@pytest.mark.parametrize("text", ["", ",", "a,", "a{", "a{}", "a}", "{a}", "a{b}c", "a{b}{c}", "a b{", "a=b"])
def test_a_malformed_projection_is_refused(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse_projection(text, "omit")
