"""q run by PostgreSQL: hand-checked answers for every operator, and matches_q agreeing on random data."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from broker.errors import TooComplexQuery
from broker.jsonld.context import TermMap, compile_contexts, core_document
from broker.model.entity import Entity, now
from broker.query.params import Params
from broker.query.q_eval import as_datetime, matches_q
from broker.query.q_sql import q_to_sql
from broker.query.qlang import parse_q
from broker.query.qregex import translate_regex
from broker.store.entities import from_row, write
from broker.store.migrate import migrate
from broker.store.pool import create_pool
from tests.conftest import database_url

EX = "https://example.org/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
TM = compile_contexts([{"ex": EX, "Flooding": EX + "Flooding"}], core_document())
POINT = {"type": "Point", "coordinates": [134.0631, 34.3335]}


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    """A pool with the broker's own jsonb codec, on a migrated database."""
    created = await create_pool(database_url(), min_size=1, max_size=4, connect_timeout=10)
    await migrate(created)
    yield created
    await created.close()


def thing(name: str, attrs: dict[str, Any]) -> Entity:
    """An entity named ``name`` whose attributes (compact names) hold one instance (a dict) or several."""
    stamp = now()
    return Entity(
        id=f"urn:ngsi-ld:Thing:{name}",
        types=[DEFAULT + "Thing"],
        attrs={TM.expand(key): value if isinstance(value, list) else [value] for key, value in attrs.items()},
        created_at=stamp,
        modified_at=stamp,
    )


async def store(conn: asyncpg.Connection | Any, tenant: str, entities: list[Entity]) -> None:
    await conn.execute("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
    assert await write(conn, tenant, entities, [], []) == []


async def sql_ids(conn: asyncpg.Connection | Any, tenant: str, q: str, tm: TermMap = TM) -> set[str]:
    params = Params(tenant)
    sql = f"SELECT e.id FROM entities AS e WHERE e.tenant = $1 AND {q_to_sql(parse_q(q), tm, params)}"
    return {row["id"] for row in await conn.fetch(sql, *params.values)}


async def stored(conn: asyncpg.Connection | Any, tenant: str) -> list[Entity]:
    """The entities as PostgreSQL returns them (what the notifier will evaluate too)."""
    rows = await conn.fetch(
        "SELECT id, types, scopes, attrs, created_at, modified_at FROM entities WHERE tenant = $1", tenant
    )
    return [from_row(row) for row in rows]


def prop(value: Any, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **members}


def rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


HAND = [
    thing(
        "gaugeA",
        {
            "level": prop(0.77, observedAt="2026-11-22T01:00:00.000Z", unitCode="MTR"),
            "alert": prop(1.4),
            "name": {"type": "LanguageProperty", "languageMap": {"ja": "春日川", "en": "Kasuga river"}},
            "refDevice": rel("urn:ngsi-ld:Device:gauge-1"),
            "category": {"type": "VocabProperty", "vocab": EX + "Flooding"},
            "location": {"type": "GeoProperty", "value": POINT},
        },
    ),
    thing(
        "gaugeB",
        {
            "level": prop(1.62, observedAt="2026-11-22T03:00:00.000Z", unitCode="CEL"),
            "alert": prop(1.4),
            "name": {"type": "LanguageProperty", "languageMap": {"en": ["Shin river", "Shinkawa"]}},
            "refDevice": rel("urn:ngsi-ld:Device:gauge-2"),
            "category": {"type": "VocabProperty", "vocab": DEFAULT + "Dry"},
        },
    ),
    thing(
        "gaugeC",
        {
            "level": [prop(1.2), prop(1.5, datasetId="urn:ngsi-ld:Dataset:radar")],
            "feeds": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Pump:1", "urn:ngsi-ld:Pump:2"]},
        },
    ),
    thing(
        "plow",
        {
            "speed": prop(21.5, **{DEFAULT + "accuracy": prop(0.5)}),
            "status": prop("active"),
            "tags": prop(["north", "salt"]),
            "address": prop({"city": "Takamatsu", "ward": {"name": "Kasuga"}}),
            "installed": prop({"@type": "DateTime", "@value": "2026-01-01T09:00:00+09:00"}),
            "open": prop(True),
        },
    ),
    thing(
        "sensor",
        {
            "level": prop("high"),
            "status": prop("INACTIVE"),
            "readings": {"type": "ListProperty", "valueList": [0.5, 1.5, "n/a"]},
            "raw": {"type": "JsonProperty", "json": {"id": "85a6", "value": "Overstay 60 minutes"}},
            "day": prop("2026-11-22"),
            "at": prop("12:30:00Z"),
        },
    ),
    thing("empty", {"marker": prop(1)}),
]

CASES: dict[str, tuple[str, set[str]]] = {
    "greater than": ("level>1.4", {"gaugeB", "gaugeC"}),
    "greater or equal": ("level>=1.62", {"gaugeB"}),
    "less than": ("level<1.2", {"gaugeA"}),
    "less or equal": ("level<=1.2", {"gaugeA", "gaugeC"}),
    "equal": ("level==0.77", {"gaugeA"}),
    "unequal, other types included": ("level!=0.77", {"gaugeB", "gaugeC", "sensor"}),
    "equal to a string": ('level=="high"', {"sensor"}),
    "range": ("level==1..1.3", {"gaugeC"}),
    "outside a range": ("level!=1..2", {"gaugeA", "sensor"}),
    "value list": ("level==0.77,1.62", {"gaugeA", "gaugeB"}),
    "not in a value list": ("level!=0.77,1.62", {"gaugeC", "sensor"}),
    "any instance": ("level.datasetId==urn:ngsi-ld:Dataset:radar", {"gaugeC"}),
    "pattern": ('status~="^act"', {"plow"}),
    "case-insensitive pattern": ('status~="(?i)active$"', {"plow", "sensor"}),
    "not matching a pattern": ('status!~="^act"', {"sensor"}),
    "pattern on a language map": ('name[en]~="river$"', {"gaugeA", "gaugeB"}),
    "pattern on array elements": ('tags~="^sa"', {"plow"}),
    "relationship object": ("refDevice==urn:ngsi-ld:Device:gauge-1", {"gaugeA"}),
    "relationship object, quoted": ('refDevice!="urn:ngsi-ld:Device:gauge-1"', {"gaugeB"}),
    "relationships do not order": ('refDevice>"a"', set()),
    "list relationship": ("feeds==urn:ngsi-ld:Pump:2", {"gaugeC"}),
    "vocab expanded": ('category=="Flooding"', {"gaugeA"}),
    "vocab by default vocabulary": ('category=="Dry"', {"gaugeB"}),
    "any language": ('name=="Shinkawa"', {"gaugeB"}),
    "one language": ('name[ja]=="春日川"', {"gaugeA"}),
    "observedAt as a timestamp": ("level.observedAt>=2026-11-22T02:00:00Z", {"gaugeB"}),
    "observedAt with an offset": ("level.observedAt==2026-11-22T10:00:00+09:00", {"gaugeA"}),
    "unitCode": ('level.unitCode=="MTR"', {"gaugeA"}),
    "sub-attribute": ("speed.accuracy<1", {"plow"}),
    "trailing path": ('address[city]=="Takamatsu"', {"plow"}),
    "nested trailing path": ('address[ward.name]=="Kasuga"', {"plow"}),
    "typed DateTime value": ("installed<2026-01-01T00:00:01Z", {"plow"}),
    "boolean": ("open==true", {"plow"}),
    "array element": ('tags=="salt"', {"plow"}),
    "list property": ("readings>1", {"sensor"}),
    "json property": ('raw[value]=="Overstay 60 minutes"', {"sensor"}),
    "date": ("day==2026-11-22", {"sensor"}),
    "time": ("at<13:00:00Z", {"sensor"}),
    "existence": ("level", {"gaugeA", "gaugeB", "gaugeC", "sensor"}),
    "non-existence": ("!level", {"plow", "empty"}),
    "existence of a metadata member": ("level.unitCode", {"gaugeA", "gaugeB"}),
    "existence in a json value": ("!address[ward]", {"gaugeA", "gaugeB", "gaugeC", "sensor", "empty"}),
    "and": ("level>1.4;refDevice", {"gaugeB"}),
    "or": ("level<1|speed>20", {"gaugeA", "plow"}),
    "and binds tighter than or": ("level<1|speed>20;open==false", {"gaugeA"}),
    "parentheses": ("(level<1|speed>20);open==true", {"plow"}),
    "date list mixed with numbers": ("level==0.77,2026-11-22", {"gaugeA"}),
}


@pytest.mark.parametrize(("q", "expected"), CASES.values(), ids=CASES.keys())
async def test_each_operator_selects_the_hand_checked_entities(
    pool: asyncpg.Pool, tenant: str, q: str, expected: set[str]
) -> None:
    await store(pool, tenant, HAND)
    names = {entity_id.rsplit(":", 1)[1] for entity_id in await sql_ids(pool, tenant, q)}
    assert names == expected
    assert {
        e.id.rsplit(":", 1)[1] for e in await stored(pool, tenant) if matches_q(parse_q(q), e, TM)
    } == expected


MISMATCHES = [
    'level>"abc"',
    "status>1",
    "name>5",
    "open>2026-01-01T00:00:00Z",
    "readings<2026-01-01",
    "raw>1",
    "address>1",
    "location==1",
    "installed>2026-01-01",
    "at>2026-01-01T00:00:00Z",
    "tags>12:00:00",
    'level.observedAt>"2026"',
    "level.observedAt>1",
    "day>12:00:00",
    "status==true",
    "address[city]>1",
]


async def test_type_mismatches_never_raise_and_agree_with_the_evaluator(
    pool: asyncpg.Pool, tenant: str
) -> None:
    await store(pool, tenant, HAND)
    entities = await stored(pool, tenant)
    for q in MISMATCHES:
        expected = {e.id for e in entities if matches_q(parse_q(q), e, TM)}
        assert await sql_ids(pool, tenant, q) == expected, q


def test_no_value_or_name_from_the_query_reaches_the_sql_text() -> None:
    q = 'level>1.4;name[en]=="Kasuga";refDevice==urn:ngsi-ld:Device:Q;x~="zz";d>=2026-11-22T01:00:00Z;!tag9'
    params = Params()
    sql = q_to_sql(parse_q(q), TM, params)
    for fragment in ("1.4", "Kasuga", "urn:ngsi-ld", "zz", "2026", "level", "tag9", "default-context"):
        assert fragment not in sql
    assert len(params.values) > 6


def test_a_bad_alias_is_refused() -> None:
    with pytest.raises(ValueError, match="alias"):
        q_to_sql(parse_q("a"), TM, Params(), alias="e; DROP TABLE entities")


# --- round trip: random entities, random q; PostgreSQL and matches_q agree ----------------------

SCALARS = st.sampled_from(
    [
        0,
        1,
        -2,
        1.4,
        1.45,
        2.5,
        1e16,
        0.1 + 0.2,
        -0.0,
        2**53 + 1,
        "x",
        "y",
        "Z",
        "é",
        "É",
        "🌊",
        "\ufb00",
        "",
        "a\nb",
        "urn:ngsi-ld:T:1",
        "2026-01-01T00:00:00Z",
        "2026-01-01T09:00:00+09:00",
        "2026-01-01T14:00:00+14:00",
        "2025-12-31T23:30:00-00:30",
        "2026-01-01T00:00:00.000001Z",
        "2026-01-01T00:00:00",
        "2026-02-30T00:00:00Z",
        "2026-01-01",
        "12:00:00Z",
        "12:00:00.5",
        True,
        False,
        {"@type": "DateTime", "@value": "2026-01-01T00:00:00.5Z"},
        {"@type": "Date", "@value": "2026-01-02"},
    ]
)
KEYS = st.sampled_from(["k", "m"])
NESTED = st.one_of(
    SCALARS, st.none(), st.lists(SCALARS, max_size=3), st.dictionaries(KEYS, SCALARS, max_size=2)
)
VALUES = st.one_of(SCALARS, st.lists(NESTED, max_size=3), st.dictionaries(KEYS, NESTED, max_size=2))
URIS = st.sampled_from(["urn:ngsi-ld:T:1", "urn:ngsi-ld:T:2", "x"])
TEXTS = st.sampled_from(["x", "y", "é", "É", "Kasuga river", "2026-01-01"])
VOCAB = st.sampled_from([DEFAULT + "x", DEFAULT + "y", EX + "Flooding"])
STAMPS = st.sampled_from(
    ["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000123Z", "2025-12-31T23:59:59.999Z"]
)


def one_or_list(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(items, st.lists(items, min_size=1, max_size=3))


KINDS: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "Property": ("value", VALUES),
    "Relationship": ("object", one_or_list(URIS)),
    "ListRelationship": ("objectList", st.lists(URIS, max_size=3)),
    "LanguageProperty": (
        "languageMap",
        st.dictionaries(st.sampled_from(["en", "ja"]), one_or_list(TEXTS), min_size=1),
    ),
    "VocabProperty": ("vocab", one_or_list(VOCAB)),
    "ListProperty": ("valueList", st.lists(SCALARS, max_size=3)),
    "JsonProperty": (
        "json",
        st.one_of(st.lists(NESTED, max_size=2), st.dictionaries(KEYS, NESTED, max_size=2)),
    ),
    "GeoProperty": ("value", st.just(POINT)),
}


@st.composite
def instances(draw: st.DrawFn, dataset: str | None) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(KINDS)))
    member, values = KINDS[kind]
    out: dict[str, Any] = {"type": kind, member: draw(values)}
    if dataset:
        out["datasetId"] = dataset
    for name, choices in (("observedAt", STAMPS), ("unitCode", st.sampled_from(["MTR", "CEL"]))):
        if draw(st.booleans()):
            out[name] = draw(choices)
    if draw(st.booleans()):
        out[DEFAULT + "s"] = {"type": "Property", "value": draw(SCALARS), "observedAt": draw(STAMPS)}
    return out


@st.composite
def entities(draw: st.DrawFn) -> list[Entity]:
    out = []
    for number in range(draw(st.integers(1, 8))):
        attrs: dict[str, Any] = {}
        for name in draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True)):
            datasets = draw(
                st.lists(st.sampled_from([None, "urn:ngsi-ld:Dataset:2"]), min_size=1, unique=True)
            )
            attrs[name] = [draw(instances(dataset)) for dataset in datasets]
        out.append(thing(f"r{number}", attrs))
    return out


PATHS = st.sampled_from(
    [
        "a",
        "b",
        "c",
        "zz",
        "a.s",
        "b.s",
        "a.observedAt",
        "b.unitCode",
        "a.datasetId",
        "a.s.observedAt",
        "a[k]",
        "b[k.m]",
        "c[k][m]",
        "a[en]",
        "b[ja]",
    ]
)
NUMBERS = [
    "0",
    "1",
    "-2",
    "1.4",
    "1.45",
    "2.5",
    "1e16",
    "1.40",
    "0.30000000000000004",
    "-0",
    "9007199254740992",
]
STRINGS = [
    '"x"',
    '"y"',
    '"Z"',
    '"é"',
    '"🌊"',
    '"\\ufb00"',
    '""',
    '"a\\nb"',
    '"urn:ngsi-ld:T:1"',
    '"2026-01-01T00:00:00Z"',
]
MOMENTS = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T09:00:00+09:00",
    "2026-01-01T00:00:00.5Z",
    "2025-12-31T23:59:59.999Z",
    "2026-01-01T00:00:00.000123Z",
    "2026-01-01T00:00:00",
]
DAYS = ["2026-01-01", "2026-01-02"]
CLOCKS = ["12:00:00", "12:00:00.5Z", "11:59:59Z"]
ORDERED = [NUMBERS, STRINGS, MOMENTS, DAYS, CLOCKS]
ANY_VALUE = st.sampled_from(
    [*NUMBERS, *STRINGS, *MOMENTS, *DAYS, *CLOCKS, "true", "false", "urn:ngsi-ld:T:1", "x:y"]
)
REGEXES = st.sampled_from(
    [
        '"^x"',
        '"y$"',
        '"(?i)X"',
        '"(?i)é"',
        '"[0-9]"',
        '"a.b"',
        '"^$"',
        '"é"',
        '".*"',
        '"\\d{4}-"',
        '"urn"',
        '"^[a-z]+$"',
        "r$",
        '"[^a-z]"',
        '"\\w\\s"',
        '"[🌊-🌊]"',
    ]
)


@st.composite
def terms(draw: st.DrawFn) -> str:
    path = draw(PATHS)
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return path if draw(st.booleans()) else "!" + path
    if shape == 1:
        return (
            path
            + draw(st.sampled_from([">", ">=", "<", "<="]))
            + draw(st.sampled_from(draw(st.sampled_from(ORDERED))))
        )
    if shape == 2:
        return path + draw(st.sampled_from(["~=", "!~="])) + draw(REGEXES)
    op = draw(st.sampled_from(["==", "!="]))
    if shape == 3:
        kind = draw(st.sampled_from(ORDERED))
        return f"{path}{op}{draw(st.sampled_from(kind))}..{draw(st.sampled_from(kind))}"
    return path + op + ",".join(draw(st.lists(ANY_VALUE, min_size=1, max_size=3)))


QUERIES = st.recursive(
    terms(),
    lambda inner: st.builds(
        lambda parts, joiner, wrap: ("({})" if wrap else "{}").format(joiner.join(parts)),
        st.lists(inner, min_size=2, max_size=3),
        st.sampled_from([";", "|"]),
        st.booleans(),
    ),
    max_leaves=5,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(data=entities(), queries=st.lists(QUERIES, min_size=1, max_size=12))
async def test_postgresql_selects_exactly_the_entities_matches_q_accepts(
    pool: asyncpg.Pool, data: list[Entity], queries: list[str]
) -> None:
    tenant = f"test-q-{uuid.uuid4().hex[:12]}"  # rolled back with the rows: nothing is left behind
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await store(conn, tenant, data)
            rows = await stored(conn, tenant)
            for q in queries:
                expected = {e.id for e in rows if matches_q(parse_q(q), e, TM)}
                assert await sql_ids(conn, tenant, q) == expected, q
        finally:
            await transaction.rollback()


DATE_TIME_LIKE = st.from_regex(
    r"[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,7})?(Z|[+-][0-2][0-9]:[0-6][0-9])?",
    fullmatch=True,
)


@settings(max_examples=500, deadline=None)
@given(text=DATE_TIME_LIKE)
@example(text="0001-01-01T00:00:00Z")  # datetime.min: asyncpg would send it as -infinity
@example(text="0001-01-01T00:30:00+01:00")  # before year 1 in UTC: asyncpg cannot send it
async def test_postgresql_reads_the_same_date_times_as_the_evaluator_and_never_fails(
    pool: asyncpg.Pool, text: str
) -> None:
    entity = thing("d", {"d": prop(text)})
    moment = as_datetime(text)
    queries = ["d<=9999-12-31T23:59:59Z", "d!=2026-01-01T00:00:00Z"]
    if moment is not None:
        queries.append("d==" + moment.isoformat())
    for q in queries:
        params = Params([{"id": entity.id, "attrs": entity.attrs}])
        sql = (
            f"SELECT {q_to_sql(parse_q(q), TM, params)} FROM jsonb_to_recordset($1::jsonb) AS e(attrs jsonb)"
        )
        assert await pool.fetchval(sql, *params.values) is matches_q(parse_q(q), entity, TM), q


REGEX_PIECES = st.sampled_from(
    [
        "[",
        "]",
        "-",
        "^",
        "$",
        "\\",
        "d",
        "w",
        "s",
        "S",
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
        "A",
        ".",
        " ",
        "é",
        "\\]",
        "\\-",
        "\\.",
        "\\n",
    ]
)
SAMPLES = [
    "",
    "a",
    "z",
    "A",
    "Z",
    "abc",
    "a-z",
    "2",
    "22",
    " ",
    "é",
    "É",
    "a\nb",
    "]",
    "-",
    "ab2z",
    "aaaa",
    "a.b",
]


@settings(max_examples=400, deadline=None)
@given(source=st.lists(REGEX_PIECES, max_size=10).map("".join))
async def test_postgresql_accepts_every_translated_regex_and_matches_as_python_does(
    pool: asyncpg.Pool, source: str
) -> None:
    try:
        regex = translate_regex(source)
    except (ValueError, TooComplexQuery):
        return
    flags = re.DOTALL | (re.IGNORECASE if regex.ignore_case else 0)
    operator = "~*" if regex.ignore_case else "~"
    found = await pool.fetch(
        f"SELECT t, t {operator} $2 AS m FROM unnest($1::text[]) AS t", SAMPLES, regex.postgres
    )
    assert {row["t"]: row["m"] for row in found} == {
        t: bool(re.search(regex.python, t, flags)) for t in SAMPLES
    }
