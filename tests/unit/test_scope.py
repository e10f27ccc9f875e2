"""Scope queries (clause 4.19): the scopeQ parser, the Python matcher, and the SQL text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import BadRequestData, TooComplexQuery
from broker.query.params import Params
from broker.query.scope import (
    MAX_DEPTH,
    MAX_PATTERNS,
    ScopeAnd,
    ScopeOr,
    ScopePattern,
    matches_scope,
    parse_scope_q,
    scope_to_sql,
)


def test_an_exact_scope_parses_into_its_levels() -> None:
    assert parse_scope_q("/Kagawa/Takamatsu") == ScopePattern(levels=("Kagawa", "Takamatsu"))


def test_a_trailing_hash_asks_for_the_scope_and_all_below() -> None:
    assert parse_scope_q("/Kagawa/#") == ScopePattern(levels=("Kagawa",), descendants=True)


def test_slash_hash_alone_asks_for_any_scope() -> None:
    pattern = parse_scope_q("/#")
    assert isinstance(pattern, ScopePattern)
    assert pattern.matches_any


def test_plus_stands_for_one_level() -> None:
    assert parse_scope_q("/Kagawa/+/Kasuga") == ScopePattern(levels=("Kagawa", "+", "Kasuga"))


def test_semicolon_binds_tighter_than_bar() -> None:
    assert parse_scope_q("/a;/b|/c") == ScopeOr(
        (ScopeAnd((ScopePattern(("a",)), ScopePattern(("b",)))), ScopePattern(("c",)))
    )


def test_parentheses_group() -> None:
    assert parse_scope_q("/a;(/b|/c)") == ScopeAnd(
        (ScopePattern(("a",)), ScopeOr((ScopePattern(("b",)), ScopePattern(("c",)))))
    )


def test_comma_is_accepted_as_or() -> None:
    assert parse_scope_q("/a,/b") == parse_scope_q("/a|/b")


def test_japanese_levels_and_underscores_are_scope_levels() -> None:
    assert parse_scope_q("/香川/高松_市/#") == ScopePattern(levels=("香川", "高松_市"), descendants=True)


def test_a_pattern_without_leading_slash_is_relative() -> None:
    assert parse_scope_q("Kagawa/#") == ScopePattern(levels=("Kagawa",), rooted=False, descendants=True)


BAD = {
    "empty": "",
    "lone slash": "/",
    "trailing slash": "/a/",
    "double slash": "/a//b",
    "hash in the middle": "/a/#/b",
    "hash without slash": "/a#",
    "lone hash": "#",
    "plus inside a level": "/a+b",
    "space": "/a b",
    "dash": "/a-b",
    "dot": "/a.b",
    "empty alternative": "/a|",
    "empty conjunct": ";/a",
    "unclosed parenthesis": "(/a|/b",
    "stray parenthesis": "/a)",
    "empty parentheses": "()",
    "pattern glued to parenthesis": "/a(/b)",
    "percent": "/a%",
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_malformed_scope_queries_are_bad_request_data(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse_scope_q(text)


def test_too_many_patterns_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse_scope_q("|".join(f"/s{i}" for i in range(MAX_PATTERNS + 1)))


def test_too_deep_parentheses_are_too_complex() -> None:
    depth = MAX_DEPTH + 1
    with pytest.raises(TooComplexQuery):
        parse_scope_q("(" * depth + "/a" + ")" * depth)


def test_thousands_of_parentheses_do_not_exhaust_the_stack() -> None:
    with pytest.raises(TooComplexQuery):
        parse_scope_q("(" * 5000 + "/a" + ")" * 5000)


MATCHES = [
    ("/Kagawa/Takamatsu", ["/Kagawa/Takamatsu"], True),
    ("/Kagawa/Takamatsu", ["/Kagawa/Takamatsu/Kasuga"], False),
    ("/Kagawa/Takamatsu", ["/Kagawa"], False),
    ("/Kagawa/Takamatsu", ["/kagawa/takamatsu"], False),
    ("/Kagawa/#", ["/Kagawa"], True),
    ("/Kagawa/#", ["/Kagawa/Takamatsu"], True),
    ("/Kagawa/#", ["/Kagawa/Takamatsu/Kasuga"], True),
    ("/Kagawa/#", ["/KagawaKen"], False),
    ("/Kagawa/#", ["/Ehime/Kagawa"], False),
    ("/Kagawa/#", ["Kagawa/Takamatsu"], False),
    ("/#", ["/anything"], True),
    ("/#", ["relative/scope"], True),
    ("/#", [], False),
    ("/#", None, False),
    ("/Kagawa/+", ["/Kagawa/Takamatsu"], True),
    ("/Kagawa/+", ["/Kagawa"], False),
    ("/Kagawa/+", ["/Kagawa/Takamatsu/Kasuga"], False),
    ("/Kagawa/+/Kasuga", ["/Kagawa/Takamatsu/Kasuga"], True),
    ("/Kagawa/+/Kasuga", ["/Kagawa/Marugame/Kasuga"], True),
    ("/Kagawa/+/Kasuga", ["/Kagawa/Takamatsu/Yashima"], False),
    ("/+/#", ["/Kagawa"], True),
    ("/+/#", ["/Kagawa/Takamatsu/Kasuga"], True),
    ("/+/Takamatsu/#", ["/Kagawa/Takamatsu/Kasuga"], True),
    ("/+/Takamatsu/#", ["/Kagawa/Marugame"], False),
    ("Kagawa", ["Kagawa"], True),
    ("Kagawa", ["/Kagawa"], False),
    ("/Kagawa", ["Kagawa"], False),
    ("/a;/b", ["/a", "/b"], True),
    ("/a;/b", ["/a"], False),
    ("/a|/b", ["/b"], True),
    ("/a|/b", ["/c"], False),
    ("/a;(/b|/c)", ["/a", "/c"], True),
    ("/a;(/b|/c)", ["/b", "/c"], False),
    ("(/a;/b)|/c/#", ["/c/d"], True),
    ("/Kagawa/Takamatsu", None, False),
    ("/香川/#", ["/香川/高松"], True),
]


@pytest.mark.parametrize(("query", "scopes", "expected"), MATCHES)
def test_matches_scope_follows_the_pattern_rules(
    query: str, scopes: list[str] | None, expected: bool
) -> None:
    assert matches_scope(parse_scope_q(query), scopes) is expected


def test_an_exact_pattern_becomes_an_indexable_containment() -> None:
    params = Params("tenant")
    sql = scope_to_sql(parse_scope_q("/Kagawa/Takamatsu"), params)
    assert sql == "(e.scopes IS NOT NULL AND e.scopes @> ARRAY[$2::text])"
    assert params.values == ["tenant", "/Kagawa/Takamatsu"]


def test_scope_values_are_bound_never_formatted_into_sql() -> None:
    params = Params()
    sql = scope_to_sql(parse_scope_q("/Kagawa/#|/Ehime/+/Matsuyama;/Kochi"), params, alias="x")
    for word in ("Kagawa", "Ehime", "Matsuyama", "Kochi"):
        assert word not in sql
    assert "x.scopes" in sql
    assert params.values == ["/Kagawa", "/Kagawa/", "^/Ehime/[^/]+/Matsuyama$", "/Kochi"]


TOKENS = st.sampled_from(
    ["/", "#", "+", ";", "|", ",", "(", ")", "a", "b_1", "香川", " ", "-", "%", "\\", "'"]
)


@settings(max_examples=1000)
@given(st.one_of(st.text(max_size=60), st.lists(TOKENS, max_size=30).map("".join)))
def test_parsing_any_text_raises_nothing_but_bad_request_data_or_too_complex_query(text: str) -> None:
    try:
        query = parse_scope_q(text)
    except (BadRequestData, TooComplexQuery):
        return
    scope_to_sql(query, Params())
    matches_scope(query, ["/a", "/a/b_1", "香川"])
