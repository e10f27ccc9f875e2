"""Scope queries run by PostgreSQL, with hand-checked answers; matches_scope gives the same answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.query.params import Params
from broker.query.scope import matches_scope, parse_scope_q, scope_to_sql
from broker.store.migrate import migrate
from tests.conftest import database_url


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url(), min_size=1, max_size=4)
    assert created is not None
    await migrate(created)
    yield created
    await created.close()


ROWS: dict[str, list[str] | None] = {
    "kagawa": ["/Kagawa"],
    "takamatsu": ["/Kagawa/Takamatsu"],
    "kasuga": ["/Kagawa/Takamatsu/Kasuga"],
    "marugameKasuga": ["/Kagawa/Marugame/Kasuga"],
    "kagawaken": ["/KagawaKen"],
    "matsuyama": ["/Ehime/Matsuyama"],
    "floodAndTakamatsu": ["/Kagawa/Takamatsu", "/Agency/Flood"],
    "floodOnly": ["/Agency/Flood"],
    "relative": ["Kagawa/Takamatsu"],
    "japanese": ["/香川/高松"],
    "emptyScopes": [],
    "noScopes": None,
}

CASES = {
    "exact scope": ("/Kagawa/Takamatsu", {"takamatsu", "floodAndTakamatsu"}),
    "scope and everything below": (
        "/Kagawa/#",
        {"kagawa", "takamatsu", "kasuga", "marugameKasuga", "floodAndTakamatsu"},
    ),
    "below a deeper scope": ("/Kagawa/Takamatsu/#", {"takamatsu", "kasuga", "floodAndTakamatsu"}),
    "any scope": ("/#", set(ROWS) - {"emptyScopes", "noScopes"}),
    "one level wildcard": ("/Kagawa/+", {"takamatsu", "floodAndTakamatsu"}),
    "wildcard in the middle": ("/Kagawa/+/Kasuga", {"kasuga", "marugameKasuga"}),
    "wildcard then everything below": ("/+/Takamatsu/#", {"takamatsu", "kasuga", "floodAndTakamatsu"}),
    "and": ("/Kagawa/Takamatsu;/Agency/Flood", {"floodAndTakamatsu"}),
    "or": ("/Ehime/#|/Agency/Flood", {"matsuyama", "floodAndTakamatsu", "floodOnly"}),
    "comma as or": ("/Ehime/#,/Agency/Flood", {"matsuyama", "floodAndTakamatsu", "floodOnly"}),
    "and binds tighter than or": ("/Kagawa/#;/Agency/#|/Ehime/Matsuyama", {"floodAndTakamatsu", "matsuyama"}),
    "parentheses": ("/Agency/Flood;(/Kagawa/#|/Ehime/#)", {"floodAndTakamatsu"}),
    "relative scope": ("Kagawa/#", {"relative"}),
    "japanese levels": ("/香川/#", {"japanese"}),
    "no such scope": ("/Kochi", set()),
}


async def store(pool: asyncpg.Pool, tenant: str) -> None:
    await pool.execute("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
    await pool.executemany(
        "INSERT INTO entities (tenant, id, types, scopes, created_at, modified_at, attrs)"
        " VALUES ($1, $2, ARRAY['https://example.org/Thing'], $3, now(), now(), '{}'::jsonb)",
        [(tenant, f"urn:ngsi-ld:Thing:{name}", scopes) for name, scopes in ROWS.items()],
    )


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
async def test_scope_queries_select_the_hand_checked_entities(
    pool: asyncpg.Pool, tenant: str, text: str, expected: set[str]
) -> None:
    await store(pool, tenant)
    query = parse_scope_q(text)
    params = Params(tenant)
    sql = f"SELECT e.id FROM entities e WHERE e.tenant = $1 AND {scope_to_sql(query, params)}"
    found = {row["id"].rsplit(":", 1)[1] for row in await pool.fetch(sql, *params.values)}
    assert found == expected
    assert {name for name, scopes in ROWS.items() if matches_scope(query, scopes)} == expected


# --- property: matches_scope answers as PostgreSQL does -------------------------------------------

LEVELS = st.sampled_from(["a", "b", "a_b", "香川", "9"])
PATTERN_LEVELS = st.one_of(LEVELS, st.just("+"))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return "/#"
    levels = draw(st.lists(PATTERN_LEVELS, min_size=1, max_size=4))
    text = ("/" if draw(st.integers(0, 5)) else "") + "/".join(levels)
    return text + ("/#" if draw(st.booleans()) else "")


QUERIES = st.recursive(
    patterns(),
    lambda inner: st.builds(
        lambda parts, joiner, wrap: ("({})" if wrap else "{}").format(joiner.join(parts)),
        st.lists(inner, min_size=2, max_size=3),
        st.sampled_from([";", "|", ","]),
        st.booleans(),
    ),
    max_leaves=6,
)
SCOPES = st.builds(
    lambda levels, rooted: ("/" if rooted else "") + "/".join(levels),
    st.lists(LEVELS, min_size=1, max_size=5),
    st.integers(0, 5).map(bool),
)


@settings(max_examples=400, deadline=None)
@given(text=QUERIES, scopes=st.one_of(st.none(), st.lists(SCOPES, max_size=3)))
async def test_matches_scope_agrees_with_postgresql(
    pool: asyncpg.Pool, text: str, scopes: list[str] | None
) -> None:
    query = parse_scope_q(text)
    params = Params(scopes)
    sql = f"SELECT {scope_to_sql(query, params)} FROM (SELECT $1::text[] AS scopes) AS e"
    assert await pool.fetchval(sql, *params.values) is matches_scope(query, scopes)
