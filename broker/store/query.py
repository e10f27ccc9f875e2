"""Running entity queries: one page in a stable order, and the count when asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from broker.errors import BadRequestData, TooComplexQuery
from broker.jsonld.context import TermMap
from broker.model.entity import Entity
from broker.query.entity_query import EntityQuery, where_sql
from broker.query.order import OrderKey, order_sql
from broker.query.params import Params
from broker.store.entities import from_row
from broker.store.type_counts import count_of, whole_type

# A query the database cannot answer within this time is refused rather than left to hog it.
STATEMENT_TIMEOUT_MS = 10_000


@asynccontextmanager
async def read_only(
    pool: asyncpg.Pool, *, generic: bool = False
) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
    """A read-only transaction with the statement timeout, its database errors as NGSI-LD ones;
    its statements get custom plans, or with ``generic`` the plan cached for the connection."""
    try:
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            # One round trip for both. Custom plans only: asyncpg prepares every statement, and after
            # five runs PostgreSQL may keep a generic plan that cannot see the tenant's and type's
            # sizes nor the geo box's, so `near` at 1M entities AND-ed the GIN bitmap of the whole
            # type (1M rows, 124 ms) into a GiST look-up of 200 (2.4 ms with the custom plan, whose
            # planning takes ~0.2 ms).
            plans = "force_generic_plan" if generic else "force_custom_plan"
            await conn.execute(
                f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}; SET LOCAL plan_cache_mode = {plans}"
            )
            yield conn
    except asyncpg.InvalidRegularExpressionError as exc:
        raise BadRequestData(f"invalid regular expression: {exc}") from None
    except asyncpg.DataError as exc:
        # e.g. a q date PostgreSQL cannot represent (year 0 after converting to UTC)
        raise BadRequestData(f"a value in the query cannot be used: {exc}") from None
    except asyncpg.QueryCanceledError:
        raise TooComplexQuery(
            f"the query did not finish within {STATEMENT_TIMEOUT_MS // 1000} s; narrow it down"
        ) from None


async def find(
    pool: asyncpg.Pool,
    tenant: str,
    query: EntityQuery,
    tm: TermMap,
    *,
    limit: int,
    offset: int,
    count: bool,
    order: tuple[OrderKey, ...] = (),
) -> tuple[list[Entity], bool, int | None]:
    """One page of matching entities in ``order`` (then id order), whether more follow, and the total
    when asked."""
    params = Params(tenant)
    where = where_sql(query, tm, params)
    rows: list[asyncpg.Record] = []
    total: int | None = None
    async with read_only(pool) as conn:
        if limit > 0:
            page = Params(*params.values)
            ordering = order_sql(order, page)
            rows = await conn.fetch(
                "SELECT e.id, e.types, e.scopes, e.attrs, e.created_at, e.modified_at"
                f" FROM entities e WHERE e.tenant = $1 AND {where}"
                f" ORDER BY {ordering} LIMIT {page.add(limit + 1)} OFFSET {page.add(offset)}",
                *page.values,
            )
        counted_type = whole_type(query) if count else None
        if counted_type is not None:
            # count=true over a whole type: the counter the write triggers keep (migration 0055)
            total = await count_of(conn, tenant, counted_type)
        elif count:
            total = await conn.fetchval(
                f"SELECT count(*) FROM entities e WHERE e.tenant = $1 AND {where}", *params.values
            )
    more = len(rows) > limit
    return [from_row(row) for row in rows[:limit]], more, total


async def find_ids(
    pool: asyncpg.Pool, tenant: str, query: EntityQuery, tm: TermMap, *, limit: int
) -> list[str]:
    """The ids of at most ``limit`` entities matching ``query``, in id order (a purge's selection)."""
    params = Params(tenant)
    where = where_sql(query, tm, params)
    async with read_only(pool) as conn:
        rows = await conn.fetch(
            f"SELECT e.id FROM entities e WHERE e.tenant = $1 AND {where} ORDER BY e.id"
            f" LIMIT {params.add(limit)}",
            *params.values,
        )
    return [row["id"] for row in rows]
