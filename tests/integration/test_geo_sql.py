"""Geo-queries run by PostGIS around Takamatsu (lon 134.05, lat 34.34), with hand-checked answers.

Every case is asked twice: of PostgreSQL through geo_to_sql, and of matches_geo
(the Python evaluator subscriptions will use); both must give the expected set.
Distances are placed with Vincenty's direct formula written here, independently
of the broker (and checked against the haversine formula), never with PostGIS.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, MultiPoint, mapping, shape
from shapely.geometry.base import BaseGeometry

from broker.model.entity import LOCATION
from broker.query.geo import geo_to_sql, parse_geo_query
from broker.query.geo_eval import geodesic_distance_to, matches_geo
from broker.query.params import Params
from broker.store.migrate import migrate
from tests.conftest import database_url

AREA = "https://example.org/serviceArea"
OTHER_DATASET = "urn:ngsi-ld:dataset:second"
LON, LAT = 134.05, 34.34
Geometry = dict[str, Any]


# --- geodesy written for the test (WGS 84) ----------------------------------------------------

_A, _F = 6_378_137.0, 1 / 298.257223563
_B = _A * (1 - _F)


def destination(bearing: float, metres: float, lon: float = LON, lat: float = LAT) -> tuple[float, float]:
    """The point ``metres`` along the geodesic leaving (lon, lat) at ``bearing`` degrees (Vincenty direct)."""
    alpha1 = math.radians(bearing)
    tan_u1 = (1 - _F) * math.tan(math.radians(lat))
    cos_u1 = 1 / math.sqrt(1 + tan_u1**2)
    sin_u1 = tan_u1 * cos_u1
    sigma1 = math.atan2(tan_u1, math.cos(alpha1))
    sin_alpha = cos_u1 * math.sin(alpha1)
    cos2_alpha = 1 - sin_alpha**2
    u_sq = cos2_alpha * (_A**2 - _B**2) / _B**2
    a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    sigma = metres / (_B * a)
    for _ in range(100):
        cos_2sm = math.cos(2 * sigma1 + sigma)
        delta = (
            b
            * math.sin(sigma)
            * (
                cos_2sm
                + b
                / 4
                * (
                    math.cos(sigma) * (-1 + 2 * cos_2sm**2)
                    - b / 6 * cos_2sm * (-3 + 4 * math.sin(sigma) ** 2) * (-3 + 4 * cos_2sm**2)
                )
            )
        )
        previous, sigma = sigma, metres / (_B * a) + delta
        if abs(sigma - previous) < 1e-13:
            break
    cos_2sm = math.cos(2 * sigma1 + sigma)
    x = sin_u1 * math.sin(sigma) - cos_u1 * math.cos(sigma) * math.cos(alpha1)
    lat2 = math.atan2(
        sin_u1 * math.cos(sigma) + cos_u1 * math.sin(sigma) * math.cos(alpha1),
        (1 - _F) * math.hypot(sin_alpha, x),
    )
    lam = math.atan2(
        math.sin(sigma) * math.sin(alpha1),
        cos_u1 * math.cos(sigma) - sin_u1 * math.sin(sigma) * math.cos(alpha1),
    )
    c = _F / 16 * cos2_alpha * (4 + _F * (4 - 3 * cos2_alpha))
    big_l = lam - (1 - c) * _F * sin_alpha * (
        sigma + c * math.sin(sigma) * (cos_2sm + c * math.cos(sigma) * (-1 + 2 * cos_2sm**2))
    )
    return lon + math.degrees(big_l), math.degrees(lat2)


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def point(lon: float, lat: float) -> Geometry:
    return {"type": "Point", "coordinates": [lon, lat]}


def line(*positions: tuple[float, float]) -> Geometry:
    return {"type": "LineString", "coordinates": [list(p) for p in positions]}


def box(west: float, south: float, east: float, north: float) -> Geometry:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


# --- the store -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url(), min_size=1, max_size=4)
    assert created is not None
    await migrate(created)
    yield created
    await created.close()


async def store(pool: asyncpg.Pool, tenant: str, rows: dict[str, dict[str, Geometry | None]]) -> None:
    """Insert one entity per row: ``location`` and ``area`` (default instance), ``area2`` (a datasetId)."""
    await pool.execute("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
    for name, row in rows.items():
        entity_id = f"urn:ngsi-ld:Thing:{name}"
        location = row.get("location")
        await pool.execute(
            "INSERT INTO entities (tenant, id, types, created_at, modified_at, attrs, location)"
            " VALUES ($1, $2, ARRAY['https://example.org/Thing'], now(), now(), '{}'::jsonb,"
            " ST_SetSRID(ST_GeomFromGeoJSON($3::text), 4326))",
            tenant,
            entity_id,
            None if location is None else orjson.dumps(location).decode(),
        )
        for key, attr, dataset in (
            ("location", LOCATION, ""),
            ("area", AREA, ""),
            ("area2", AREA, OTHER_DATASET),
        ):
            value = row.get(key)
            if value is not None:
                await pool.execute(
                    "INSERT INTO entity_geometries (tenant, entity_id, attr, dataset_id, geom)"
                    " VALUES ($1, $2, $3, $4, ST_SetSRID(ST_GeomFromGeoJSON($5::text), 4326))",
                    tenant,
                    entity_id,
                    attr,
                    dataset,
                    orjson.dumps(value).decode(),
                )


async def ask(
    pool: asyncpg.Pool, tenant: str, georel: str, geometry: Geometry, geoproperty: str = LOCATION
) -> set[str]:
    """Names of the tenant's entities the geo-query selects in SQL."""
    query = parse_geo_query(georel, geometry["type"], orjson.dumps(geometry["coordinates"]).decode(), None)
    assert query is not None
    params = Params(tenant)
    sql = f"SELECT e.id FROM entities e WHERE e.tenant = $1 AND {geo_to_sql(query, geoproperty, params)}"
    return {row["id"].rsplit(":", 1)[1] for row in await pool.fetch(sql, *params.values)}


def ask_python(rows: dict[str, dict[str, Geometry | None]], georel: str, geometry: Geometry) -> set[str]:
    """Names of the entities whose location matches, by matches_geo."""
    query = parse_geo_query(georel, geometry["type"], orjson.dumps(geometry["coordinates"]).decode(), None)
    assert query is not None
    return {
        name
        for name, row in rows.items()
        if (value := row.get("location")) is not None and matches_geo(query, value)
    }


# --- topological georels: a city box with things inside, outside, crossing and touching it -------

CITY = box(134.00, 34.30, 134.10, 34.38)
CITY_ROTATED = {
    "type": "Polygon",
    "coordinates": [[[134.10, 34.38], [134.00, 34.38], [134.00, 34.30], [134.10, 34.30], [134.10, 34.38]]],
}
EAST_SQUARE = box(134.19, 34.33, 134.21, 34.35)

CITY_ROWS: dict[str, dict[str, Geometry | None]] = {
    "pointInside": {"location": point(134.05, 34.34)},
    "pointOutside": {"location": point(134.20, 34.34)},
    "pointOnEdge": {"location": point(134.10, 34.34)},
    "lineInside": {"location": line((134.02, 34.32), (134.03, 34.37))},
    "lineCrossing": {"location": line((134.07, 34.345), (134.15, 34.345))},
    "lineOutside": {"location": line((134.20, 34.20), (134.30, 34.30))},
    "boxInside": {"location": box(134.04, 34.33, 134.06, 34.35)},
    "boxCrossing": {"location": box(134.08, 34.33, 134.12, 34.35)},
    "boxTouching": {"location": box(134.10, 34.32, 134.12, 34.34)},
    "boxOutside": {"location": box(134.30, 34.30, 134.40, 34.40)},
    "boxEqual": {"location": CITY},
    "boxEqualRotated": {"location": CITY_ROTATED},
    "boxAround": {"location": box(133.90, 34.20, 134.20, 34.50)},
    "noGeometry": {"location": None},
}
EVERY_GEOMETRY = set(CITY_ROWS) - {"noGeometry"}
IN_CITY = {"pointInside", "lineInside", "boxInside", "boxEqual", "boxEqualRotated"}
APART_FROM_CITY = {"pointOutside", "lineOutside", "boxOutside"}

CITY_CASES = {
    "within the city": ("within", CITY, IN_CITY),
    "within a multipolygon": (
        "within",
        {"type": "MultiPolygon", "coordinates": [CITY["coordinates"], EAST_SQUARE["coordinates"]]},
        IN_CITY | {"pointOutside"},
    ),
    "containing the city": ("contains", CITY, {"boxEqual", "boxEqualRotated", "boxAround"}),
    "containing the centre point": (
        "contains",
        point(134.05, 34.34),
        {"pointInside", "boxInside", "boxEqual", "boxEqualRotated", "boxAround"},
    ),
    "intersecting the city": ("intersects", CITY, EVERY_GEOMETRY - APART_FROM_CITY),
    "intersecting a line into the city": (
        "intersects",
        line((133.95, 34.34), (134.03, 34.34)),
        {"lineInside", "boxEqual", "boxEqualRotated", "boxAround"},
    ),
    "overlapping the city": ("overlaps", CITY, {"boxCrossing"}),
    "disjoint from the city": ("disjoint", CITY, APART_FROM_CITY),
    "equal to the city": ("equals", CITY, {"boxEqual", "boxEqualRotated"}),
    "equal to the centre point": ("equals", point(134.05, 34.34), {"pointInside"}),
}


@pytest.mark.parametrize(("georel", "reference", "expected"), CITY_CASES.values(), ids=CITY_CASES.keys())
async def test_topological_georels_select_the_hand_checked_entities(
    pool: asyncpg.Pool, tenant: str, georel: str, reference: Geometry, expected: set[str]
) -> None:
    await store(pool, tenant, CITY_ROWS)
    assert await ask(pool, tenant, georel, reference) == expected
    assert ask_python(CITY_ROWS, georel, reference) == expected


async def test_an_entity_without_geometry_is_never_disjoint(pool: asyncpg.Pool, tenant: str) -> None:
    await store(pool, tenant, {"noGeometry": {"location": None}})
    assert await ask(pool, tenant, "disjoint", CITY) == set()
    assert await ask(pool, tenant, "near;minDistance==1", point(LON, LAT)) == set()


# --- near: points and shapes at known geodesic distances from the centre ------------------------

LINE_NORTH = destination(0, 800)
BOX_EAST = destination(90, 1500)
NEAR_ROWS: dict[str, dict[str, Geometry | None]] = {
    "at5m": {"location": point(*destination(225, 5))},
    "at500mNorth": {"location": point(*destination(0, 500))},
    "at990mNorthEast": {"location": point(*destination(45, 990))},
    "at1010mEast": {"location": point(*destination(90, 1010))},
    "at1990mSouth": {"location": point(*destination(180, 1990))},
    "at2010mWest": {"location": point(*destination(270, 2010))},
    "lineAt800m": {
        "location": line((LINE_NORTH[0] - 0.01, LINE_NORTH[1]), (LINE_NORTH[0] + 0.01, LINE_NORTH[1]))
    },
    "boxAt1500m": {"location": box(BOX_EAST[0], LAT - 0.005, BOX_EAST[0] + 0.01, LAT + 0.005)},
    "boxAroundCentre": {"location": box(LON - 0.001, LAT - 0.001, LON + 0.001, LAT + 0.001)},
    "noGeometry": {"location": None},
}
NEAR_CASES = {
    "within 1000 m": (
        "near;maxDistance==1000",
        {"at5m", "at500mNorth", "at990mNorthEast", "lineAt800m", "boxAroundCentre"},
    ),
    "within 2000 m": (
        "near;maxDistance==2000",
        set(NEAR_ROWS) - {"at2010mWest", "noGeometry"},
    ),
    "within 0 m": ("near;maxDistance==0", {"boxAroundCentre"}),
    "beyond 1000 m": ("near;minDistance==1000", {"at1010mEast", "at1990mSouth", "at2010mWest", "boxAt1500m"}),
    "beyond 0 m": ("near;minDistance==0", set(NEAR_ROWS) - {"boxAroundCentre", "noGeometry"}),
    "between 1000 and 2000 m": (
        "near;minDistance==1000;maxDistance==2000",
        {"at1010mEast", "at1990mSouth", "boxAt1500m"},
    ),
}


def test_the_test_geodesy_agrees_with_the_haversine_formula() -> None:
    for bearing in (0, 45, 90, 135, 180, 225, 270, 315):
        for metres in (5, 500, 1010, 20_000):
            lon, lat = destination(bearing, metres)
            assert haversine(LON, LAT, lon, lat) == pytest.approx(metres, rel=0.005)


@pytest.mark.parametrize(("georel", "expected"), NEAR_CASES.values(), ids=NEAR_CASES.keys())
async def test_near_selects_by_geodesic_metres(
    pool: asyncpg.Pool, tenant: str, georel: str, expected: set[str]
) -> None:
    await store(pool, tenant, NEAR_ROWS)
    assert await ask(pool, tenant, georel, point(LON, LAT)) == expected
    assert ask_python(NEAR_ROWS, georel, point(LON, LAT)) == expected


async def test_near_finds_points_across_the_antimeridian(pool: asyncpg.Pool, tenant: str) -> None:
    rows: dict[str, dict[str, Geometry | None]] = {
        "eastOfLine": {"location": point(-179.99, -16.5)},
        "farAway": {"location": point(-179.0, -16.5)},
    }
    await store(pool, tenant, rows)
    # Fiji: 0.02 degrees of longitude at 16.5 S are about 2.1 km.
    assert await ask(pool, tenant, "near;maxDistance==5000", point(179.99, -16.5)) == {"eastOfLine"}
    assert ask_python(rows, "near;maxDistance==5000", point(179.99, -16.5)) == {"eastOfLine"}


async def test_near_finds_points_over_the_pole(pool: asyncpg.Pool, tenant: str) -> None:
    rows: dict[str, dict[str, Geometry | None]] = {"otherSide": {"location": point(-90.0, 89.99)}}
    await store(pool, tenant, rows)
    # Two points 0.01 degree from the North Pole on opposite meridians: about 2.2 km apart.
    assert await ask(pool, tenant, "near;maxDistance==3000", point(90.0, 89.99)) == {"otherSide"}
    assert ask_python(rows, "near;maxDistance==3000", point(90.0, 89.99)) == {"otherSide"}


# --- a GeoProperty other than location -----------------------------------------------------------

AREA_ROWS: dict[str, dict[str, Geometry | None]] = {
    "areaInside": {"location": point(134.20, 34.34), "area": box(134.04, 34.33, 134.06, 34.35)},
    "areaOutside": {"location": point(134.05, 34.34), "area": box(134.30, 34.30, 134.40, 34.40)},
    "areaInsideOnlyForADataset": {
        "area": box(134.30, 34.30, 134.40, 34.40),
        "area2": box(134.04, 34.33, 134.06, 34.35),
    },
    "noArea": {"location": point(134.05, 34.34)},
}


async def test_another_geoproperty_is_queried_on_its_own_geometry(pool: asyncpg.Pool, tenant: str) -> None:
    await store(pool, tenant, AREA_ROWS)
    assert await ask(pool, tenant, "within", CITY, AREA) == {"areaInside"}
    assert await ask(pool, tenant, "within", CITY, LOCATION) == {"areaOutside", "noArea"}


async def test_another_geoproperty_never_matches_entities_without_it(pool: asyncpg.Pool, tenant: str) -> None:
    await store(pool, tenant, AREA_ROWS)
    assert await ask(pool, tenant, "disjoint", CITY, AREA) == {"areaOutside", "areaInsideOnlyForADataset"}
    assert await ask(pool, tenant, "near;minDistance==1", point(LON, LAT), AREA) == {
        "areaOutside",
        "areaInsideOnlyForADataset",
    }


async def test_another_geoproperty_reads_only_its_default_instance(pool: asyncpg.Pool, tenant: str) -> None:
    await store(pool, tenant, AREA_ROWS)
    assert "areaInsideOnlyForADataset" not in await ask(pool, tenant, "intersects", CITY, AREA)


async def test_another_geoproperty_is_read_from_the_same_tenant_only(pool: asyncpg.Pool, tenant: str) -> None:
    same_id_elsewhere = f"{tenant}-other"
    await store(pool, tenant, {"shared": {"area": box(134.30, 34.30, 134.40, 34.40)}})
    await store(pool, same_id_elsewhere, {"shared": {"area": box(134.04, 34.33, 134.06, 34.35)}})
    assert await ask(pool, tenant, "within", CITY, AREA) == set()
    assert await ask(pool, same_id_elsewhere, "within", CITY, AREA) == {"shared"}


# --- property: matches_geo answers as PostGIS does ------------------------------------------------

LONS = st.floats(133.98, 134.12)
LATS = st.floats(34.28, 34.40)
GRID_LONS = st.integers(13398, 13412).map(lambda n: n / 100)
GRID_LATS = st.integers(3428, 3440).map(lambda n: n / 100)
POSITIONS = st.one_of(st.tuples(LONS, LATS), st.tuples(GRID_LONS, GRID_LATS))


@st.composite
def geometries(draw: st.DrawFn) -> Geometry:
    """A random valid Point, LineString or convex Polygon near Takamatsu (some on a 0.01 degree grid)."""
    kind = draw(st.sampled_from(["Point", "LineString", "Polygon"]))
    if kind == "Point":
        return point(*draw(POSITIONS))
    if kind == "LineString":
        line = LineString(draw(st.lists(POSITIONS, min_size=2, max_size=4)))
        # Self-crossing lines are left out: GEOS 3.13 (shapely) relates them differently from older GEOS.
        assume(line.length > 0 and line.is_simple)
        drawn: BaseGeometry = line
    else:
        drawn = MultiPoint(draw(st.lists(POSITIONS, min_size=3, max_size=8))).convex_hull
        assume(str(drawn.geom_type) == "Polygon")
    return orjson.loads(orjson.dumps(mapping(drawn)))  # type: ignore[no-any-return]


async def postgis_overshoots(pool: asyncpg.Pool, centre: tuple[float, float], target: Geometry) -> bool:
    """True when PostGIS measures ``target`` farther from ``centre`` than its nearest vertex."""
    overshoot: float = await pool.fetchval(
        "WITH g AS (SELECT ST_SetSRID(ST_GeomFromGeoJSON($1::text), 4326) AS geom,"
        " ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography AS centre)"
        " SELECT ST_Distance(g.centre, g.geom::geography) - min(ST_Distance(g.centre, d.geom::geography))"
        " FROM g, ST_DumpPoints(g.geom) AS d GROUP BY g.centre, g.geom",
        orjson.dumps(target).decode(),
        centre[0],
        centre[1],
    )
    return overshoot > 0.01


async def sql_matches(pool: asyncpg.Pool, georel: str, reference: Geometry, target: Geometry) -> bool | None:
    query = parse_geo_query(georel, reference["type"], orjson.dumps(reference["coordinates"]).decode(), None)
    assert query is not None
    params = Params(orjson.dumps(target).decode())
    sql = (
        f"SELECT {geo_to_sql(query, LOCATION, params)} FROM (SELECT"
        " ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON($1::text), 4326)) AS location, ''::text AS tenant,"
        " ''::text AS id) AS e"
    )
    answer: bool | None = await pool.fetchval(sql, *params.values)
    return answer


@settings(max_examples=300, deadline=None)
@given(
    georel=st.sampled_from(["within", "contains", "intersects", "overlaps", "disjoint", "equals"]),
    reference=geometries(),
    target=geometries(),
)
async def test_matches_geo_agrees_with_postgis_on_topological_georels(
    pool: asyncpg.Pool, georel: str, reference: Geometry, target: Geometry
) -> None:
    query = parse_geo_query(georel, reference["type"], orjson.dumps(reference["coordinates"]).decode(), None)
    assert query is not None
    assert await sql_matches(pool, georel, reference, target) is matches_geo(query, target)


@settings(max_examples=300, deadline=None)
@given(
    centre=POSITIONS,
    target=geometries(),
    metres=st.floats(0, 15_000),
    modifier=st.sampled_from(["maxDistance", "minDistance"]),
)
# On the straight lon/lat segment, but 1.32 m off the great-circle arc PostGIS measures to.
@example(
    centre=(134.0625, 34.375),
    target={"type": "LineString", "coordinates": [[134.0, 34.375], [134.109375, 34.375]]},
    metres=1.0,
    modifier="maxDistance",
)
async def test_matches_geo_agrees_with_postgis_on_near(
    pool: asyncpg.Pool, centre: tuple[float, float], target: Geometry, metres: float, modifier: str
) -> None:
    distance = geodesic_distance_to(centre[0], centre[1], shape(target))
    assume(abs(distance - metres) > 0.01)  # a centimetre either side of the threshold is up to rounding
    # PostGIS 3.3's geography distance to a line is sometimes longer than to one of the line's own
    # vertices (seen: 8,939.6 m to a 3-vertex line, 8,921.9 m to its last vertex, which the Python
    # matcher finds): where PostGIS contradicts itself it is not the reference.
    assume(not await postgis_overshoots(pool, centre, target))
    georel = f"near;{modifier}=={metres:.6f}"
    query = parse_geo_query(georel, "Point", orjson.dumps(list(centre)).decode(), None)
    assert query is not None
    assert await sql_matches(pool, georel, point(*centre), target) is matches_geo(query, target)


@settings(max_examples=300, deadline=None)
@given(
    lon=st.floats(-180, 180),
    lat=st.floats(-89.9, 89.9),
    bearing=st.floats(0, 360, exclude_max=True),
    metres=st.one_of(st.floats(0, 2_000), st.floats(0, 3_000_000)),
)
async def test_near_finds_every_point_within_the_distance_anywhere_on_earth(
    pool: asyncpg.Pool, lon: float, lat: float, bearing: float, metres: float
) -> None:
    """The bounding box in front of ST_DWithin never hides a point (poles, antimeridian, long distances)."""
    far_lon, far_lat = destination(bearing, metres, lon, lat)
    far_lon = (far_lon + 180) % 360 - 180
    within = f"near;maxDistance=={metres * 1.0001 + 0.01:.4f}"
    assert await sql_matches(pool, within, point(lon, lat), point(far_lon, far_lat)) is True
