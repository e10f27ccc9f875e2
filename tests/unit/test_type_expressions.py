"""Entity type expressions (clause 4.17): parsing, SQL shape, Python matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import BadRequestData, TooComplexQuery
from broker.jsonld.context import core_term_map
from broker.query.params import Params
from broker.query.types import AllOf, AnyOf, TypeName, matches_type, parse_type_expr, type_to_sql

TM = core_term_map()
BASE = "https://uri.etsi.org/ngsi-ld/default-context/"


def iri(name: str) -> str:
    return BASE + name


def test_a_comma_list_is_any_of_the_types() -> None:
    assert parse_type_expr("A,B", TM) == AnyOf((TypeName(iri("A")), TypeName(iri("B"))))


def test_semicolon_binds_tighter_than_pipe() -> None:
    expr = parse_type_expr("A;B|C", TM)
    assert expr == AnyOf((AllOf((TypeName(iri("A")), TypeName(iri("B")))), TypeName(iri("C"))))


def test_parentheses_group() -> None:
    expr = parse_type_expr("A;(B|C)", TM)
    assert expr == AllOf((TypeName(iri("A")), AnyOf((TypeName(iri("B")), TypeName(iri("C"))))))


@pytest.mark.parametrize(
    ("text", "types", "expected"),
    [
        ("A", ["A"], True),
        ("A", ["B"], False),
        ("A,B", ["B"], True),
        ("A;B", ["B"], False),
        ("A;B", ["A", "B"], True),
        ("(A;B)|C", ["C"], True),
        ("(A;B)|C", ["A"], False),
        ("A;(B|C)", ["A", "C"], True),
    ],
)
def test_matching_follows_and_or_semantics(text: str, types: list[str], expected: bool) -> None:
    assert matches_type(parse_type_expr(text, TM), [iri(t) for t in types]) is expected


def test_plain_lists_become_one_array_operator_the_gin_index_serves() -> None:
    params = Params()
    assert type_to_sql(parse_type_expr("A,B", TM), params) == "e.types && $1::text[]"
    assert params.values == [[iri("A"), iri("B")]]
    params = Params()
    assert type_to_sql(parse_type_expr("A;B", TM), params) == "e.types @> $1::text[]"


@pytest.mark.parametrize("text", ["", "(", "A,", ";A", "A)", "(A", "A;;B", "A<B"])
def test_malformed_expressions_are_bad_request_data(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse_type_expr(text, TM)


def test_too_many_names_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse_type_expr(",".join(f"T{i}" for i in range(200)), TM)


@given(st.text(max_size=60))
def test_parsing_arbitrary_text_gives_an_expression_or_bad_request(text: str) -> None:
    try:
        expr = parse_type_expr(text, TM)
    except (BadRequestData, TooComplexQuery):
        return
    assert isinstance(expr, TypeName | AllOf | AnyOf)
