"""Linked entity retrieval: ``join=inline|flat`` and ``joinLevel`` (clause 4.5.23 of V1.9.1).

The entities a Relationship (``object``) or ListRelationship (``objectList``) points to are read
in one round trip per level, up to ``joinLevel`` (default 1, at most NGSI_MAX_JOIN_LEVEL):

* ``inline``: each Relationship of the answer gains an ``entity`` member (a ListRelationship an
  ``entityList``) holding the linked entity, itself joined one level less deep; in the simplified
  representation the linked entity takes the place of its id. A link back to an entity already on
  the path is not followed again.
* ``flat``: the answer is the array of the entities asked for followed by every linked entity,
  each once.

Linked entities are rendered in the answer's form and language, without its attribute selection.
Links to entities that do not exist (or lie in another tenant) are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from broker.api import visibility
from broker.api.keys import POOL, SETTINGS
from broker.edge import tenant_of
from broker.errors import BadRequestData
from broker.jsonld.context import TermMap
from broker.model.entity import Entity
from broker.model.render import Form, View, render_entity
from broker.store import entities as entity_rows

MODES = ("inline", "flat", "@none")


@dataclass(frozen=True, slots=True)
class Join:
    """How linked entities are added to an answer."""

    mode: str
    level: int


def join_of(request: web.Request, source: Mapping[str, Any] | None = None) -> Join | None:
    """The join asked by the URL (or a Query object); None for none or ``@none``."""
    values = source if source is not None and "join" in source else request.query
    raw_mode, raw_level = values.get("join"), values.get("joinLevel")
    if raw_mode is None:
        if raw_level is not None:
            raise BadRequestData("joinLevel needs join=inline or join=flat (clause 4.5.23)")
        return None
    if raw_mode not in MODES:
        raise BadRequestData(f"join must be one of {', '.join(MODES)}")
    limit = request.app[SETTINGS].max_join_level
    level = 1 if raw_level is None else _level(raw_level, limit)
    return None if raw_mode == "@none" else Join(raw_mode, level)


def _level(raw: Any, limit: int) -> int:
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(text, str) or not text.isdigit() or not 1 <= int(text) <= limit:
        raise BadRequestData(f"joinLevel must be an integer from 1 to {limit} (NGSI_MAX_JOIN_LEVEL)")
    return int(text)


def links_of(entity: Entity) -> list[str]:
    """The ids an entity's Relationships and ListRelationships point to, in attribute order."""
    out: list[str] = []
    for instances in entity.attrs.values():
        for instance in instances:
            if instance.get("type") == "Relationship":
                target = instance["object"]
                out.extend(target if isinstance(target, list) else [target])
            elif instance.get("type") == "ListRelationship":
                out.extend(instance["objectList"])
    return out


async def read_linked(request: web.Request, roots: Iterable[Entity], level: int) -> dict[str, Entity]:
    """The entities reachable from ``roots`` in at most ``level`` links, by id (roots excluded).

    Personal-type entities the request may not see are not followed (absent, as if missing);
    those it may see are audited, one row for the whole join."""
    personal = await visibility.personal_view(request)
    pool = request.app[POOL]
    tenant = tenant_of(request)
    seen = {root.id for root in roots}
    found: dict[str, Entity] = {}
    frontier = [link for root in roots for link in links_of(root)]
    for _ in range(level):
        wanted = list(dict.fromkeys(i for i in frontier if i not in seen))
        if not wanted:
            break
        seen.update(wanted)
        fetched = await entity_rows.fetch_many(pool, tenant, wanted)
        fetched = {i: e for i, e in fetched.items() if not personal.hides(e.types)}
        found.update(fetched)
        frontier = [link for entity in fetched.values() for link in links_of(entity)]
    await visibility.audit(request, personal, ((e.id, e.types) for e in found.values()))
    return found


def linked_view(view: View) -> View:
    """The view linked entities are rendered in: the answer's form, every attribute."""
    return replace(view, pick=None, omit=frozenset(), sub_pick=None, sub_omit=None, dataset_id=None)


def inline(
    entity: Entity,
    rendered: dict[str, Any],
    tm: TermMap,
    view: View,
    linked: Mapping[str, Entity],
    depth: int,
    path: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``rendered`` (entity's representation) with its linked entities inlined ``depth`` levels deep."""
    if depth <= 0:
        return rendered
    path = path | {entity.id}
    sub_view = linked_view(view)

    def expand(target: str) -> Any:
        child = linked.get(target)
        if child is None or target in path:
            return None
        body = render_entity(child, tm, sub_view)
        return inline(child, body, tm, view, linked, depth - 1, path)

    for name, instances in entity.attrs.items():
        if not any(i.get("type") in ("Relationship", "ListRelationship") for i in instances):
            continue
        key = tm.compact(name)
        if key in rendered:
            rendered[key] = _inline_attribute(rendered[key], view.form, expand)
    return rendered


def _inline_attribute(value: Any, form: Form, expand: Any) -> Any:
    if form is Form.SIMPLIFIED:
        if isinstance(value, str):
            return expand(value) or value
        if isinstance(value, list):
            return [expand(v) or v if isinstance(v, str) else v for v in value]
        return value
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            continue
        target = item.get("object")
        if isinstance(target, str) and (child := expand(target)) is not None:
            item["entity"] = child
        targets = item.get("objectList")
        if isinstance(targets, list):
            children = [expand(t) for t in targets if isinstance(t, str)]
            item["entityList"] = [c for c in children if c is not None]
    return value


def flat(rendered: list[dict[str, Any]], linked: Mapping[str, Entity], tm: TermMap, view: View) -> list[Any]:
    """The answer's entities followed by every linked one, each once."""
    sub_view = linked_view(view)
    present = {item.get("id") for item in rendered}
    extra = [render_entity(e, tm, sub_view) for i, e in linked.items() if i not in present]
    return [*rendered, *extra]
