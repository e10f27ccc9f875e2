"""Matching committed changes against subscriptions (clause 5.8, notificationTrigger of 5.2.12).

Runs inside the write transaction: for each change (entity before and after
one operation) it finds the subscriptions it concerns and renders the entity as
each one asks. The rows go to the outbox in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broker.jsonld.context import TermMap
from broker.model.entity import VALUE_MEMBER, Entity, Instance, dataset_id, now
from broker.model.render import Form, View, geometry_of, render_entity
from broker.notify.model import DEFAULT_INSTANCE, ENTITY_MEMBERS, EntitySelector, Subscription
from broker.query.geo_eval import matches_geo
from broker.query.q_eval import matches_q
from broker.query.scope import matches_scope
from broker.query.types import matches_type
from broker.store.outbox import OutboxRow

_SYSTEM = ("createdAt", "modifiedAt")


@dataclass(frozen=True, slots=True)
class Change:
    """One operation's effect on one entity; ``after`` is None when it was deleted."""

    before: Entity | None
    after: Entity | None


def _same(old: list[Instance], new: list[Instance]) -> bool:
    """Equal apart from system timestamps: a write repeating a value is not an update."""

    def strip(instance: Instance) -> Instance:
        return {k: (strip(v) if ":" in k else v) for k, v in instance.items() if k not in _SYSTEM}

    return [strip(i) for i in old] == [strip(i) for i in new]


def triggers_of(change: Change, watched: frozenset[str] | None) -> set[str]:
    """The notification triggers a change fires, restricted to ``watched`` attributes."""
    before, after = change.before, change.after
    if after is None:
        return {"entityDeleted"} if before is not None else set()
    fired: set[str] = set()
    old = before.attrs if before is not None else {}
    for name, instances in after.attrs.items():
        if watched is not None and name not in watched:
            continue
        if name not in old:
            fired.add("attributeCreated")
        elif not _same(old[name], instances):
            fired.add("attributeUpdated")
    for name in old:
        if name not in after.attrs and (watched is None or name in watched):
            fired.add("attributeDeleted")
    if before is None:
        fired.add("entityCreated")
    elif fired or (watched is None and (before.types != after.types or before.scopes != after.scopes)):
        fired.add("entityUpdated")
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


def concerns(subscription: Subscription, change: Change, moment: datetime) -> bool:
    """True when ``change`` must be notified to ``subscription``."""
    if not subscription.active or subscription.expired(moment) or subscription.time_interval:
        return False
    entity = change.after or change.before
    if entity is None or not _selected(subscription.entities, entity):
        return False
    if subscription.dataset_ids is not None:
        change = Change(
            _instances(change.before, subscription.dataset_ids),
            _instances(change.after, subscription.dataset_ids),
        )
    if not triggers_of(change, subscription.watched) & subscription.triggers:
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


def _view(subscription: Subscription) -> View:
    """How the subscription's notifications render an entity (clauses 5.2.14, 4.21, 5.2.12 datasetId)."""
    pick = subscription.pick
    if pick is None and subscription.attributes is not None:
        pick = subscription.attributes | ENTITY_MEMBERS
    return View(
        form=subscription.form,
        sys_attrs=subscription.sys_attrs,
        pick=pick,
        omit=subscription.omit,
        lang=subscription.lang,
        dataset_id=subscription.dataset_ids,
    )


def render_for(subscription: Subscription, change: Change, deleted_at: str | None = None) -> dict[str, Any]:
    """The entity as the subscription's notification carries it (clause 5.3.1)."""
    if change.after is None:
        assert change.before is not None
        gone = Entity(id=change.before.id, types=change.before.types)
        body = render_entity(gone, subscription.render_tm, View(form=subscription.form))
        body["deletedAt"] = deleted_at or now()
        return body
    view = _view(subscription)
    entity = change.after
    if subscription.show_changes and change.before is not None:
        entity = _with_previous_values(change.before, entity, subscription.render_tm)
    body = render_entity(entity, subscription.render_tm, view)
    if subscription.sys_attrs and subscription.form is Form.SIMPLIFIED:
        # Clause 5.2.14 sysAttrs holds for every format: keyValues keeps the entity's own timestamps.
        body["createdAt"] = entity.created_at
        body["modifiedAt"] = entity.modified_at
    return body


# Clause 5.2.14 showChanges: the member holding each attribute type's value, and the one holding
# its previous value (clauses 4.5.2-4.5.9 name them).
_PREVIOUS = {
    "value": "previousValue",
    "object": "previousObject",
    "languageMap": "previousLanguageMap",
    "json": "previousJson",
    "vocab": "previousVocab",
    "valueList": "previousValueList",
    "objectList": "previousObjectList",
}


def _with_previous_values(before: Entity, after: Entity, tm: TermMap) -> Entity:
    """``after`` with previousValue, previousObject, previousLanguageMap, ... on the instances that
    changed (showChanges); a previous vocab is compacted as the vocab itself is."""
    shown = after.copy()
    for name, instances in shown.attrs.items():
        old = {i.get("datasetId"): i for i in before.attrs.get(name, [])}
        for index, instance in enumerate(instances):
            previous = old.get(instance.get("datasetId"))
            if previous is None or previous.get("type") != instance.get("type"):
                continue
            member = VALUE_MEMBER.get(instance["type"], "value")
            if member in previous and previous[member] != instance.get(member):
                value = previous[member]
                if member == "vocab":
                    value = [tm.compact(v) for v in value] if isinstance(value, list) else tm.compact(value)
                instances[index] = {**instance, _PREVIOUS[member]: value}
    return shown


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
        for subscription in candidates:
            if concerns(subscription, change, moment):
                rows.append(
                    OutboxRow(
                        subscription.id,
                        f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
                        entity.id,
                        render_for(subscription, change),
                    )
                )
    return rows
