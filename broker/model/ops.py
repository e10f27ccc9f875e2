"""The entity operations of clause 5.6 as pure functions: (current state, input) -> new state.

They touch no database and no network, so the write path can apply a whole
batch in memory, in order, inside one transaction, and tests can check the
semantics (merge patch, noOverwrite, NGSI-LD Null) exhaustively.
Each function raises an NgsiLdError when the operation cannot apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from broker.errors import AlreadyExists, BadRequestData, ResourceNotFound
from broker.model.entity import (
    NULL_URI,
    VALUE_MEMBER,
    Entity,
    Instance,
    check_instance_count,
    dataset_id,
    find_instance,
    is_null_instance,
)
from broker.model.geojson import validate_geometry


@dataclass(slots=True)
class Outcome:
    """What an operation did: the entity afterwards (None when deleted) and per-attribute results."""

    entity: Entity | None
    created: bool = False
    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)


def _is_sub_attribute(key: str) -> bool:
    return ":" in key


def stamp(instance: Instance, now: str, created: str | None = None) -> Instance:
    """A copy of ``instance`` with createdAt/modifiedAt set, sub-attributes included."""
    out: Instance = {}
    for key, value in instance.items():
        out[key] = stamp(value, now) if _is_sub_attribute(key) else value
    out["createdAt"] = created or now
    out["modifiedAt"] = now
    return out


def _require(current: Entity | None, entity_id: str) -> Entity:
    if current is None:
        raise ResourceNotFound(f"entity {entity_id} does not exist")
    return current.copy()


def _check_same_id(fragment: Entity, entity_id: str) -> None:
    if fragment.id and fragment.id != entity_id:
        raise BadRequestData(f"the payload's id {fragment.id} differs from the entity id {entity_id}")


def check_instances(entity: Entity, limit: int) -> None:
    """400 when an operation would leave an attribute with more than ``limit`` instances."""
    for name, instances in entity.attrs.items():
        check_instance_count(name, len(instances), limit)


def _by_dataset(instances: Iterable[Instance]) -> dict[str | None, Instance]:
    """An attribute's instances by datasetId, in their order (one lookup per instance given, not a scan).

    A dict keeps the list's semantics: a replaced instance keeps its place, a new one goes last.
    """
    return {dataset_id(instance): instance for instance in instances}


def _store(entity: Entity, name: str, instances: dict[str | None, Instance]) -> None:
    """Put an attribute's instances back (an attribute left without instances is removed)."""
    if instances:
        entity.attrs[name] = list(instances.values())
    else:
        entity.attrs.pop(name, None)


def _touch(entity: Entity, now: str) -> None:
    entity.modified_at = now


def _add_types(entity: Entity, types: list[str]) -> None:
    for iri in types:
        if iri not in entity.types:
            entity.types.append(iri)


def create(current: Entity | None, new: Entity, now: str) -> Outcome:
    """5.6.1 Create Entity."""
    if current is not None:
        raise AlreadyExists(f"entity {new.id} already exists")
    entity = Entity(
        id=new.id,
        types=list(new.types),
        scopes=new.scopes,
        attrs={name: [stamp(i, now) for i in instances] for name, instances in new.attrs.items()},
        created_at=now,
        modified_at=now,
    )
    return Outcome(entity, created=True, updated=list(new.attrs))


def replace(current: Entity | None, new: Entity, now: str) -> Outcome:
    """5.6.18 Replace Entity: everything but the id and createdAt is replaced."""
    old = _require(current, new.id)
    _check_same_id(new, old.id)
    if not new.types:
        raise BadRequestData("a replacing entity must have a type")
    outcome = create(None, new, now)
    assert outcome.entity is not None
    outcome.entity.id = old.id
    outcome.entity.created_at = old.created_at
    outcome.created = False
    return outcome


def upsert(current: Entity | None, new: Entity, now: str, *, replace_existing: bool) -> Outcome:
    """5.6.8 Batch Upsert of one entity: create, or replace / update what exists."""
    if current is None:
        if not new.types:
            raise BadRequestData(f"entity {new.id} does not exist and the payload has no type to create it")
        return create(None, new, now)
    if replace_existing:
        return replace(current, new, now)
    return append(current, new, now, no_overwrite=False)


def append(current: Entity | None, fragment: Entity, now: str, *, no_overwrite: bool) -> Outcome:
    """5.6.3 Append Entity Attributes (also the per-entity step of 5.6.9 Batch Update)."""
    entity = _require(current, fragment.id)
    _check_same_id(fragment, entity.id)
    _add_types(entity, fragment.types)
    outcome = Outcome(entity)
    if fragment.scopes is not None:
        if no_overwrite:
            entity.scopes = list(dict.fromkeys((entity.scopes or []) + fragment.scopes))
        else:
            entity.scopes = fragment.scopes or None
    for name, instances in fragment.attrs.items():
        existing = _by_dataset(entity.attrs.get(name, ()))
        changed = False
        for instance in instances:
            key = dataset_id(instance)
            old = existing.get(key)
            if old is None:
                existing[key] = stamp(instance, now)
                changed = True
            elif no_overwrite:
                outcome.not_updated.append((name, "attribute exists and noOverwrite was requested"))
            else:
                existing[key] = stamp(instance, now, old.get("createdAt"))
                changed = True
        if changed:
            outcome.updated.append(name)
        _store(entity, name, existing)
    _touch(entity, now)
    return outcome


def update_attributes(current: Entity | None, fragment: Entity, now: str) -> Outcome:
    """5.6.2 Update Attributes: replace existing instances only; NGSI-LD Null deletes one.

    Types given are added (as Append does); a scope is replaced only where the entity has one,
    else it is reported as not updated (scope is updated like an attribute, clause 4.18).
    """
    entity = _require(current, fragment.id)
    _check_same_id(fragment, entity.id)
    _add_types(entity, fragment.types)
    outcome = Outcome(entity)
    if fragment.scopes is not None:
        if entity.scopes:
            entity.scopes = fragment.scopes or None
            outcome.updated.append("scope")
        else:
            outcome.not_updated.append(("scope", "the entity has no scope"))
    for name, instances in fragment.attrs.items():
        if name not in entity.attrs:
            outcome.not_updated.extend((name, "attribute does not exist") for _ in instances)
            continue
        existing = _by_dataset(entity.attrs[name])
        changed = False
        for instance in instances:
            wanted = dataset_id(instance)
            old = existing.get(wanted)
            if old is None:
                outcome.not_updated.append((name, f"no instance with datasetId {wanted}"))
            elif is_null_instance(instance):
                del existing[wanted]
                changed = True
            else:
                existing[wanted] = stamp(instance, now, old.get("createdAt"))
                changed = True
        if changed:
            outcome.updated.append(name)
        _store(entity, name, existing)
    _touch(entity, now)
    return outcome


def merge(current: Entity | None, fragment: Entity, now: str, *, observed_at: str | None = None) -> Outcome:
    """5.6.17 Merge Entity (merge-patch behaviour of clause 5.5.12).

    Attributes missing are added; existing instances are merged member by member,
    sub-attributes recursively, JSON object values per RFC 7396; NGSI-LD Null
    deletes an attribute instance, a sub-attribute or a key of a JSON value.
    """
    entity = _require(current, fragment.id)
    _check_same_id(fragment, entity.id)
    _add_types(entity, fragment.types)
    outcome = Outcome(entity)
    if fragment.scopes is not None:
        entity.scopes = fragment.scopes or None
    for name, instances in fragment.attrs.items():
        existing = _by_dataset(entity.attrs.get(name, ()))
        for instance in instances:
            key = dataset_id(instance)
            old = existing.get(key)
            if is_null_instance(instance):
                existing.pop(key, None)
            elif old is None:
                existing[key] = stamp(_drop_nulls(instance), now)
            else:
                existing[key] = merge_instance(old, instance, now, observed_at=observed_at)
        outcome.updated.append(name)
        _store(entity, name, existing)
    _touch(entity, now)
    return outcome


def merge_instance(old: Instance, patch: Instance, now: str, *, observed_at: str | None = None) -> Instance:
    """Merge one attribute instance into another (5.5.12)."""
    kind = patch["type"]
    if VALUE_MEMBER[kind] != VALUE_MEMBER[old["type"]]:
        return stamp(_drop_nulls(patch), now, old.get("createdAt"))
    member = VALUE_MEMBER[kind]
    if old["type"] == "GeoProperty" and kind == "Property":
        kind = "GeoProperty"  # a concise value patching a GeoProperty keeps its type
    new: Instance = dict(old)
    new["type"] = kind
    for key, value in patch.items():
        if key == "type":
            continue
        if _is_sub_attribute(key):
            if is_null_instance(value):
                new.pop(key, None)
            elif key in old:
                new[key] = merge_instance(old[key], value, now)
            else:
                new[key] = stamp(_drop_nulls(value), now)
        elif key == member and kind == "Property":
            new[key] = merge_value(old.get(key), value)
        else:
            new[key] = value
    if observed_at is not None and "observedAt" in old and "observedAt" not in patch:
        new["observedAt"] = observed_at
    new["modifiedAt"] = now
    _check_geometry(new)
    return new


def _check_geometry(instance: Instance) -> None:
    """A GeoProperty patched by a concise value must still hold a geometry."""
    if instance["type"] == "GeoProperty":
        validate_geometry(instance["value"], "GeoProperty")


def merge_value(old: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch of a value, with NGSI-LD Null in place of JSON null."""
    if not isinstance(patch, dict) or "@value" in patch:
        return patch
    base = dict(old) if isinstance(old, dict) and "@value" not in old else {}
    for key, value in patch.items():
        if value == NULL_URI:
            base.pop(key, None)
        else:
            base[key] = merge_value(base.get(key), value)
    return base


def _drop_nulls(instance: Instance) -> Instance:
    """An instance being created by a merge keeps no NGSI-LD Null inside it."""
    out: Instance = {}
    for key, value in instance.items():
        if _is_sub_attribute(key):
            if not is_null_instance(value):
                out[key] = _drop_nulls(value)
        elif isinstance(value, dict) and key == "value" and instance["type"] == "Property":
            out[key] = merge_value({}, value)
        else:
            out[key] = value
    return out


def partial_update(current: Entity | None, entity_id: str, name: str, patch: Instance, now: str) -> Outcome:
    """5.6.4 Partial Attribute Update: patch one existing instance.

    NGSI-LD Null as the value removes the instance (and the attribute with its last one); a patch
    without "type" (a fragment of metadata and sub-attributes) keeps the value; a patch of another
    attribute type (a Relationship onto a Property) is refused.
    """
    entity = _require(current, entity_id)
    existing = entity.attrs.get(name)
    wanted = dataset_id(patch)
    index = -1 if existing is None else find_instance(existing, wanted)
    if existing is None or index < 0:
        what = "" if wanted is None else f" with datasetId {wanted}"
        raise ResourceNotFound(f"entity {entity_id} has no attribute {name}{what}")
    old = existing[index]
    kind = patch.get("type")
    if kind is not None and is_null_instance(patch):
        del existing[index]
        if not existing:
            del entity.attrs[name]
        _touch(entity, now)
        return Outcome(entity, updated=[name])
    if kind is not None and VALUE_MEMBER[kind] != VALUE_MEMBER[old["type"]]:
        raise BadRequestData(f"attribute {name} is a {old['type']}; a {kind} cannot patch it")
    new: Instance = dict(old)
    for key, value in patch.items():
        if _is_sub_attribute(key):
            if is_null_instance(value):
                new.pop(key, None)
            else:
                new[key] = stamp(value, now, old[key].get("createdAt") if key in old else None)
        elif key != "type":
            new[key] = value
    new["modifiedAt"] = now
    _check_geometry(new)
    existing[index] = new
    _touch(entity, now)
    return Outcome(entity, updated=[name])


def delete_scope(current: Entity | None, entity_id: str, now: str) -> Outcome:
    """DELETE /attrs/scope (clause 4.18: scope is an entity member, not an attribute): drop the scope."""
    entity = _require(current, entity_id)
    if not entity.scopes:
        raise ResourceNotFound(f"entity {entity_id} has no scope")
    entity.scopes = None
    _touch(entity, now)
    return Outcome(entity, updated=["scope"])


def replace_attribute(current: Entity | None, entity_id: str, name: str, new: Instance, now: str) -> Outcome:
    """5.6.19 Replace Attribute: the attribute must exist; the instance with new's datasetId is replaced."""
    entity = _require(current, entity_id)
    existing = entity.attrs.get(name)
    if not existing:
        raise ResourceNotFound(f"entity {entity_id} has no attribute {name}")
    index = find_instance(existing, dataset_id(new))
    if index < 0:
        existing.append(stamp(new, now))
    else:
        existing[index] = stamp(new, now, existing[index].get("createdAt"))
    _touch(entity, now)
    return Outcome(entity, updated=[name])


def delete_attribute(
    current: Entity | None, entity_id: str, name: str, now: str, *, dataset: str | None, delete_all: bool
) -> Outcome:
    """5.6.5 Delete Attribute: the default instance, the one with ``dataset``, or all of them."""
    entity = _require(current, entity_id)
    existing = entity.attrs.get(name)
    if not existing:
        raise ResourceNotFound(f"entity {entity_id} has no attribute {name}")
    if delete_all:
        del entity.attrs[name]
    else:
        index = find_instance(existing, dataset)
        if index < 0:
            what = "a default instance" if dataset is None else f"an instance with datasetId {dataset}"
            raise ResourceNotFound(f"attribute {name} of {entity_id} has no {what}")
        del existing[index]
        if not existing:
            del entity.attrs[name]
    _touch(entity, now)
    return Outcome(entity, updated=[name])


def delete(current: Entity | None, entity_id: str) -> Outcome:
    """5.6.6 Delete Entity."""
    _require(current, entity_id)
    return Outcome(None)
