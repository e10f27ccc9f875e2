"""The q-language parser (clause 4.9): each construct, precedence, error positions, limits, regexes."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import BadRequestData, TooComplexQuery
from broker.query.qlang import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_LIST_ITEMS,
    MAX_TERMS,
    And,
    Bool,
    Compare,
    Date,
    DateTime,
    Exists,
    Number,
    Op,
    Or,
    Path,
    Pattern,
    QExpr,
    Range,
    Text,
    Time,
    Uri,
    ValueList,
    parse_q,
)
from broker.query.qregex import MAX_REGEX_LENGTH, translate_regex


def exists(name: str) -> Exists:
    return Exists(Path(name))


def compare(q: str) -> Compare:
    expr = parse_q(q)
    assert isinstance(expr, Compare), expr
    return expr


# --- terms --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op"),
    [("a==1", Op.EQ), ("a!=1", Op.NE), ("a>1", Op.GT), ("a>=1", Op.GE), ("a<1", Op.LT), ("a<=1", Op.LE)],
)
def test_each_comparison_operator_is_parsed(text: str, op: Op) -> None:
    assert parse_q(text) == Compare(Path("a"), op, Number("1", Decimal(1)))


def test_an_attribute_alone_asks_for_its_existence() -> None:
    assert parse_q("temperature") == Exists(Path("temperature"))


def test_an_exclamation_mark_asks_for_non_existence() -> None:
    assert parse_q("!temperature") == Exists(Path("temperature"), negated=True)


def test_a_range_is_two_values_of_one_kind_joined_by_two_dots() -> None:
    assert compare("temperature==10..20").operand == Range(
        Number("10", Decimal(10)), Number("20", Decimal(20))
    )
    assert compare('name!="a".."m"').operand == Range(Text("a"), Text("m"))
    low, high = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    operand = compare(f"a.observedAt=={low}..{high}").operand
    assert operand == Range(
        DateTime(datetime(2026, 1, 1, tzinfo=UTC)), DateTime(datetime(2026, 1, 2, tzinfo=UTC))
    )


def test_a_decimal_range_keeps_its_dots_apart_from_the_decimal_points() -> None:
    assert compare("a==1.5..2.5").operand == Range(
        Number("1.5", Decimal("1.5")), Number("2.5", Decimal("2.5"))
    )


def test_a_value_list_may_mix_kinds() -> None:
    operand = compare('color=="black",5,true,urn:ngsi-ld:Color:red').operand
    assert operand == ValueList(
        (Text("black"), Number("5", Decimal(5)), Bool(True), Uri("urn:ngsi-ld:Color:red"))
    )


@pytest.mark.parametrize(
    ("text", "negated", "source"),
    [
        ('brandName~="^Merc"', False, "^Merc"),
        ('brandName!~="^Merc"', True, "^Merc"),
        ("brandName~=^Merc.*", False, "^Merc.*"),
        ('brandName~="say \\"hi\\""', False, 'say "hi"'),
        ('brandName~="\\d+\\.\\d"', False, r"\d+\.\d"),
    ],
)
def test_patterns_take_a_quoted_or_bare_regular_expression(text: str, negated: bool, source: str) -> None:
    expr = parse_q(text)
    assert isinstance(expr, Pattern)
    assert expr.negated is negated
    assert expr.regex.source == source


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal(0)),
        ("-2", Decimal(-2)),
        ("1.4", Decimal("1.4")),
        ("6.02e23", Decimal("6.02e23")),
        ("1E-3", Decimal("0.001")),
    ],
)
def test_numbers_follow_json_and_keep_their_exact_decimal(text: str, value: Decimal) -> None:
    assert compare(f"a>{text}").operand == Number(text, value)


def test_strings_are_json_strings_with_their_escapes() -> None:
    assert compare(r'a=="line\nbreak \"quoted\" \u00e9\ud83c\udf0a"').operand == Text(
        'line\nbreak "quoted" é🌊'
    )
    assert compare('a=="semi;colon|pipe)paren,comma"').operand == Text("semi;colon|pipe)paren,comma")


def test_true_and_false_are_booleans() -> None:
    assert compare("a==true").operand == Bool(True)
    assert compare("a!=false").operand == Bool(False)


def test_date_time_values_become_aware_datetimes() -> None:
    assert compare("a>2026-11-22T01:00:00Z").operand == DateTime(datetime(2026, 11, 22, 1, tzinfo=UTC))
    plus9 = timezone(timedelta(hours=9))
    moment = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=plus9)
    assert compare("a>2026-11-22T10:00:00.123456+09:00").operand == DateTime(moment)
    assert compare("a>2026-11-22T01:00:00").operand == DateTime(datetime(2026, 11, 22, 1, tzinfo=UTC))


def test_dates_and_times_are_their_own_kinds() -> None:
    assert compare("a>=2026-11-22").operand == Date(date(2026, 11, 22))
    assert compare("a<12:30:00Z").operand == Time(time(12, 30))
    assert compare("a<12:30:00.5").operand == Time(time(12, 30, 0, 500000))


def test_unquoted_uris_are_uris_and_quoted_ones_strings() -> None:
    assert compare("refDevice==urn:ngsi-ld:Device:1").operand == Uri("urn:ngsi-ld:Device:1")
    assert compare("refDevice==https://example.org/a?b=c#d").operand == Uri("https://example.org/a?b=c#d")
    assert compare('refDevice=="urn:ngsi-ld:Device:1"').operand == Text("urn:ngsi-ld:Device:1")


# --- paths --------------------------------------------------------------------------------------


def test_dotted_paths_name_sub_attributes() -> None:
    assert compare("sensor.rawdata.accuracy>0.5").path == Path("sensor", ("rawdata", "accuracy"))


@pytest.mark.parametrize("member", ["observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"])
def test_a_dotted_path_may_end_with_a_metadata_member(member: str) -> None:
    assert parse_q(f"speed.{member}") == Exists(Path("speed", (), member))
    assert compare(f"speed.sub.{member}==1").path == Path("speed", ("sub",), member)


def test_trailing_paths_enter_json_values_in_either_spelling() -> None:
    assert compare('address[city]=="Berlin"').path == Path("address", (), None, ("city",))
    spec = compare("sensor.rawdata[airquality.particulate]==40").path
    assert spec == Path("sensor", ("rawdata",), None, ("airquality", "particulate"))
    assert compare("sensor.rawdata[airquality][particulate]==40").path == spec
    assert compare('name[en-GB]=="x"').path.keys == ("en-GB",)
    assert compare('d[@value]=="x"').path.keys == ("@value",)


def test_names_may_be_prefixed_and_use_any_unicode_letters() -> None:
    assert compare("schema:name==1").path == Path("schema:name")
    assert compare("水位>1").path == Path("水位")
    assert compare("level_2>1").path == Path("level_2")


# --- combination --------------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    assert parse_q("a;b|c;d") == Or((And((exists("a"), exists("b"))), And((exists("c"), exists("d")))))


def test_parentheses_group_first() -> None:
    assert parse_q("a;(b|c)") == And((exists("a"), Or((exists("b"), exists("c")))))


def test_the_examples_of_clause_4_9_parse() -> None:
    six = parse_q('((speed>50|rpm>3000);brandName=="Mercedes")')
    assert isinstance(six, And)
    assert isinstance(six.parts[0], Or)
    seven = parse_q("(temperature>=20;temperature<=25)|capacity<=10")
    assert isinstance(seven, Or)
    assert isinstance(seven.parts[0], And)
    assert isinstance(parse_q("temperature.observedAt>=2017-12-24T12:00:00Z"), Compare)
    assert isinstance(parse_q('speed>50;brandName!="Mercedes"'), And)
    assert parse_q("isMonitoredBy") == exists("isMonitoredBy")


def test_blanks_between_tokens_are_ignored() -> None:
    assert parse_q(" ( a > 1 ; b ) | c ") == parse_q("(a>1;b)|c")


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("", 1, "attribute name"),
        ("a=1", 2, "expected an operator"),
        ("a==", 4, "expected a value"),
        ("a==foo", 4, "double quotes"),
        ("(a", 3, "expected ')'"),
        ("a)", 2, "without '('"),
        ("a;;b", 3, "attribute name"),
        ("a|", 3, "attribute name"),
        ("1a", 1, "starting with a letter"),
        ("a>true", 3, "compares numbers"),
        ("a>urn:x:y", 3, "compares numbers"),
        ('a==1.."z"', 4, "range"),
        ("a==2026-02-30", 4, "day is out of range"),
        ("a==25:00:00Z", 4, "not a valid value"),
        ('a=="open', 4, "unterminated"),
        ('a=="bad \\x escape"', 4, "invalid string"),
        ("a[", 3, "member name"),
        ("a[1x]==1", 3, "member name"),
        ("a[b==1", 4, "expected ']'"),
        ("a{b}==1", 2, "linked-entity"),
        ("a.observedAt[x]", 1, "metadata member"),
        ("a.unitCode.b", 1, "only end"),
        ("a~=", 4, "regular expression"),
        ('a~="(x"', 4, "missing ')'"),
        ("a==1 b", 6, "';', '|'"),
    ],
)
def test_syntax_errors_are_bad_request_data_naming_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(BadRequestData) as caught:
        parse_q(text)
    assert f"at character {position} " in caught.value.detail
    assert words in caught.value.detail


@pytest.mark.parametrize("char", ["\x00", "\ud800"])
def test_nul_and_lone_surrogates_are_refused(char: str) -> None:
    with pytest.raises(BadRequestData):
        parse_q(f"a{char}")
    with pytest.raises(BadRequestData):
        parse_q(f'a=="{char}"')


def test_numbers_beyond_what_postgresql_stores_are_refused() -> None:
    with pytest.raises(BadRequestData, match="out of range"):
        parse_q("a>1e999999")


@pytest.mark.parametrize(
    "text",
    [
        "a" * (MAX_LENGTH + 1),
        "(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1),
        ";".join(["a"] * (MAX_TERMS + 1)),
        "a==" + ",".join(["1"] * (MAX_LIST_ITEMS + 1)),
        "a.b.c.d.e.f.g[h][i]",
        'a~="' + "x" * (MAX_REGEX_LENGTH + 1) + '"',
        'a~="(a+)+$"',
        'a~="(a|aa)*b"',
    ],
    ids=[
        "length",
        "depth",
        "terms",
        "list",
        "path",
        "regex length",
        "nested quantifier",
        "repeated alternation",
    ],
)
def test_queries_beyond_the_limits_are_too_complex(text: str) -> None:
    with pytest.raises(TooComplexQuery):
        parse_q(text)


def test_queries_at_the_limits_still_parse() -> None:
    parse_q("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH)
    parse_q(";".join(["a"] * MAX_TERMS))
    parse_q("a==" + ",".join(["1"] * MAX_LIST_ITEMS))


# --- regular expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "python", "postgres"),
    [
        ("^Merc.*", "^Merc.*", "^Merc.*"),
        ("river$", r"river\Z", "river$"),
        (r"\d{4}-\w+\s", r"[0-9]{4}\-[A-Za-z0-9_]+[ \t\n\r\f\v]", r"[0-9]{4}\-[A-Za-z0-9_]+[ \t\n\r\f\v]"),
        (r"[^a-z\d_]", r"[^a-z0-9\_]", r"[^a-z0-9\_]"),
        ("(ab)+|c?d{2,3}?", "(?:ab)+|c?d{2,3}?", "(?:ab)+|c?d{2,3}?"),
        (r"a\.b\/c", r"a\.b\/c", r"a\.b\/c"),
    ],
)
def test_regexes_are_rewritten_into_the_portable_subset(source: str, python: str, postgres: str) -> None:
    regex = translate_regex(source)
    assert (regex.python, regex.postgres, regex.ignore_case) == (python, postgres, False)


def test_a_leading_case_flag_becomes_the_case_insensitive_operator() -> None:
    regex = translate_regex("(?i)^kasuga")
    assert regex.ignore_case
    assert regex.postgres == "^kasuga"


@pytest.mark.parametrize(
    "source",
    [
        r"\bword",
        r"(a)\1",
        "(?=a)",
        "(?<n>a)",
        "[[:alpha:]]",
        "a**",
        "*a",
        "{2}",
        "a{256}",
        "a{3,2}",
        "[z-a]",
        "]",
        "[]",
        "(",
        "\\",
    ],
)
def test_regexes_outside_the_portable_subset_are_refused(source: str) -> None:
    with pytest.raises(ValueError, match="at its character"):
        translate_regex(source)


def test_python_and_postgresql_forms_agree_on_end_of_text() -> None:
    regex = translate_regex("x$")
    assert re.search(regex.python, "x\n", re.DOTALL) is None  # PostgreSQL's $ does not match before \n


# --- never anything but the two errors ----------------------------------------------------------

PIECES = st.sampled_from(
    [
        "a",
        "b.c",
        "d[e]",
        "[f.g]",
        ".",
        "..",
        "==",
        "!=",
        ">",
        ">=",
        "<",
        "<=",
        "~=",
        "!~=",
        "!",
        ";",
        "|",
        "(",
        ")",
        ",",
        '"',
        '"x"',
        "\\",
        "1",
        "-2.5e3",
        "true",
        "2026-01-01T00:00:00Z",
        "2026-01-01",
        "12:00:00",
        "urn:a:b",
        " ",
        "observedAt",
        "{",
        "[",
        "]",
        "*",
        "+",
        "?",
        "^",
        "$",
        "é",
        "\x00",
    ]
)


def _parses_or_raises_ngsi_ld_errors(text: str) -> None:
    try:
        expr: QExpr = parse_q(text)
    except (BadRequestData, TooComplexQuery):
        return
    assert isinstance(expr, And | Or | Exists | Compare | Pattern)


@settings(max_examples=1500, deadline=None)
@given(st.text())
def test_any_text_parses_or_raises_bad_request_data_or_too_complex_query(text: str) -> None:
    _parses_or_raises_ngsi_ld_errors(text)


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=20).map("".join))
def test_any_sequence_of_q_tokens_parses_or_raises_ngsi_ld_errors(text: str) -> None:
    _parses_or_raises_ngsi_ld_errors(text)


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(list("()[]{}|*+?.^$\\-:"))))
def test_any_regex_text_is_translated_or_refused_with_an_error(source: str) -> None:
    _parses_or_raises_ngsi_ld_errors('a~="' + source.replace('"', '\\"') + '"')


REGEX_PIECES = st.sampled_from(
    [
        "[",
        "]",
        "-",
        "^",
        "$",
        "\\",
        "d",
        "D",
        "b",
        "(",
        ")",
        "?:",
        "(?i)",
        "|",
        "*",
        "+",
        "?",
        "{",
        "}",
        "2",
        ",",
        "a",
        "z",
        ".",
        " ",
        "é",
        "\\]",
        "\\-",
        "[:alpha:]",
        "256",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(REGEX_PIECES, max_size=12).map("".join))
def test_any_sequence_of_regex_tokens_is_translated_or_refused_with_an_error(source: str) -> None:
    try:
        regex = translate_regex(source)
    except (ValueError, TooComplexQuery):
        return
    re.compile(regex.python)
