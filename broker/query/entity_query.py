"""A parsed entity query (clause 5.7.2) and the SQL WHERE clause it becomes.

Both entrances, GET /entities and POST /entityOperations/query, build an
``EntityQuery``; the store only ever sees the SQL text and its Params.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.jsonld.context import TermMap
from broker.model.entity import LOCATION
from broker.query.geo import GeoQuery, geo_to_sql
from broker.query.params import Params
from broker.query.q_sql import q_to_sql
from broker.query.qlang import QExpr
from broker.query.scope import ScopeQuery, scope_to_sql
from broker.query.types import TypeExpr, type_to_sql


@dataclass(frozen=True, slots=True)
class Selector:
    """One EntitySelector: every given part must hold (ids: any of them)."""

    ids: tuple[str, ...] | None = None
    id_pattern: str | None = None
    types: TypeExpr | None = None


@dataclass(frozen=True, slots=True)
class EntityQuery:
    """What an entity must satisfy to be returned; selectors are alternatives."""

    selectors: tuple[Selector, ...] = ()
    attrs: tuple[str, ...] | None = None
    q: QExpr | None = None
    geo: GeoQuery | None = None
    geoproperty: str = LOCATION
    scope: ScopeQuery | None = None
    # Entities must have one of these types besides (a sharing grant's types); None: no such limit.
    types_in: tuple[str, ...] | None = None
    # Entities of any of these types are left out (personal types the reader may not see).
    types_not: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when nothing restricts the query (clause 5.7.2 asks for at least one restriction)."""
        return not (self.selectors or self.attrs or self.q or self.geo or self.scope)


def _selector_sql(selector: Selector, params: Params, alias: str) -> str:
    parts: list[str] = []
    if selector.ids is not None:
        parts.append(f"{alias}.id = ANY({params.add(list(selector.ids), 'text[]')})")
    if selector.id_pattern is not None:
        parts.append(f"{alias}.id ~ {params.add(selector.id_pattern, 'text')}")
    if selector.types is not None:
        parts.append(type_to_sql(selector.types, params, alias))
    return "(" + " AND ".join(parts) + ")" if parts else "TRUE"


def where_sql(query: EntityQuery, tm: TermMap, params: Params, alias: str = "e") -> str:
    """The conditions of ``query`` (tenant excluded) as one SQL boolean expression."""
    conditions: list[str] = []
    if query.selectors:
        alternatives = [_selector_sql(s, params, alias) for s in query.selectors]
        conditions.append("(" + " OR ".join(alternatives) + ")")
    if query.attrs:
        conditions.append(f"{alias}.attrs ?| {params.add(list(query.attrs), 'text[]')}")
    if query.q is not None:
        conditions.append(q_to_sql(query.q, tm, params, alias))
    if query.geo is not None:
        conditions.append(geo_to_sql(query.geo, query.geoproperty, params, alias))
    if query.scope is not None:
        conditions.append(scope_to_sql(query.scope, params, alias))
    if query.types_in is not None:
        conditions.append(f"{alias}.types && {params.add(list(query.types_in), 'text[]')}")
    if query.types_not:
        conditions.append(f"NOT ({alias}.types && {params.add(list(query.types_not), 'text[]')})")
    return " AND ".join(conditions) if conditions else "TRUE"
