"""Which history rows a write produces: one per new or changed attribute instance, one per removal.

Pure functions over (entity before, entity after) pairs, so the write path can call them
for every operation of a batch in order: a gauge's 100 backlogged readings in one batch
give 100 rows, each compared with the state the previous reading left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker.model.entity import Entity, Instance, dataset_id

# What a write stamps on an instance without the client changing it.
_SYSTEM = frozenset({"createdAt", "modifiedAt", "instanceId"})

Row = dict[str, Any]


def essence(instance: Instance) -> Instance:
    """The instance without system timestamps (also in sub-attributes): what counts as a change."""
    out: Instance = {}
    for key, value in instance.items():
        if key in _SYSTEM:
            continue
        out[key] = essence(value) if ":" in key and isinstance(value, dict) else value
    return out


def instance_row(entity_id: str, types: list[str], attr: str, instance: Instance, now: str) -> Row:
    """A history row for an instance as stored (its observedAt and createdAt kept apart)."""
    return {
        "entity_id": entity_id,
        "types": types,
        "attr": attr,
        "dataset_id": dataset_id(instance) or "",
        "instance": instance,
        "observed_at": instance.get("observedAt"),
        "created_at": instance.get("createdAt"),
        "modified_at": now,
        "deleted_at": None,
    }


def deletion_row(entity_id: str, types: list[str], attr: str, dataset: str | None, now: str) -> Row:
    """A history row marking that an attribute instance was removed at ``now``."""
    return {
        "entity_id": entity_id,
        "types": types,
        "attr": attr,
        "dataset_id": dataset or "",
        "instance": None,
        "observed_at": None,
        "created_at": None,
        "modified_at": now,
        "deleted_at": now,
    }


def rows_for(before: Entity | None, after: Entity | None, now: str) -> list[Row]:
    """History rows for one operation that turned ``before`` into ``after`` (None: absent)."""
    if after is None and before is None:
        return []
    entity_id = (after or before).id  # type: ignore[union-attr]
    types = (after or before).types  # type: ignore[union-attr]
    old = before.attrs if before is not None else {}
    new = after.attrs if after is not None else {}
    rows: list[Row] = []
    for attr, instances in new.items():
        previous = {dataset_id(i): essence(i) for i in old.get(attr, ())}
        for instance in instances:
            key = dataset_id(instance)
            if key not in previous or previous[key] != essence(instance):
                rows.append(instance_row(entity_id, types, attr, instance, now))
    for attr, instances in old.items():
        kept = {dataset_id(i) for i in new.get(attr, ())}
        for instance in instances:
            key = dataset_id(instance)
            if key not in kept:
                rows.append(deletion_row(entity_id, types, attr, key, now))
    return rows


def rows_for_all(pairs: Iterable[tuple[Entity | None, Entity | None]], now: str) -> list[Row]:
    """History rows of a whole batch, operation after operation."""
    rows: list[Row] = []
    for before, after in pairs:
        rows.extend(rows_for(before, after, now))
    return rows
