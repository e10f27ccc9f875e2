"""Matching committed changes against subscriptions (clause 5.8, notificationTrigger of 5.2.12).

Runs inside the write transaction: for each change (entity before and after
one operation) it finds the subscriptions it concerns and renders the entity as
each one asks. The rows go to the outbox in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from broker.model.entity import Entity, Instance, dataset_id
from broker.model.render import geometry_of
from broker.notify.content import render_for
from broker.notify.model import DEFAULT_INSTANCE, Change, EntitySelector, Subscription
from broker.query.geo_eval import matches_geo
from broker.query.q_eval import matches_q
from broker.query.scope import matches_scope
from broker.query.types import matches_type
from broker.store.outbox import OutboxRow

__all__ = ["Change", "concerns", "match", "render_for", "triggers_of"]

_SYSTEM = ("createdAt", "modifiedAt")


def _same(old: list[Instance], new: list[Instance]) -> bool:
    """Equal apart from system timestamps: a write repeating a value is not an update."""

    def strip(instance: Instance) -> Instance:
        return {k: (strip(v) if ":" in k else v) for k, v in instance.items() if k not in _SYSTEM}

    return [strip(i) for i in old] == [strip(i) for i in new]


def triggers_of(change: Change, watched: frozenset[str] | None) -> set[str]:
    """The notification triggers a change fires, restricted to ``watched`` attributes.

    Each datasetId instance counts as an attribute (clause 4.5.5): removing one fires
    attributeDeleted, adding one attributeCreated. Deleting the entity deletes each of
    its attributes too (ETSI test suite 046_22_12).
    """
    before, after = change.before, change.after
    if before is None and after is None:
        return set()
    old = before.attrs if before is not None else {}
    new = after.attrs if after is not None else {}
    fired: set[str] = set()
    for name in old.keys() | new.keys():
        if watched is None or name in watched:
            fired |= _attribute_triggers(old.get(name, []), new.get(name, []))
    if after is None:
        fired.add("entityDeleted")
    elif before is None:
        fired.add("entityCreated")
    elif fired or (watched is None and (before.types != after.types or before.scopes != after.scopes)):
        fired.add("entityUpdated")
    return fired


def _attribute_triggers(old: list[Instance], new: list[Instance]) -> set[str]:
    """attributeCreated/Updated/Deleted of one attribute, instance by instance."""
    if len(old) == 1 and len(new) == 1 and dataset_id(old[0]) == dataset_id(new[0]):
        return set() if _same(old, new) else {"attributeUpdated"}  # the usual case, without dicts
    before = {dataset_id(i): i for i in old}
    after = {dataset_id(i): i for i in new}
    fired: set[str] = set()
    if before.keys() - after.keys():
        fired.add("attributeDeleted")
    if after.keys() - before.keys():
        fired.add("attributeCreated")
    if any(not _same([before[key]], [after[key]]) for key in before.keys() & after.keys()):
        fired.add("attributeUpdated")
    return fired


def _selected(selectors: tuple[EntitySelector, ...], entity: Entity) -> bool:
    if not selectors:
        return True
    for selector in selectors:
        if selector.ids is not None and entity.id not in selector.ids:
            continue
        if selector.id_pattern is not None and not selector.id_pattern.search(entity.id):
            continue
        if selector.types is not None and not matches_type(selector.types, entity.types):
            continue
        return True
    return False


# The triggers of a change for (watched attributes, datasetIds): the same for every subscription
# that shares them, so ``match`` computes them once per change.
FiredBy = Callable[[frozenset[str] | None, frozenset[str] | None], set[str]]


def concerns(
    subscription: Subscription, change: Change, moment: datetime, fired: FiredBy | None = None
) -> bool:
    """True when ``change`` must be notified to ``subscription`` (``fired``: its triggers, memoised)."""
    if not subscription.active or subscription.expired(moment) or subscription.time_interval:
        return False
    entity = change.after or change.before
    if entity is None or not _selected(subscription.entities, entity):
        return False
    if fired is None:
        fired = _firing(change)
    if not fired(subscription.watched, subscription.dataset_ids) & subscription.triggers:
        return False
    if subscription.q is not None and not matches_q(subscription.q, entity, subscription.tm):
        return False
    if subscription.scope is not None and not matches_scope(subscription.scope, entity.scopes):
        return False
    if subscription.geo is not None:
        geometry = geometry_of(entity, subscription.geoproperty)
        if geometry is None or not matches_geo(subscription.geo, geometry):
            return False
    return True


def _firing(change: Change) -> FiredBy:
    """The triggers ``change`` fires per (watched, datasetIds), each computed once."""
    memo: dict[tuple[frozenset[str] | None, frozenset[str] | None], set[str]] = {}

    def fired(watched: frozenset[str] | None, dataset_ids: frozenset[str] | None) -> set[str]:
        key = (watched, dataset_ids)
        if key not in memo:
            seen = change
            if dataset_ids is not None:
                seen = Change(_instances(change.before, dataset_ids), _instances(change.after, dataset_ids))
            memo[key] = triggers_of(seen, watched)
        return memo[key]

    return fired


def _instances(entity: Entity | None, dataset_ids: frozenset[str]) -> Entity | None:
    """``entity`` with only the attribute instances of ``dataset_ids`` (clause 5.2.12 datasetId)."""
    if entity is None:
        return None
    kept = entity.copy()
    kept.attrs = {
        name: chosen
        for name, instances in entity.attrs.items()
        if (chosen := [i for i in instances if (dataset_id(i) or DEFAULT_INSTANCE) in dataset_ids])
    }
    return kept


def match(subscriptions: Iterable[Subscription], changes: Iterable[Change]) -> list[OutboxRow]:
    """Outbox rows for every (change, subscription) pair that must be notified, in change order."""
    moment = datetime.now(UTC)
    candidates = list(subscriptions)
    rows: list[OutboxRow] = []
    if not candidates:
        return rows
    for change in changes:
        entity = change.after or change.before
        assert entity is not None
        fired = _firing(change)
        for subscription in candidates:
            if concerns(subscription, change, moment, fired):
                rows.append(
                    OutboxRow(
                        subscription.id,
                        f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
                        entity.id,
                        render_for(subscription, change),
                    )
                )
    return rows
