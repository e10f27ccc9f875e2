"""What a committed change becomes in the forwarding outbox, written in the change's own transaction.

A row carries what the target needs to end up like this broker after the change: the entity's id
and type with the attributes the change made or altered (normalized, without system members,
names compacted with the core @context only: core and default-vocabulary names short, every other
name its full IRI, so no @context has to be sent), or the entity's deletion. Attributes the
change removed are not forwarded (a batch upsert cannot remove one; README "Adapter mode").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from broker.ingest import Result
from broker.jsonld.context import TermMap, core_term_map
from broker.model.entity import Entity
from broker.model.render import View, render_instance
from broker.store import forwarding
from broker.store.forwarding import Change
from broker.store.pool import Connection

DEVICES = "devices"
ALL = "all"
SCOPES = (DEVICES, ALL)

_VIEW = View()


def change_of(before: Entity | None, after: Entity | None, tm: TermMap) -> Change | None:
    """The row to forward for ``before`` -> ``after`` (None: nothing the target would see changed)."""
    if after is None:
        if before is None:
            return None
        return Change(before.id, forwarding.DELETE, {"id": before.id})
    old = before.attrs if before is not None else {}
    data: dict[str, Any] = {"id": after.id}
    types = [tm.compact(t) for t in after.types]
    data["type"] = types[0] if len(types) == 1 else types
    if after.scopes and (before is None or before.scopes != after.scopes):
        data["scope"] = after.scopes[0] if len(after.scopes) == 1 else list(after.scopes)
    changed = False
    for name, instances in after.attrs.items():
        if old.get(name) == instances:
            continue
        changed = True
        rendered = [render_instance(i, tm, _VIEW, bare_ok=False) for i in instances]
        data[tm.compact(name)] = rendered[0] if len(rendered) == 1 else rendered
    if not changed and before is not None and before.types == after.types and "scope" not in data:
        return None
    return Change(after.id, forwarding.UPSERT, data)


def forward_hook(scope: str) -> Callable[[Connection, str, list[Result]], Awaitable[None]]:
    """The write-transaction hook of adapter mode: queue the changes ``scope`` says to forward."""
    tm = core_term_map()
    every = scope == ALL

    async def hook(conn: Connection, tenant: str, results: list[Result]) -> None:
        changes = [
            change
            for r in results
            if r.outcome is not None
            and (every or r.from_device)
            and (change := change_of(r.before, r.outcome.entity, tm)) is not None
        ]
        if changes:
            await forwarding.queue(conn, tenant, changes)

    return hook
