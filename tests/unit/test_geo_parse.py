"""Geo-query parameters (clause 4.10) parsed into a GeoQuery, and the SQL text it becomes."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import BadRequestData, TooComplexQuery
from broker.model.entity import LOCATION
from broker.query.geo import MAX_VERTICES, GeoQuery, Georel, geo_to_sql, parse_geo_query
from broker.query.params import Params

CITY = [[134.00, 34.30], [134.10, 34.30], [134.10, 34.38], [134.00, 34.38], [134.00, 34.30]]
CITY_TEXT = orjson.dumps([CITY]).decode()
CENTRE = "[134.05,34.34]"


def test_no_geo_parameter_gives_no_geo_query() -> None:
    assert parse_geo_query(None, None, None, None) is None


@pytest.mark.parametrize("georel", ["within", "contains", "intersects", "overlaps", "disjoint", "equals"])
def test_each_topological_georel_parses_with_a_polygon(georel: str) -> None:
    query = parse_geo_query(georel, "Polygon", CITY_TEXT, None)
    assert query is not None
    assert query.georel == Georel(georel)
    assert query.geometry == {"type": "Polygon", "coordinates": [CITY]}
    assert query.geoproperty == "location"
    assert query.max_distance is None
    assert query.min_distance is None


def test_near_with_max_distance_keeps_the_metres() -> None:
    query = parse_geo_query("near;maxDistance==1500", "Point", CENTRE, None)
    assert query == GeoQuery(
        georel=Georel.NEAR,
        geometry_type="Point",
        geojson='{"type":"Point","coordinates":[134.05,34.34]}',
        max_distance=1500.0,
    )


def test_near_with_min_distance_and_a_fraction_of_a_metre_parses() -> None:
    query = parse_geo_query("near;minDistance==12.5", "Point", CENTRE, None)
    assert query is not None
    assert query.min_distance == 12.5
    assert query.max_distance is None


def test_near_with_both_distances_describes_a_ring() -> None:
    query = parse_geo_query("near;minDistance==100;maxDistance==2000", "Point", CENTRE, None)
    assert query is not None
    assert (query.min_distance, query.max_distance) == (100.0, 2000.0)


def test_geoproperty_is_kept_as_the_raw_term_for_later_expansion() -> None:
    query = parse_geo_query("within", "Polygon", CITY_TEXT, "serviceArea")
    assert query is not None
    assert query.geoproperty == "serviceArea"


def test_a_geo_query_is_a_frozen_hashable_value() -> None:
    first = parse_geo_query("within", "Polygon", CITY_TEXT, None)
    second = parse_geo_query("within", "Polygon", f" {CITY_TEXT} ", None)
    assert first == second
    assert len({first, second}) == 1
    with pytest.raises(AttributeError):
        first.georel = Georel.CONTAINS  # type: ignore[misc, union-attr]


def test_altitude_in_coordinates_is_accepted() -> None:
    query = parse_geo_query("near;maxDistance==10", "Point", "[134.05,34.34,12]", None)
    assert query is not None
    assert query.geometry["coordinates"] == [134.05, 34.34, 12]


@pytest.mark.parametrize(
    ("georel", "geometry", "coordinates", "geoproperty"),
    [
        ("within", None, None, None),
        (None, "Polygon", None, None),
        (None, None, CITY_TEXT, None),
        ("within", "Polygon", None, None),
        ("within", None, CITY_TEXT, None),
        (None, "Polygon", CITY_TEXT, None),
        (None, None, None, "location"),
    ],
)
def test_an_incomplete_geo_query_is_bad_request_data(
    georel: str | None, geometry: str | None, coordinates: str | None, geoproperty: str | None
) -> None:
    with pytest.raises(BadRequestData, match="incomplete geo-query"):
        parse_geo_query(georel, geometry, coordinates, geoproperty)


BAD_GEORELS = {
    "unknown relation": "touches",
    "capitalised relation": "Within",
    "empty": "",
    "near without distance": "near",
    "near with an empty modifier": "near;",
    "near with a distance name only": "near;maxDistance",
    "near with one equals sign": "near;maxDistance=100",
    "near with an unknown modifier": "near;distance==100",
    "near with a negative distance": "near;maxDistance==-5",
    "near with a negative min distance": "near;minDistance==-0.5",
    "near with a word for a distance": "near;maxDistance==far",
    "near with an exponent": "near;maxDistance==1e3",
    "near with an empty distance": "near;maxDistance==",
    "near with a repeated modifier": "near;maxDistance==1;maxDistance==2",
    "near with min above max": "near;minDistance==500;maxDistance==100",
    "near with an infinite distance": "near;maxDistance==" + "9" * 400,
    "within with a modifier": "within;maxDistance==5",
    "near with a space": "near; maxDistance==5",
}


@pytest.mark.parametrize("georel", BAD_GEORELS.values(), ids=BAD_GEORELS.keys())
def test_an_invalid_georel_is_bad_request_data(georel: str) -> None:
    geometry, coordinates = ("Point", CENTRE) if georel.startswith("near") else ("Polygon", CITY_TEXT)
    with pytest.raises(BadRequestData):
        parse_geo_query(georel, geometry, coordinates, None)


def test_a_negative_distance_is_reported_as_negative() -> None:
    with pytest.raises(BadRequestData, match="must not be negative"):
        parse_geo_query("near;maxDistance==-5", "Point", CENTRE, None)


@pytest.mark.parametrize(
    ("geometry", "coordinates"), [("Polygon", CITY_TEXT), ("LineString", "[[1,2],[3,4]]")]
)
def test_near_takes_only_a_point(geometry: str, coordinates: str) -> None:
    with pytest.raises(BadRequestData, match="Point"):
        parse_geo_query("near;maxDistance==10", geometry, coordinates, None)


BAD_GEOMETRIES = {
    "unknown type": ("Circle", "[1,2]"),
    "lowercase type": ("point", "[1,2]"),
    "geometry collection": ("GeometryCollection", "[]"),
    "not json": ("Point", "134.05,34.34"),
    "json object": ("Point", '{"lon":134.05,"lat":34.34}'),
    "json string": ("Point", '"[134.05,34.34]"'),
    "trailing garbage": ("Point", "[134.05,34.34]x"),
    "longitude out of range": ("Point", "[200,34.34]"),
    "latitude out of range": ("Point", "[134.05,-91]"),
    "nan": ("Point", "[NaN,1]"),
    "overflowing number": ("Point", "[1e999,1]"),
    "nested point": ("Point", "[[134.05,34.34]]"),
    "unclosed polygon": ("Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]"),
    "polygon ring too short": ("Polygon", "[[[0,0],[1,0],[0,0]]]"),
    "linestring of one position": ("LineString", "[[1,2]]"),
    "empty multipoint": ("MultiPoint", "[]"),
    "deep nesting": ("MultiPolygon", "[" * 3000 + "]" * 3000),
    "empty text": ("Point", ""),
}


@pytest.mark.parametrize(("geometry", "coordinates"), BAD_GEOMETRIES.values(), ids=BAD_GEOMETRIES.keys())
def test_invalid_geometry_or_coordinates_are_bad_request_data(geometry: str, coordinates: str) -> None:
    with pytest.raises(BadRequestData):
        parse_geo_query("intersects", geometry, coordinates, None)


def test_an_empty_geoproperty_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData, match="geoproperty"):
        parse_geo_query("within", "Polygon", CITY_TEXT, "")


def _ring(vertices: int) -> list[list[float]]:
    """A closed ring of ``vertices`` positions (the last repeats the first) on a small circle."""
    ring = [
        [
            134.05 + 0.01 * math.cos(2 * math.pi * i / (vertices - 1)),
            34.34 + 0.01 * math.sin(2 * math.pi * i / (vertices - 1)),
        ]
        for i in range(vertices - 1)
    ]
    return [*ring, ring[0]]


def test_a_polygon_at_the_vertex_limit_is_accepted() -> None:
    query = parse_geo_query("within", "Polygon", orjson.dumps([_ring(MAX_VERTICES)]).decode(), None)
    assert query is not None


def test_a_polygon_over_the_vertex_limit_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse_geo_query("within", "Polygon", orjson.dumps([_ring(MAX_VERTICES + 1)]).decode(), None)


def test_the_vertex_limit_counts_every_part_of_a_multipolygon() -> None:
    half = _ring(MAX_VERTICES // 2 + 1)
    with pytest.raises(TooComplexQuery):
        parse_geo_query("intersects", "MultiPolygon", orjson.dumps([[half], [half]]).decode(), None)


def test_a_huge_polygon_is_too_complex_rather_than_merely_invalid() -> None:
    with pytest.raises(TooComplexQuery):
        parse_geo_query("within", "Polygon", orjson.dumps([_ring(150_000)]).decode(), None)


# --- SQL text ---------------------------------------------------------------------------------


def test_location_queries_read_the_indexed_location_column() -> None:
    query = parse_geo_query("within", "Polygon", CITY_TEXT, None)
    assert query is not None
    params = Params("tenant")
    sql = geo_to_sql(query, LOCATION, params)
    assert "ST_Within(e.location, " in sql
    assert "entity_geometries" not in sql
    assert params.values == ["tenant", query.geojson]


def test_other_geoproperties_read_entity_geometries_of_the_same_entity() -> None:
    query = parse_geo_query("intersects", "Polygon", CITY_TEXT, "serviceArea")
    assert query is not None
    params = Params()
    sql = geo_to_sql(query, "https://example.org/serviceArea", params, alias="x")
    assert sql.startswith("EXISTS (SELECT 1 FROM entity_geometries x_geo")
    assert "x_geo.tenant = x.tenant AND x_geo.entity_id = x.id" in sql
    assert "https://example.org/serviceArea" in params.values


@pytest.mark.parametrize(
    "georel", ["near;maxDistance==1000", "near;minDistance==1000", "near;minDistance==10;maxDistance==20"]
)
def test_near_binds_every_number_and_formats_none_into_the_sql(georel: str) -> None:
    query = parse_geo_query(georel, "Point", CENTRE, None)
    assert query is not None
    params = Params()
    sql = geo_to_sql(query, LOCATION, params)
    assert "ST_DWithin(e.location::geography" in sql
    assert "e.location && ST_MakeEnvelope(" in sql
    for digit_run in ("134", "34.34", "1000", "20"):
        assert digit_run not in sql
    assert all(f"${n}" in sql for n in range(1, len(params.values) + 1))


def test_min_distance_is_the_negation_of_within_distance() -> None:
    query = parse_geo_query("near;minDistance==1000", "Point", CENTRE, None)
    assert query is not None
    assert "NOT (e.location && " in geo_to_sql(query, LOCATION, Params())


def test_near_close_to_the_antimeridian_searches_every_longitude() -> None:
    query = parse_geo_query("near;maxDistance==50000", "Point", "[179.9,10]", None)
    assert query is not None
    params = Params()
    geo_to_sql(query, LOCATION, params)
    assert -180.0 in params.values
    assert 180.0 in params.values


# --- property: the parser only ever raises the two NGSI-LD errors --------------------------------

GEORELS = st.one_of(
    st.sampled_from(["near", "within", "contains", "intersects", "overlaps", "disjoint", "equals"]),
    st.builds(
        lambda key, number: f"near;{key}=={number}",
        st.sampled_from(["maxDistance", "minDistance", "distance", ""]),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str), st.text(max_size=8)),
    ),
    st.text(max_size=40),
)
GEOMETRIES = st.one_of(
    st.sampled_from(["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]),
    st.text(max_size=20),
)
NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-1000, 1000))
JSON_ARRAYS = st.recursive(
    st.lists(NUMBERS, max_size=4), lambda inner: st.lists(inner, max_size=5), max_leaves=40
).map(lambda value: orjson.dumps(value).decode())
COORDINATES = st.one_of(JSON_ARRAYS, st.text(max_size=60))


@settings(max_examples=500)
@given(
    georel=st.one_of(st.none(), GEORELS),
    geometry=st.one_of(st.none(), GEOMETRIES),
    coordinates=st.one_of(st.none(), COORDINATES),
    geoproperty=st.one_of(st.none(), st.text(max_size=20)),
)
def test_parsing_any_text_raises_nothing_but_bad_request_data_or_too_complex_query(
    georel: str | None, geometry: str | None, coordinates: str | None, geoproperty: str | None
) -> None:
    try:
        query = parse_geo_query(georel, geometry, coordinates, geoproperty)
    except (BadRequestData, TooComplexQuery):
        return
    if query is not None:
        geo_to_sql(query, LOCATION, Params())
        geo_to_sql(query, "https://example.org/area", Params())
