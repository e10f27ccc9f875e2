"""Geo-queries (ETSI GS CIM 009 clause 4.10): parsed into a ``GeoQuery``, translated to PostGIS SQL.

``georel`` is one of near;maxDistance==N, near;minDistance==N (metres, geodesic on
WGS 84; both modifiers may be given once each), within, contains, intersects,
overlaps, disjoint, equals. ``geometry`` names a GeoJSON geometry type and
``coordinates`` is its coordinates array as JSON text (the HTTP binding).

Reading of the relations, the entity's geometry always first:
``within`` = ST_Within(entity, reference), ``contains`` = ST_Contains(entity,
reference), the others symmetric. ``near`` takes a Point (as Orion-LD and NGSIv2
do; the distance to a Point is what the clause's examples use).

An entity without the targeted GeoProperty never matches, for every georel
including ``disjoint`` and ``near;minDistance``: a relation needs two geometries.
Only the default instance (no datasetId) of the GeoProperty is queried, which is
what the ``location`` column of ``entities`` holds; ``entity_geometries`` is
filtered the same way so that every geoproperty behaves alike.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from broker.errors import BadRequestData, TooComplexQuery
from broker.model.entity import LOCATION
from broker.model.geojson import GEOMETRY_TYPES, validate_geometry
from broker.query.params import Params

MAX_VERTICES = 2_000
"""Most positions a reference geometry may have (all rings and parts together)."""

# Metres per degree, chosen so that the box built from them always contains the
# geodesic disc: the shortest degree of latitude on WGS 84 (at the equator), and
# for longitude the equatorial degree, scaled by cos(latitude) where used. A
# further 5 % margin absorbs the poleward bend of geodesics.
_METRES_PER_DEGREE_LAT = 110_574.0
_METRES_PER_DEGREE_LON = 111_319.4908
_MARGIN = 1.05
_DISTANCE = re.compile(r"(?P<sign>-?)(?P<number>\d+(?:\.\d+)?)")


class Georel(StrEnum):
    NEAR = "near"
    WITHIN = "within"
    CONTAINS = "contains"
    INTERSECTS = "intersects"
    OVERLAPS = "overlaps"
    DISJOINT = "disjoint"
    EQUALS = "equals"


# The PostGIS predicate of each topological georel, called as f(entity, reference).
_PREDICATES = {
    Georel.WITHIN: "ST_Within",
    Georel.CONTAINS: "ST_Contains",
    Georel.INTERSECTS: "ST_Intersects",
    Georel.OVERLAPS: "ST_Overlaps",
    Georel.DISJOINT: "ST_Disjoint",
    Georel.EQUALS: "ST_Equals",
}


@dataclass(frozen=True, slots=True)
class GeoQuery:
    """A validated geo-query; ``geojson`` is the reference geometry as GeoJSON text."""

    georel: Georel
    geometry_type: str
    geojson: str
    geoproperty: str = "location"
    max_distance: float | None = None
    min_distance: float | None = None

    @property
    def geometry(self) -> dict[str, Any]:
        """The reference geometry as a GeoJSON object."""
        value: dict[str, Any] = orjson.loads(self.geojson)
        return value


def parse_geo_query(
    georel: str | None, geometry: str | None, coordinates: str | None, geoproperty: str | None
) -> GeoQuery | None:
    """The geo-query the four request parameters describe; None when none of them is given.

    Raises BadRequestData when a parameter is missing or invalid, TooComplexQuery
    when the reference geometry has more than MAX_VERTICES positions.
    """
    if georel is None and geometry is None and coordinates is None and geoproperty is None:
        return None
    if georel is None or geometry is None or coordinates is None:
        missing = [
            name
            for name, value in (("georel", georel), ("geometry", geometry), ("coordinates", coordinates))
            if value is None
        ]
        raise BadRequestData(f"incomplete geo-query: {', '.join(missing)} missing")
    relation, max_distance, min_distance = _parse_georel(georel)
    reference = _parse_geometry(geometry, coordinates)
    if relation is Georel.NEAR and geometry != "Point":
        raise BadRequestData(f"georel near takes a Point geometry, not {geometry}")
    if geoproperty is not None and not geoproperty.strip():
        raise BadRequestData("geoproperty must not be empty")
    return GeoQuery(
        georel=relation,
        geometry_type=geometry,
        geojson=orjson.dumps(reference).decode(),
        geoproperty=geoproperty if geoproperty is not None else "location",
        max_distance=max_distance,
        min_distance=min_distance,
    )


def _parse_georel(text: str) -> tuple[Georel, float | None, float | None]:
    name, *modifiers = text.split(";")
    try:
        relation = Georel(name)
    except ValueError:
        allowed = ", ".join(georel.value for georel in Georel)
        raise BadRequestData(f"georel {name!r} is not one of {allowed}") from None
    if relation is not Georel.NEAR:
        if modifiers:
            raise BadRequestData(f"georel {name} takes no modifiers, got {text!r}")
        return relation, None, None
    distances: dict[str, float] = {}
    for modifier in modifiers:
        key, equals, number = modifier.partition("==")
        if not equals or key not in ("maxDistance", "minDistance"):
            raise BadRequestData(f"near takes maxDistance==N or minDistance==N (metres), got {modifier!r}")
        if key in distances:
            raise BadRequestData(f"near: {key} given twice")
        distances[key] = _parse_distance(key, number)
    if not distances:
        raise BadRequestData("georel near needs maxDistance==N or minDistance==N (metres)")
    high, low = distances.get("maxDistance"), distances.get("minDistance")
    if high is not None and low is not None and low > high:
        raise BadRequestData(f"near: minDistance {low} is greater than maxDistance {high}")
    return relation, high, low


def _parse_distance(key: str, text: str) -> float:
    found = _DISTANCE.fullmatch(text)
    if found is None:
        raise BadRequestData(f"near: {key} must be a number of metres, got {text!r}")
    if found["sign"] == "-" and float(found["number"]) != 0:
        raise BadRequestData(f"near: {key} must not be negative, got {text}")
    value = float(found["number"])
    if not math.isfinite(value):
        raise BadRequestData(f"near: {key} {text} is too large")
    return value


def _parse_geometry(kind: str, coordinates: str) -> dict[str, Any]:
    if kind not in GEOMETRY_TYPES:
        raise BadRequestData(f"geometry {kind!r} is not one of {', '.join(sorted(GEOMETRY_TYPES))}")
    try:
        value = orjson.loads(coordinates)
    except (orjson.JSONDecodeError, RecursionError):
        raise BadRequestData("coordinates must be a JSON array, e.g. [134.05,34.34]") from None
    if not isinstance(value, list):
        raise BadRequestData("coordinates must be a JSON array, e.g. [134.05,34.34]")
    if _count_positions(value, depth=0) > MAX_VERTICES:
        raise TooComplexQuery(f"the geo-query geometry has more than {MAX_VERTICES} positions")
    reference = {"type": kind, "coordinates": value}
    validate_geometry(reference, "coordinates")
    return reference


def _count_positions(value: list[Any], depth: int) -> int:
    """Positions in a coordinates array (stops early past the limit; odd shapes count 0)."""
    if not value or not isinstance(value[0], list):
        return 1
    if depth >= 3:  # deeper than a MultiPolygon: validate_geometry rejects it
        return 0
    total = 0
    for item in value:
        if isinstance(item, list):
            total += _count_positions(item, depth + 1)
            if total > MAX_VERTICES:
                break
    return total


def geo_to_sql(query: GeoQuery, geoproperty_iri: str, params: Params, alias: str = "e") -> str:
    """A boolean SQL expression over the entities row ``alias`` that holds when it matches ``query``.

    The ``location`` GeoProperty is read from the indexed ``location`` column;
    any other from ``entity_geometries`` (default instance).
    """
    if geoproperty_iri == LOCATION:
        column = f"{alias}.location"
        return f"({column} IS NOT NULL AND {_predicate(query, column, params)})"
    sub = f"{alias}_geo"
    return (
        f"EXISTS (SELECT 1 FROM entity_geometries {sub}"
        f" WHERE {sub}.tenant = {alias}.tenant AND {sub}.entity_id = {alias}.id"
        f" AND {sub}.attr = {params.add(geoproperty_iri, 'text')} AND {sub}.dataset_id = ''"
        f" AND {_predicate(query, f'{sub}.geom', params)})"
    )


def _predicate(query: GeoQuery, column: str, params: Params) -> str:
    # A scalar sub-select is evaluated once per query (an InitPlan), not once per row.
    reference = (
        f"(SELECT ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON({params.add(query.geojson, 'text')}), 4326)))"
    )
    if query.georel is not Georel.NEAR:
        return f"{_PREDICATES[query.georel]}({column}, {reference})"
    lon, lat = query.geometry["coordinates"][:2]
    parts = []
    if query.max_distance is not None:
        parts.append(_dwithin(column, (lon, lat), reference, query.max_distance, params))
    if query.min_distance is not None:
        parts.append(f"NOT {_dwithin(column, (lon, lat), reference, query.min_distance, params)}")
    return " AND ".join(parts)


def _dwithin(column: str, point: tuple[float, float], reference: str, metres: float, params: Params) -> str:
    """Geodesic ST_DWithin, behind a bounding-box test the GiST index on ``column`` answers."""
    box = _near_box(point[0], point[1], metres, params)
    return (
        f"({column} && {box} AND ST_DWithin({column}::geography, {reference}::geography,"
        f" {params.add(metres, 'float8')}))"
    )


def _near_box(lon: float, lat: float, metres: float, params: Params) -> str:
    """An envelope (lon/lat degrees) that contains every point within ``metres`` of (lon, lat)."""
    dy = metres * _MARGIN / _METRES_PER_DEGREE_LAT + 1e-9
    south, north = lat - dy, lat + dy
    widest = max(abs(south), abs(north))
    if widest >= 89.0 or south <= -90.0 or north >= 90.0:
        west, east = -180.0, 180.0
    else:
        dx = metres * _MARGIN / (_METRES_PER_DEGREE_LON * math.cos(math.radians(widest))) + 1e-9
        west, east = lon - dx, lon + dx
        if west < -180.0 or east > 180.0:  # the disc crosses the antimeridian: take every longitude
            west, east = -180.0, 180.0
    corners = [params.add(value, "float8") for value in (west, max(south, -90.0), east, min(north, 90.0))]
    return f"ST_MakeEnvelope({', '.join(corners)}, 4326)"
