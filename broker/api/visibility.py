"""Reading another tenant's entities through its sharing grants or open data (issue 12, items 3, 5).

The middleware puts the Visibility the grants add up to on the request; the read handlers pass
their query and each entity through here. Entities of types not granted are absent (a query never
selects them, a retrieval answers 404: their existence does not leak), attributes not granted are
left out, and a query that filters, selects or orders by attributes reaches only the types on
which they are all granted (refused when there is none), since the answer would tell their
values. Linked entity retrieval (join) through a grant is refused for now: the linked entities
would have to be held to the same grants.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from aiohttp import web

from broker.api.keys import PERSONAL
from broker.auth.middleware import identity_of, visibility_of
from broker.auth.model import Permission
from broker.edge import tenant_of
from broker.errors import Forbidden
from broker.jsonld.context import TermMap
from broker.model.entity import Entity
from broker.query.entity_query import EntityQuery
from broker.query.order import OrderKey
from broker.query.qlang import And, Or, QExpr


def _q_attrs(expr: QExpr) -> set[str]:
    if isinstance(expr, And | Or):
        return set().union(*(_q_attrs(part) for part in expr.parts))
    return {expr.path.attr}


def restrict(
    request: web.Request, query: EntityQuery, tm: TermMap, order: tuple[OrderKey, ...] = ()
) -> EntityQuery:
    """``query`` held to the request's grants (unchanged for a request reading its own tenant).

    A query naming attributes (to select, filter, locate or order by) only reaches the granted
    types on which every one of them is visible; none: 403 naming the hidden ones.
    """
    seen = visibility_of(request)
    if seen is None:
        return query
    named = set(query.attrs or ())
    if query.q is not None:
        named |= {tm.expand(name) for name in _q_attrs(query.q)}
    if query.geo is not None:
        named.add(query.geoproperty)
    named |= {key.name for key in order if key.attribute}
    types = tuple(t for t, attrs in seen.types.items() if attrs is None or named <= attrs)
    if not types:
        hidden = [n for n in sorted(named) if not any(a is None or n in a for a in seen.types.values())]
        shown = ", ".join(tm.compact(name) for name in hidden or sorted(named))
        raise Forbidden(f"the sharing grant does not include {shown}")
    return replace(query, types_in=types)


def refuse_join(request: web.Request, join: object) -> None:
    if join is not None and visibility_of(request) is not None:
        raise Forbidden("linked entity retrieval (join) is not available through a sharing grant")


def trim(request: web.Request, entity: Entity) -> Entity | None:
    """``entity`` as the request may see it: None when its types are not granted."""
    seen = visibility_of(request)
    if seen is None:
        return entity
    if not seen.shows(entity.types):
        return None
    attrs = seen.attrs_of(entity.types)
    if attrs is None:
        return entity
    return replace(entity, attrs={name: value for name, value in entity.attrs.items() if name in attrs})


@dataclass(frozen=True, slots=True)
class PersonalView:
    """How a request meets the tenant's personal entity types (issue 12 item 4): ``hidden`` ones
    are absent for it like types not granted; reads of ``audited`` ones are written to the audit log."""

    hidden: frozenset[str] = frozenset()
    audited: frozenset[str] = frozenset()

    def hides(self, entity_types: Iterable[str]) -> bool:
        return not self.hidden.isdisjoint(entity_types)

    def exclude(self, query: EntityQuery) -> EntityQuery:
        if not self.hidden:
            return query
        return replace(query, types_not=tuple(sorted(set(query.types_not) | self.hidden)))


async def personal_view(request: web.Request) -> PersonalView:
    """Personal types are hidden through any grant or open data and from identities without the
    ``personal`` permission; for the others every read of them is audited. Auth off: audited too
    (as subject "auth-off"), since the data is personal whatever the auth mode."""
    personal = await request.app[PERSONAL].types(tenant_of(request))
    if not personal:
        return PersonalView()
    if visibility_of(request) is None and identity_of(request).may(Permission.PERSONAL):
        return PersonalView(audited=personal)
    return PersonalView(hidden=personal)


async def audit(request: web.Request, seen: PersonalView, read: Iterable[tuple[str, Iterable[str]]]) -> None:
    """One audit row for the (entity id, its types) pairs ``read`` that are personal, if any."""
    if not seen.audited:
        return
    ids = [entity_id for entity_id, types in read if not seen.audited.isdisjoint(types)]
    if not ids:
        return
    identity = identity_of(request)
    resource = request.match_info.route.resource
    route = f"{request.method} {resource.canonical if resource is not None else request.path}"
    await request.app[PERSONAL].audit(tenant_of(request), identity.subject, identity.kind, route, ids)
