"""A GeoQuery evaluated in Python against one GeoJSON geometry (for subscriptions), as geo_to_sql does in SQL.

The topological georels use shapely (GEOS, as PostGIS does) on planar lon/lat,
which is what PostGIS does on ``geometry`` columns. ``near`` measures geodesic
metres on the WGS 84 ellipsoid: to a point with Vincenty's inverse formula; to a
line or polygon through an azimuthal equidistant projection centred on the
reference point (built from Vincenty's distances and azimuths, so distances from
the centre are exact), after densifying edges along great circles, which is how
PostGIS geography reads an edge. The result agrees with PostGIS
ST_DWithin(geography) to centimetres at city scale. shapely 2.1+ bundles GEOS
3.13+, whose relate algorithm answers differently from older GEOS (PostGIS 3.3
here uses 3.11) for self-crossing lines; valid geometries get the same answers.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import orjson
import shapely
from shapely.geometry import (
    GeometryCollection,
    LineString,
    MultiLineString,
    MultiPolygon,
    Point,
    Polygon,
    shape,
)
from shapely.geometry.base import BaseGeometry

from broker.query.geo import GeoQuery, Georel

# WGS 84
_A = 6_378_137.0
_F = 1 / 298.257223563
_B = _A * (1 - _F)
_DENSIFY_RADIANS = math.radians(0.0005)  # about 50 m: a straight chord that short is true to a millimetre


def matches_geo(query: GeoQuery, geometry: dict[str, Any]) -> bool:
    """True when an entity whose GeoProperty value is ``geometry`` matches ``query``.

    A missing or unreadable geometry never matches (as in SQL, for every georel).
    """
    try:
        target = shape(geometry)
    except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.ShapelyError):
        return False
    if target.is_empty:
        return False
    target = shapely.force_2d(target)
    try:
        return _evaluate(query, target)
    except shapely.errors.GEOSException:
        # GEOS gives up on some self-crossing geometries; a notification must not fail on one.
        return False


def _evaluate(query: GeoQuery, target: BaseGeometry) -> bool:
    if query.georel is not Georel.NEAR:
        return _topological(query.georel, _reference(query.geojson), target)
    lon, lat = query.geometry["coordinates"][:2]
    distance = geodesic_distance_to(lon, lat, target)
    if query.max_distance is not None and distance > query.max_distance:
        return False
    return query.min_distance is None or distance > query.min_distance


@functools.lru_cache(maxsize=256)
def _reference(geojson: str) -> BaseGeometry:
    """The reference geometry of a query, prepared once for the many entities a subscription meets."""
    reference = shapely.force_2d(shape(orjson.loads(geojson)))
    shapely.prepare(reference)
    return reference


def _topological(georel: Georel, reference: BaseGeometry, target: BaseGeometry) -> bool:
    """georel(target, reference), asked of the prepared reference (within and contains transposed)."""
    predicates = {
        Georel.WITHIN: shapely.contains,
        Georel.CONTAINS: shapely.within,
        Georel.INTERSECTS: shapely.intersects,
        Georel.OVERLAPS: shapely.overlaps,
        Georel.DISJOINT: shapely.disjoint,
        Georel.EQUALS: shapely.equals,
    }
    return bool(predicates[georel](reference, target))


def geodesic_distance_to(lon: float, lat: float, target: BaseGeometry) -> float:
    """Metres on WGS 84 from (lon, lat) to the nearest point of ``target`` (0 inside or on it)."""
    if target.geom_type in ("Point", "MultiPoint"):
        if target.intersects(Point(lon, lat)):
            return 0.0
        points = shapely.get_coordinates(target)
        return min(vincenty(lon, lat, float(x), float(y))[0] for x, y in points)
    # Edges are great-circle arcs, as on PostGIS geography: a point on the straight lon/lat segment
    # between two positions of one latitude lies about a metre from the arc 10 km long.
    arcs = _densify(target)
    if arcs.intersects(Point(lon, lat)):
        return 0.0
    projected = shapely.transform(arcs, lambda xy: _azimuthal(lon, lat, xy))
    return float(projected.distance(Point(0.0, 0.0)))


def _densify(geometry: BaseGeometry) -> BaseGeometry:
    """``geometry`` with each edge densified along its great circle, as PostGIS geography reads edges."""
    if isinstance(geometry, LineString):
        return _line(geometry)
    if isinstance(geometry, Polygon):
        return _polygon(geometry)
    if isinstance(geometry, MultiLineString):
        return MultiLineString([_line(part) for part in geometry.geoms])
    if isinstance(geometry, MultiPolygon):
        return MultiPolygon([_polygon(part) for part in geometry.geoms])
    if isinstance(geometry, GeometryCollection):
        return GeometryCollection([_densify(part) for part in geometry.geoms])
    return geometry


def _line(line: LineString) -> LineString:
    return LineString(_arc(list(line.coords)))


def _polygon(polygon: Polygon) -> Polygon:
    return Polygon(
        _arc(list(polygon.exterior.coords)), [_arc(list(ring.coords)) for ring in polygon.interiors]
    )


def _arc(coords: list[tuple[float, ...]]) -> list[tuple[float, float]]:
    """Positions along the great-circle arcs joining ``coords``, at most _DENSIFY_RADIANS apart."""
    out = [(coords[0][0], coords[0][1])]
    for start, end in itertools.pairwise(coords):
        a, b = _unit(start[0], start[1]), _unit(end[0], end[1])
        omega = math.acos(max(-1.0, min(1.0, sum(x * y for x, y in zip(a, b, strict=True)))))
        steps = math.ceil(omega / _DENSIFY_RADIANS)
        if steps > 1 and math.sin(omega) > 1e-12:
            for step in range(1, steps):
                t = step / steps
                wa, wb = math.sin((1 - t) * omega), math.sin(t * omega)
                x, y, z = ((wa * p + wb * q) / math.sin(omega) for p, q in zip(a, b, strict=True))
                out.append((math.degrees(math.atan2(y, x)), math.degrees(math.atan2(z, math.hypot(x, y)))))
        out.append((end[0], end[1]))
    return out


def _unit(lon: float, lat: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lon)
    return (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


def _azimuthal(lon: float, lat: float, xy: Any) -> Any:
    """Azimuthal equidistant coordinates (metres) of lon/lat rows ``xy`` around (lon, lat)."""
    out = xy.copy()
    for row in range(len(xy)):
        metres, azimuth = vincenty(lon, lat, float(xy[row][0]), float(xy[row][1]))
        out[row][0] = metres * math.sin(azimuth)
        out[row][1] = metres * math.cos(azimuth)
    return out


def vincenty(lon1: float, lat1: float, lon2: float, lat2: float) -> tuple[float, float]:
    """Distance (metres) and initial azimuth (radians from north) on WGS 84 (Vincenty 1975, inverse).

    Falls back to a spherical estimate for nearly antipodal points, where the
    iteration does not converge.
    """
    if lon1 == lon2 and lat1 == lat2:
        return 0.0, 0.0
    u1 = math.atan((1 - _F) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - _F) * math.tan(math.radians(lat2)))
    big_l = math.radians(lon2 - lon1)
    sin_u1, cos_u1, sin_u2, cos_u2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    lam = big_l
    for _ in range(200):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(cos_u2 * sin_lam, cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lam)
        if sin_sigma == 0:
            return 0.0, 0.0
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cos_u1 * cos_u2 * sin_lam / sin_sigma
        cos2_alpha = 1 - sin_alpha**2
        cos_2sm = cos_sigma - 2 * sin_u1 * sin_u2 / cos2_alpha if cos2_alpha else 0.0
        c = _F / 16 * cos2_alpha * (4 + _F * (4 - 3 * cos2_alpha))
        previous = lam
        lam = big_l + (1 - c) * _F * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm**2))
        )
        if abs(lam - previous) < 1e-12:
            break
    else:
        return _spherical(lon1, lat1, lon2, lat2)
    u_sq = cos2_alpha * (_A**2 - _B**2) / _B**2
    a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta_sigma = (
        b
        * sin_sigma
        * (
            cos_2sm
            + b
            / 4
            * (
                cos_sigma * (-1 + 2 * cos_2sm**2)
                - b / 6 * cos_2sm * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sm**2)
            )
        )
    )
    azimuth = math.atan2(cos_u2 * math.sin(lam), cos_u1 * sin_u2 - sin_u1 * cos_u2 * math.cos(lam))
    return _B * a * (sigma - delta_sigma), azimuth


def _spherical(lon1: float, lat1: float, lon2: float, lat2: float) -> tuple[float, float]:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_lon = math.radians(lon2 - lon1)
    h = math.sin((phi2 - phi1) / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lon / 2) ** 2
    azimuth = math.atan2(
        math.sin(d_lon) * math.cos(phi2),
        math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(d_lon),
    )
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(h))), azimuth
