"""What a notification carries of one changed entity (clauses 5.3.1, 5.2.14 and 5.8.6).

The entity as the subscription asks for it: its format, pick/omit or attributes, sysAttrs,
language and datasetIds, with showChanges' previous values; attributes (or datasetId
instances) that the change removed appear with NGSI-LD Null as their value (clause 5.2.1),
stamped with ``deletedAt`` under sysAttrs, and a deleted entity carries its ``deletedAt``
(with its own createdAt/modifiedAt under sysAttrs).
"""

from __future__ import annotations

from typing import Any

from broker.jsonld.context import TermMap
from broker.model.entity import NULL_URI, VALUE_MEMBER, Entity, Instance, dataset_id, now
from broker.model.render import Form, View, render_entity
from broker.notify.model import ENTITY_MEMBERS, Change, Subscription

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
# Clause 5.2.1: a deleted LanguageProperty's languageMap is this object, any other value the URI.
_NULL_LANGUAGE_MAP = {"@none": NULL_URI}
_TIMES = ("createdAt", "modifiedAt")
_VALUE_MEMBERS = frozenset(VALUE_MEMBER.values())


def view_of(subscription: Subscription) -> View:
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
    before, after = change.before, change.after
    tm = subscription.render_tm
    removed: dict[str, list[Instance]] = {}
    if before is not None and _shows_deletions(subscription):
        removed = _tombstones(before, after, subscription, tm)
    if after is None:
        assert before is not None
        shown = Entity(
            id=before.id, types=before.types, created_at=before.created_at, modified_at=before.modified_at
        )
        shown.attrs = removed
    else:
        shown = after
        if subscription.show_changes and before is not None:
            shown = _with_previous_values(before, shown, tm)
        if removed:
            shown = shown.copy()
            for name, gone in removed.items():
                shown.attrs[name] = shown.attrs.get(name, []) + gone
    body = render_entity(shown, tm, view_of(subscription))
    if subscription.sys_attrs and subscription.form is Form.SIMPLIFIED:
        # Clause 5.2.14 sysAttrs holds for every format: keyValues keeps the entity's own timestamps.
        body["createdAt"] = shown.created_at
        body["modifiedAt"] = shown.modified_at
    if removed or after is None:
        # The write's own time when an update removed something (its modifiedAt), else now.
        at = deleted_at or (after.modified_at if after is not None else None) or now()
        if subscription.sys_attrs and subscription.form is not Form.SIMPLIFIED:
            _stamp_deleted(body, at)
        if after is None:
            body["deletedAt"] = at
    return body


def _shows_deletions(subscription: Subscription) -> bool:
    """Removed attributes are shown to attributeDeleted subscriptions, and with showChanges."""
    return "attributeDeleted" in subscription.triggers or subscription.show_changes


def _tombstones(
    before: Entity, after: Entity | None, subscription: Subscription, tm: TermMap
) -> dict[str, list[Instance]]:
    """The instances of ``before`` that ``after`` no longer has, as NGSI-LD Null (clause 5.2.1).

    An entity deleted shows the watched attributes alone, when attributeDeleted is what
    selects it (ETSI test suite 046_22_12); with entityDeleted and showChanges, every one.
    """
    watched = subscription.watched
    if after is None and "attributeDeleted" not in subscription.triggers:
        watched = None
    remaining = after.attrs if after is not None else {}
    out: dict[str, list[Instance]] = {}
    for name, instances in before.attrs.items():
        if after is None and watched is not None and name not in watched:
            continue
        kept = {dataset_id(i) for i in remaining.get(name, [])}
        gone = [_tombstone(i, subscription.show_changes, tm) for i in instances if dataset_id(i) not in kept]
        if gone:
            out[name] = gone
    return out


def _tombstone(instance: Instance, show_changes: bool, tm: TermMap) -> Instance:
    """A removed instance: its type, NGSI-LD Null as value, its datasetId and timestamps kept."""
    kind = instance["type"]
    member = VALUE_MEMBER.get(kind, "value")
    out: Instance = {"type": kind, member: _NULL_LANGUAGE_MAP if kind == "LanguageProperty" else NULL_URI}
    for key in ("datasetId", *_TIMES):
        if key in instance:
            out[key] = instance[key]
    if show_changes and member in instance:
        out[_PREVIOUS[member]] = _previous(member, instance[member], tm)
    return out


def _stamp_deleted(body: dict[str, Any], at: str) -> None:
    """deletedAt on every rendered instance holding NGSI-LD Null: a system attribute like createdAt
    and modifiedAt, so with sysAttrs only (ETSI test suite 046_22_02 has none, 046_22_11 has it)."""
    for key, rendered in body.items():
        if key in ENTITY_MEMBERS or not isinstance(rendered, dict | list):
            continue
        for instance in rendered if isinstance(rendered, list) else [rendered]:
            if isinstance(instance, dict) and _is_tombstone(instance):
                instance["deletedAt"] = at


def _is_tombstone(instance: dict[str, Any]) -> bool:
    return any(instance.get(member) in (NULL_URI, _NULL_LANGUAGE_MAP) for member in _VALUE_MEMBERS)


def _previous(member: str, value: Any, tm: TermMap) -> Any:
    """A previous value as the notification shows it: a vocab compacted, as the vocab itself is."""
    if member != "vocab":
        return value
    return [tm.compact(v) for v in value] if isinstance(value, list) else tm.compact(value)


def _with_previous_values(before: Entity, after: Entity, tm: TermMap) -> Entity:
    """``after`` with previousValue, previousObject, previousLanguageMap, ... on the instances that
    changed (showChanges)."""
    shown = after.copy()
    for name, instances in shown.attrs.items():
        old = {dataset_id(i): i for i in before.attrs.get(name, [])}
        for index, instance in enumerate(instances):
            previous = old.get(dataset_id(instance))
            if previous is None or previous.get("type") != instance.get("type"):
                continue
            member = VALUE_MEMBER.get(instance["type"], "value")
            if member in previous and previous[member] != instance.get(member):
                instances[index] = {**instance, _PREVIOUS[member]: _previous(member, previous[member], tm)}
    return shown
