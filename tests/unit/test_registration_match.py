"""Which registrations an entity, its attributes and an operation concern (clause 4.3.6), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.errors import AlreadyExists, BadRequestData, NotImplementedYet
from broker.federation.match import check_conflicts, check_simple_q, lookup, matches_simple_q
from broker.federation.model import GROUPS, Mode, Registration
from broker.federation.parse import compile_registration, expand_body, render
from broker.jsonld.context import TermMap
from broker.query.qlang import parse_q

EX = "https://example.org/city#"
TM = TermMap(terms={"Shelter": EX + "Shelter", "Gauge": EX + "Gauge", "capacity": EX + "capacity"})
NOW = datetime(2026, 12, 4, tzinfo=UTC)
SHELTER = EX + "Shelter"
CAPACITY = EX + "capacity"


def compiled(registration_id: str, **members: Any) -> Registration:
    body: dict[str, Any] = {
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Shelter"}], "propertyNames": ["capacity"]}],
        "endpoint": "http://ward.example/ngsi-ld",
    }
    body.update(members)
    return compile_registration("t", registration_id, expand_body(body, TM))


def ids(found: list[Registration]) -> list[str]:
    return [r.id for r in found]


def test_lookup_matches_type_id_attributes_and_operation() -> None:
    by_type = compiled("urn:r:1")
    by_id = compiled(
        "urn:r:2",
        mode="exclusive",
        operations=["updateOps"],
        information=[{"entities": [{"id": "urn:s:1", "type": "Shelter"}], "propertyNames": ["capacity"]}],
    )
    by_pattern = compiled("urn:r:3", information=[{"entities": [{"idPattern": "urn:g:.*", "type": "Gauge"}]}])
    every = [by_type, by_id, by_pattern]
    assert ids(lookup(every, "urn:s:1", [SHELTER], [CAPACITY], "queryEntity", NOW)) == ["urn:r:1"]
    assert ids(lookup(every, "urn:s:1", [SHELTER], [CAPACITY], "updateAttrs", NOW)) == ["urn:r:2"]
    assert ids(lookup(every, "urn:s:2", [SHELTER], [CAPACITY], "updateAttrs", NOW)) == []
    assert ids(lookup(every, "urn:s:1", [SHELTER], [EX + "other"], None, NOW)) == []
    assert ids(lookup(every, "urn:g:7", [EX + "Gauge"], [EX + "level"], "retrieveEntity", NOW)) == ["urn:r:3"]
    assert ids(lookup(every, "urn:x:7", [EX + "Gauge"], None, None, NOW)) == []
    assert ids(lookup(every, None, None, None, None, NOW)) == ["urn:r:1", "urn:r:2", "urn:r:3"]


def test_an_expired_registration_is_not_looked_up() -> None:
    soon = (NOW + timedelta(minutes=1)).isoformat()
    registration = compiled("urn:r:1", expiresAt=soon.replace("+00:00", "Z"))
    assert ids(lookup([registration], None, None, None, None, NOW)) == ["urn:r:1"]
    assert lookup([registration], None, None, None, None, NOW + timedelta(minutes=2)) == []


def test_operation_groups_are_expanded_and_federation_ops_is_the_default() -> None:
    assert compiled("urn:r:1").operations == GROUPS["federationOps"]
    mixed = compiled("urn:r:2", operations=["retrieveOps", "createEntity"])
    assert mixed.operations == {"retrieveEntity", "queryEntity", "createEntity"}


def test_names_are_expanded_for_storage_and_compacted_back() -> None:
    stored = expand_body(
        {
            "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": ["Shelter", "Gauge"]}], "propertyNames": ["capacity"]}],
            "endpoint": "http://ward.example/",
            "capacity": 3,
            "createdAt": "2026-01-01T00:00:00Z",
        },
        TM,
    )
    assert stored["information"][0]["entities"][0]["type"] == [SHELTER, EX + "Gauge"]
    assert stored[CAPACITY] == 3
    assert "createdAt" not in stored
    assert render(stored, TM)["information"][0]["propertyNames"] == ["capacity"]
    assert compile_registration("t", "urn:r:1", stored).properties == ((CAPACITY, 3),)


def test_exclusive_registrations_conflict_with_overlapping_non_auxiliary_ones() -> None:
    info = [{"entities": [{"id": "urn:s:1", "type": "Shelter"}], "propertyNames": ["capacity"]}]
    held = compiled("urn:r:1", mode="exclusive", information=info)
    with pytest.raises(AlreadyExists):
        check_conflicts(compiled("urn:r:2"), [held], NOW)
    with pytest.raises(AlreadyExists):
        check_conflicts(compiled("urn:r:2", mode="exclusive", information=info), [held], NOW)
    check_conflicts(compiled("urn:r:2", mode="auxiliary"), [held], NOW)
    check_conflicts(compiled("urn:r:1", mode="redirect", information=info), [held], NOW)  # itself
    other = [{"entities": [{"id": "urn:s:2", "type": "Shelter"}], "propertyNames": ["capacity"]}]
    check_conflicts(compiled("urn:r:2", mode="exclusive", information=other), [held], NOW)
    assert held.mode is Mode.EXCLUSIVE


def test_an_exclusive_registration_names_ids_and_attributes() -> None:
    with pytest.raises(BadRequestData, match="entity id"):
        compiled("urn:r:1", mode="exclusive")
    with pytest.raises(BadRequestData, match="propertyNames"):
        compiled(
            "urn:r:1", mode="exclusive", information=[{"entities": [{"id": "urn:s:1", "type": "Shelter"}]}]
        )


@pytest.mark.parametrize(
    ("q", "values", "expected"),
    [
        ("capacity>100", {"capacity": 400}, True),
        ("capacity>100", {"capacity": 40}, False),
        ("capacity==40..50", {"capacity": 45}, True),
        ("capacity==1,2,3", {"capacity": 2}, True),
        ("capacity!=2", {"capacity": 2}, False),
        ('ward=="shibuya"', {"ward": "shibuya"}, True),
        ('ward~="^shi"', {"ward": "shibuya"}, True),
        ("ward", {"ward": "x"}, True),
        ("!ward", {"ward": "x"}, False),
        ("capacity>1;ward", {"capacity": 2}, False),
        ("capacity>1|ward", {"capacity": 2}, True),
        ("open==true", {"open": True}, True),
        ("open==true", {"open": 1}, False),
    ],
)
def test_simple_q_on_registration_properties(q: str, values: dict[str, Any], expected: bool) -> None:
    expr = check_simple_q(parse_q(q), "q")
    assert matches_simple_q(expr, values, lambda name: name) is expected


@pytest.mark.parametrize("q", ["a.b==1", "a[b]==1", "a==2026-01-01T00:00:00Z"])
def test_q_beyond_the_simple_part_is_not_offered(q: str) -> None:
    with pytest.raises(NotImplementedYet):
        check_simple_q(parse_q(q), "q")
