"""Which history rows a write produces (broker.store.history_rows)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from broker.model.entity import Entity
from broker.store.history_rows import rows_for, rows_for_all

LEVEL = "https://smartdatamodels.org/dataModel.Environment/currentLevel"
NOW = "2026-11-22T10:00:00.000Z"


def gauge(*instances: dict[str, Any], eid: str = "urn:ngsi-ld:FloodMonitoring:1") -> Entity:
    return Entity(
        id=eid, types=["https://x/FloodMonitoring"], attrs={LEVEL: list(instances)} if instances else {}
    )


def level(value: float, stamp: str = "2026-11-22T09:00:00.000Z", **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "createdAt": stamp, "modifiedAt": stamp, **extra}


def test_a_created_entity_gives_a_row_per_instance_with_its_observed_at() -> None:
    after = gauge(level(1.2, observedAt="2026-11-22T09:50:00.000Z"), level(3.0, datasetId="urn:ds:b"))
    rows = rows_for(None, after, NOW)
    assert [(r["dataset_id"], r["instance"]["value"], r["observed_at"]) for r in rows] == [
        ("", 1.2, "2026-11-22T09:50:00.000Z"),
        ("urn:ds:b", 3.0, None),
    ]
    assert all(r["modified_at"] == NOW and r["deleted_at"] is None for r in rows)


def test_only_the_changed_instance_gives_a_row() -> None:
    before = gauge(level(1.2), level(3.0, datasetId="urn:ds:b"))
    after = gauge(level(1.4, NOW), level(3.0, datasetId="urn:ds:b"))
    rows = rows_for(before, after, NOW)
    assert [(r["dataset_id"], r["instance"]["value"]) for r in rows] == [("", 1.4)]


def test_new_system_timestamps_alone_are_no_change() -> None:
    before = gauge(level(1.2))
    after = gauge(level(1.2, NOW))
    assert rows_for(before, after, NOW) == []


def test_a_changed_sub_attribute_is_a_change() -> None:
    before = gauge(level(1.2, "2026-11-22T09:00:00.000Z", **{"https://x/quality": level(0.9)}))
    after = gauge(level(1.2, NOW, **{"https://x/quality": level(0.7, NOW)}))
    assert len(rows_for(before, after, NOW)) == 1


def test_a_removed_instance_gives_a_deletion_marker() -> None:
    before = gauge(level(1.2), level(3.0, datasetId="urn:ds:b"))
    after = gauge(level(1.2))
    [row] = rows_for(before, after, NOW)
    assert (row["dataset_id"], row["instance"], row["deleted_at"]) == ("urn:ds:b", None, NOW)


def test_a_deleted_entity_gives_a_deletion_marker_per_instance() -> None:
    before = gauge(level(1.2), level(3.0, datasetId="urn:ds:b"))
    rows = rows_for(before, None, NOW)
    assert sorted(r["dataset_id"] for r in rows) == ["", "urn:ds:b"]
    assert all(r["deleted_at"] == NOW and r["instance"] is None for r in rows)


def test_each_operation_of_a_batch_is_compared_with_the_state_the_previous_one_left() -> None:
    states = [None] + [gauge(level(float(n), observedAt=f"2026-11-22T09:{n:02d}:00.000Z")) for n in range(5)]
    pairs = list(itertools.pairwise(states))
    rows = rows_for_all(pairs, NOW)
    assert [r["instance"]["value"] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]


# --- property: replaying the history rows of any sequence of states gives back each state ---

_DATASETS = st.sampled_from([None, "urn:ds:a", "urn:ds:b"])
_ATTRS = st.sampled_from([LEVEL, "https://x/alert", "https://x/status"])
_STATE = st.dictionaries(
    _ATTRS,
    st.dictionaries(_DATASETS, st.one_of(st.integers(0, 3), st.sampled_from(["low", "high"])), min_size=1),
    max_size=3,
)


def _entity(state: dict[str, dict[str | None, Any]] | None, stamp: str) -> Entity | None:
    if state is None:
        return None
    attrs = {
        attr: [level(value, stamp, **({"datasetId": ds} if ds else {})) for ds, value in instances.items()]
        for attr, instances in state.items()
    }
    return Entity(id="urn:ngsi-ld:FloodMonitoring:1", types=["https://x/FloodMonitoring"], attrs=attrs)


@given(st.lists(st.one_of(st.none(), _STATE), min_size=1, max_size=8))
def test_replaying_the_rows_of_any_sequence_of_writes_gives_back_every_state(
    states: list[dict[str, dict[str | None, Any]] | None],
) -> None:
    entities = [_entity(state, f"2026-11-22T09:00:0{n}.000Z") for n, state in enumerate(states)]
    replayed: dict[tuple[str, str], Any] = {}
    previous: Entity | None = None
    for entity, state in zip(entities, states, strict=True):
        for row in rows_for(previous, entity, NOW):
            key = (row["attr"], row["dataset_id"])
            if row["deleted_at"] is None:
                replayed[key] = row["instance"]["value"]
            else:
                assert key in replayed, "a deletion marker for an instance that was never written"
                del replayed[key]
        expected = {
            (attr, ds or ""): value
            for attr, instances in (state or {}).items()
            for ds, value in instances.items()
        }
        assert replayed == expected
        previous = entity
