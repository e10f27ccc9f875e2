"""GeoJSON geometry validation (RFC 7946, digest 7): valid geometries pass, everything else is BadRequestData."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import BadRequestData
from broker.model.geojson import GEOMETRY_TYPES, looks_like_geometry, validate_geometry

WHERE = "attribute location"
SQUARE = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
HOLE = [[0.2, 0.2], [0.4, 0.2], [0.4, 0.4], [0.2, 0.2]]


VALID = [
    {"type": "Point", "coordinates": [134.05, 34.34]},
    {"type": "Point", "coordinates": [134.05, 34.34, 12.5]},
    {"type": "Point", "coordinates": [-180, -90]},
    {"type": "Point", "coordinates": [180, 90]},
    {"type": "Point", "coordinates": [0, 0]},
    {"type": "MultiPoint", "coordinates": [[1, 2]]},
    {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4, 5]]},
    {"type": "LineString", "coordinates": [[1, 2], [3, 4]]},
    {"type": "MultiLineString", "coordinates": [[[1, 2], [3, 4]], [[5, 6], [7, 8], [9, 10]]]},
    {"type": "Polygon", "coordinates": [SQUARE]},
    {"type": "Polygon", "coordinates": [SQUARE, HOLE]},
    {"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE, HOLE]]},
]


@pytest.mark.parametrize("geometry", VALID, ids=lambda g: f"{g['type']}-{len(str(g))}")
def test_valid_geometries_are_accepted(geometry: dict[str, Any]) -> None:
    validate_geometry(geometry, WHERE)
    assert looks_like_geometry(geometry)


INVALID = {
    "null position": {"type": "Point", "coordinates": [None, None]},
    "longitude 181": {"type": "Point", "coordinates": [181, 0]},
    "longitude -180.5": {"type": "Point", "coordinates": [-180.5, 0]},
    "latitude -91": {"type": "Point", "coordinates": [0, -91]},
    "latitude 90.01": {"type": "Point", "coordinates": [0, 90.01]},
    "strings as numbers": {"type": "Point", "coordinates": ["134.05", "34.34"]},
    "booleans as numbers": {"type": "Point", "coordinates": [True, False]},
    "one number": {"type": "Point", "coordinates": [1]},
    "four numbers": {"type": "Point", "coordinates": [1, 2, 3, 4]},
    "empty position": {"type": "Point", "coordinates": []},
    "nested point": {"type": "Point", "coordinates": [[1, 2]]},
    "no coordinates": {"type": "Point"},
    "coordinates an object": {"type": "Point", "coordinates": {"lon": 1, "lat": 2}},
    "empty multipoint": {"type": "MultiPoint", "coordinates": []},
    "linestring of one position": {"type": "LineString", "coordinates": [[1, 2]]},
    "linestring with a bad position": {"type": "LineString", "coordinates": [[1, 2], [200, 2]]},
    "multilinestring with a one-position line": {"type": "MultiLineString", "coordinates": [[[1, 2]]]},
    "unclosed polygon ring": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
    "ring with 3 positions": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
    "polygon without rings": {"type": "Polygon", "coordinates": []},
    "polygon ring not an array": {"type": "Polygon", "coordinates": [5]},
    "unclosed hole": {"type": "Polygon", "coordinates": [SQUARE, [*HOLE[:-1], [0.3, 0.3]]]},
    "multipolygon with an unclosed ring": {
        "type": "MultiPolygon",
        "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 1]]]],
    },
    "empty multipolygon": {"type": "MultiPolygon", "coordinates": []},
    "unknown type": {"type": "Circle", "coordinates": [1, 2]},
    "geometry collection": {
        "type": "GeometryCollection",
        "geometries": [{"type": "Point", "coordinates": [1, 2]}],
    },
    "feature": {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}},
    "lowercase type": {"type": "point", "coordinates": [1, 2]},
    "type an array": {"type": ["Point"], "coordinates": [1, 2]},
    "type an object": {"type": {"name": "Point"}, "coordinates": [1, 2]},
    "no type": {"coordinates": [1, 2]},
    "not an object": [1, 2],
    "a string": "POINT(1 2)",
    "null": None,
}


@pytest.mark.parametrize("geometry", list(INVALID.values()), ids=list(INVALID))
def test_invalid_geometries_are_rejected_as_bad_request_data(geometry: Any) -> None:
    with pytest.raises(BadRequestData):
        validate_geometry(geometry, WHERE)


def test_the_error_says_where_the_geometry_was() -> None:
    with pytest.raises(BadRequestData) as caught:
        validate_geometry({"type": "Point", "coordinates": [181, 0]}, WHERE)
    assert WHERE in caught.value.detail


# --- properties -----------------------------------------------------------------------------------

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=40,
)
# Geometry-shaped objects reach the coordinate checks instead of stopping at the type test.
GEOMETRY_SHAPED = st.fixed_dictionaries(
    {
        "type": st.sampled_from([*sorted(GEOMETRY_TYPES), "GeometryCollection", "Feature"]) | JSON,
        "coordinates": JSON,
    }
)
NUMERIC_TREES = st.recursive(
    st.floats(min_value=-200, max_value=200) | st.integers(-200, 200),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=30,
)
GEOMETRY_NUMBERS = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(GEOMETRY_TYPES)), "coordinates": NUMERIC_TREES}
)


@given(JSON | GEOMETRY_SHAPED | GEOMETRY_NUMBERS)
def test_validate_geometry_raises_nothing_but_bad_request_data_on_any_json(value: Any) -> None:
    with contextlib.suppress(BadRequestData):
        validate_geometry(value, WHERE)


LONGITUDES = st.floats(min_value=-180, max_value=180, allow_nan=False)
LATITUDES = st.floats(min_value=-90, max_value=90, allow_nan=False)
POSITIONS = st.tuples(LONGITUDES, LATITUDES).map(list)


@given(POSITIONS)
def test_every_position_inside_wgs84_bounds_is_a_valid_point(position: list[float]) -> None:
    validate_geometry({"type": "Point", "coordinates": position}, WHERE)


@given(
    st.tuples(
        st.floats(allow_nan=False, allow_infinity=True).filter(lambda x: abs(x) > 180),
        LATITUDES,
    ).map(list)
    | st.tuples(
        LONGITUDES, st.floats(allow_nan=False, allow_infinity=True).filter(lambda x: abs(x) > 90)
    ).map(list)
)
def test_every_position_outside_wgs84_bounds_is_rejected(position: list[float]) -> None:
    with pytest.raises(BadRequestData):
        validate_geometry({"type": "Point", "coordinates": position}, WHERE)


@given(st.lists(POSITIONS, min_size=3, max_size=10))
def test_a_ring_closed_by_repeating_its_first_position_is_a_valid_polygon(
    positions: list[list[float]],
) -> None:
    ring = [*positions, positions[0]]
    validate_geometry({"type": "Polygon", "coordinates": [ring]}, WHERE)
    validate_geometry({"type": "MultiPolygon", "coordinates": [[ring]]}, WHERE)


@given(st.lists(POSITIONS, min_size=4, max_size=10).filter(lambda ps: ps[0] != ps[-1]))
def test_a_ring_whose_last_position_differs_from_its_first_is_rejected(positions: list[list[float]]) -> None:
    with pytest.raises(BadRequestData):
        validate_geometry({"type": "Polygon", "coordinates": [positions]}, WHERE)
