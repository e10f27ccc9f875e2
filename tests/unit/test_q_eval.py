"""The reference semantics of q (clause 4.9) on entities in their stored, expanded shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.jsonld.context import TermMap, compile_contexts, core_document
from broker.model.entity import Entity, format_time
from broker.query.q_eval import as_datetime, matches_q
from broker.query.qlang import parse_q

EX = "https://example.org/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


@pytest.fixture(scope="module")
def tm() -> TermMap:
    return compile_contexts([{"ex": EX, "Flooding": EX + "Flooding", "Dry": EX + "Dry"}], core_document())


def gauge(**attrs: Any) -> Entity:
    """An entity whose keyword arguments are attributes: a dict is one instance, a list several."""
    return Entity(
        id="urn:ngsi-ld:FloodMonitoring:kasuga-001",
        types=[DEFAULT + "FloodMonitoring"],
        attrs={
            DEFAULT + name: value if isinstance(value, list) else [value] for name, value in attrs.items()
        },
    )


def prop(value: Any, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **members}


def check(tm: TermMap, entity: Entity, yes: list[str], no: list[str]) -> None:
    assert [q for q in yes if not matches_q(parse_q(q), entity, tm)] == []
    assert [q for q in no if matches_q(parse_q(q), entity, tm)] == []


def test_numbers_compare_numerically_and_exactly(tm: TermMap) -> None:
    entity = gauge(level=prop(1.4), count=prop(3))
    check(
        tm,
        entity,
        yes=[
            "level==1.4",
            "level==1.40",
            "level>=1.4",
            "level<1.41",
            "level>1.39999999999999999999",
            "count==3.0",
        ],
        no=["level>1.4", "level!=1.4", "level<1.4", "count>3", "level==1.400000000000000000001"],
    )


def test_strings_compare_by_code_point(tm: TermMap) -> None:
    check(tm, gauge(name=prop("Kasuga")), yes=['name>"Ka"', 'name<"a"', 'name<"é"'], no=['name>"kasuga"'])


def test_booleans_compare_only_for_equality(tm: TermMap) -> None:
    check(tm, gauge(open=prop(True)), yes=["open==true", "open!=false"], no=["open==false", "open==1"])


def test_values_of_another_type_do_not_compare_but_are_unequal(tm: TermMap) -> None:
    entity = gauge(level=prop("1.4"), flag=prop(True), shape=prop({"x": 1}))
    check(
        tm,
        entity,
        yes=["level!=1.4", 'level=="1.4"', "flag!=1", "shape!=1", 'shape!="x"'],
        no=["level==1.4", "level>1", "level<9", "flag==1", "flag>0", "shape==1", "shape>0"],
    )


def test_any_instance_of_a_multi_attribute_may_match(tm: TermMap) -> None:
    entity = gauge(level=[prop(0.5), prop(2.5, datasetId="urn:ngsi-ld:Dataset:radar")])
    check(tm, entity, yes=["level>2", "level<1", "level!=0.5", "level==0.5"], no=["level>3", "level==1..2"])


def test_array_values_match_when_any_element_does_and_unequal_when_none_does(tm: TermMap) -> None:
    entity = gauge(colors=prop(["blue", "red", "green"]))
    check(
        tm,
        entity,
        yes=[
            'colors=="red"',
            'colors=="black","red"',
            'colors!="black"',
            'colors!="black","white"',
            'colors>"k"',
        ],
        no=['colors=="black"', 'colors!="red"', 'colors!="black","red"'],
    )


def test_ranges_include_both_ends_and_need_the_same_kind(tm: TermMap) -> None:
    entity = gauge(level=prop(10), name=prop("m"))
    check(
        tm,
        entity,
        yes=["level==10..20", "level==0..10", "level!=11..20", 'name=="a".."m"', "name!=1..20"],
        no=["level==11..20", "level!=10..20", "level==20..0", 'level=="a".."z"'],
    )


def test_date_times_compare_as_instants_whatever_their_offset_or_shape(tm: TermMap) -> None:
    entity = gauge(
        seen=prop("2026-11-22T10:00:00+09:00"),
        tagged=prop({"@type": "DateTime", "@value": "2026-11-22T01:00:00.500Z"}),
        naive=prop("2026-11-22T01:00:00"),
    )
    check(
        tm,
        entity,
        yes=[
            "seen==2026-11-22T01:00:00Z",
            "seen<2026-11-22T01:00:00.000001Z",
            "tagged>2026-11-22T01:00:00Z",
            "tagged==2026-11-22T10:00:00.5+09:00",
            "naive==2026-11-22T01:00:00Z",
            "seen==2026-11-22T00:00:00Z..2026-11-22T02:00:00Z",
            'seen=="2026-11-22T10:00:00+09:00"',
        ],
        no=["seen>2026-11-22T01:00:00Z", "tagged==2026-11-22T01:00:00Z", 'seen=="2026-11-22T01:00:00Z"'],
    )


def test_strings_that_are_not_calendar_dates_are_not_date_times(tm: TermMap) -> None:
    entity = gauge(
        bad=prop("2026-02-30T00:00:00Z"), leap=prop("2024-02-29T00:00:00Z"), year0=prop("0000-01-01")
    )
    check(
        tm,
        entity,
        yes=["leap>2024-01-01T00:00:00Z", "bad!=2026-02-28T00:00:00Z"],
        no=["bad>2000-01-01T00:00:00Z", "year0<2000-01-01"],
    )


def test_dates_and_times_compare_with_their_own_kind_only(tm: TermMap) -> None:
    entity = gauge(day=prop("2026-11-22"), at=prop("12:30:00Z"), moment=prop("2026-11-22T00:00:00Z"))
    check(
        tm,
        entity,
        yes=["day==2026-11-22", "day>2026-11-21", "at>12:00:00", "at==12:30:00.000Z", "moment!=2026-11-22"],
        no=["day==2026-11-22T00:00:00Z", "moment==2026-11-22", "at>2026-01-01T00:00:00Z"],
    )


def test_metadata_members_are_compared_like_values(tm: TermMap) -> None:
    entity = gauge(level=prop(1.0, observedAt="2026-11-22T01:00:00.000Z", unitCode="MTR"))
    check(
        tm,
        entity,
        yes=[
            "level.observedAt>=2026-11-22T01:00:00Z",
            'level.unitCode=="MTR"',
            "level.unitCode",
            "!level.datasetId",
        ],
        no=[
            "level.observedAt>2026-11-22T01:00:00Z",
            'level.unitCode=="CEL"',
            "level.datasetId",
            "level.createdAt",
        ],
    )


def test_dotted_paths_follow_sub_attributes(tm: TermMap) -> None:
    entity = gauge(level=prop(1.0, **{DEFAULT + "accuracy": prop(0.02, unitCode="MTR")}))
    check(
        tm,
        entity,
        yes=["level.accuracy<0.1", "level.accuracy", 'level.accuracy.unitCode=="MTR"', "!level.precision"],
        no=["level.accuracy>0.1", "level.precision", "level.accuracy.observedAt"],
    )


def test_trailing_paths_enter_json_objects_only(tm: TermMap) -> None:
    entity = gauge(
        address=prop({"city": "Takamatsu", "zip": None, "parts": {"ward": "Kasuga"}}),
        list=prop([{"city": "Takamatsu"}]),
    )
    check(
        tm,
        entity,
        yes=[
            'address[city]=="Takamatsu"',
            "address[zip]",
            'address[zip]!="x"',
            'address[parts.ward]=="Kasuga"',
            'address[parts][ward]~="^Kas"',
            "!address[country]",
        ],
        no=['address[city]=="Kagawa"', 'address[country]!="x"', "list[city]", 'address[city][x]=="T"'],
    )


def test_relationships_match_their_objects_for_equality_only(tm: TermMap) -> None:
    entity = gauge(
        refDevice={"type": "Relationship", "object": "urn:ngsi-ld:Device:gauge-1"},
        feeds={"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Pump:1", "urn:ngsi-ld:Pump:2"]},
    )
    check(
        tm,
        entity,
        yes=[
            "refDevice==urn:ngsi-ld:Device:gauge-1",
            'refDevice=="urn:ngsi-ld:Device:gauge-1"',
            "refDevice!=urn:ngsi-ld:Device:gauge-2",
            "feeds==urn:ngsi-ld:Pump:2",
            "feeds!=urn:ngsi-ld:Pump:3,urn:ngsi-ld:Pump:4",
            "refDevice!=5",
        ],
        no=[
            'refDevice>"urn:a"',
            'refDevice~="gauge"',
            'refDevice!~="pump"',
            "feeds!=urn:ngsi-ld:Pump:1",
            "refDevice==5",
        ],
    )


def test_vocab_properties_compare_with_the_expanded_query_value(tm: TermMap) -> None:
    entity = gauge(category={"type": "VocabProperty", "vocab": [EX + "Flooding", DEFAULT + "local"]})
    check(
        tm,
        entity,
        yes=[
            'category=="Flooding"',
            "category==https://example.org/Flooding",
            'category=="ex:Flooding"',
            'category=="local"',
            'category~="example"',
        ],
        no=['category=="Dry"', 'category!="Flooding"', 'category=="https://example.org/Dry"'],
    )


def test_language_properties_match_any_language_or_the_one_named(tm: TermMap) -> None:
    entity = gauge(
        name={"type": "LanguageProperty", "languageMap": {"ja": "春日川", "en": ["Kasuga", "Kasuga river"]}}
    )
    check(
        tm,
        entity,
        yes=[
            'name=="春日川"',
            'name=="Kasuga river"',
            'name[en]=="Kasuga"',
            'name[ja]~="川$"',
            'name!="Shin"',
            "name[en]",
        ],
        no=['name[en]=="春日川"', 'name!="Kasuga"', "name[fr]", 'name[fr]!="x"', "name==1"],
    )


def test_list_and_json_properties_match_their_elements(tm: TermMap) -> None:
    entity = gauge(
        readings={"type": "ListProperty", "valueList": [0.5, 1.5, "n/a"]},
        raw={"type": "JsonProperty", "json": {"id": "85a6", "value": "Overstay 60 minutes"}},
    )
    check(
        tm,
        entity,
        yes=[
            "readings>1",
            "readings==0.5",
            'readings=="n/a"',
            'raw[value]=="Overstay 60 minutes"',
            "raw[id]",
        ],
        no=["readings>2", 'readings!="n/a"', 'raw=="85a6"', "raw[missing]"],
    )


def test_patterns_match_strings_only(tm: TermMap) -> None:
    entity = gauge(name=prop("Kasuga river"), level=prop(1.5), tags=prop(["north", 7]), multi=prop("a\nb"))
    check(
        tm,
        entity,
        yes=[
            'name~="^Kas"',
            'name~="(?i)RIVER$"',
            'name!~="^Shin"',
            'tags~="^no"',
            'tags!~="^so"',
            'multi~="a.b"',
            'multi~="b$"',
        ],
        no=[
            'name~="^kas"',
            'name!~="river"',
            'level~="1"',
            'level!~="x"',
            'multi~="a$"',
            'name~="river\\s$"',
        ],
    )


def test_existence_and_logic_combine(tm: TermMap) -> None:
    entity = gauge(level=prop(1.5), alert=prop(1.4))
    check(
        tm,
        entity,
        yes=["level", "!rain", "level;alert", "rain|level", "level>1;(rain|alert<2)", "rain;level|alert"],
        no=["rain", "!level", "level;rain", "level>2|alert>2", "level;(rain|alert>2)"],
    )


def test_prefixed_names_expand_with_the_context(tm: TermMap) -> None:
    entity = Entity(id="urn:ngsi-ld:T:1", types=[EX + "T"], attrs={EX + "depth": [prop(3)]})
    check(tm, entity, yes=["ex:depth==3"], no=["depth==3"])


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_every_timestamp_the_broker_writes_is_a_date_time_to_queries(moment: datetime) -> None:
    assert as_datetime(format_time(moment)) == moment
