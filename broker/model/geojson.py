"""GeoJSON geometry validation (RFC 7946) for GeoProperty values."""

from __future__ import annotations

from typing import Any

from broker.errors import BadRequestData

GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
_MAX_POSITIONS = 100_000


def looks_like_geometry(value: Any) -> bool:
    """True when ``value`` has the shape of a GeoJSON geometry (used to infer GeoProperty)."""
    if not isinstance(value, dict) or "coordinates" not in value:
        return False
    kind = value.get("type")
    return isinstance(kind, str) and kind in GEOMETRY_TYPES


def validate_geometry(value: Any, where: str) -> None:
    """Raise BadRequestData unless ``value`` is a valid GeoJSON geometry in WGS 84."""
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(kind, str) or kind not in GEOMETRY_TYPES:
        raise BadRequestData(
            f"{where}: a GeoProperty value must be a GeoJSON geometry with type one of "
            f"{', '.join(sorted(GEOMETRY_TYPES))}"
        )
    coordinates = value.get("coordinates")
    counter = [0]
    try:
        if kind == "Point":
            _position(coordinates, counter)
        elif kind in ("MultiPoint", "LineString"):
            _positions(coordinates, counter, minimum=2 if kind == "LineString" else 1)
        elif kind == "MultiLineString":
            for line in _array(coordinates, 1):
                _positions(line, counter, minimum=2)
        elif kind == "Polygon":
            _polygon(coordinates, counter)
        else:
            for polygon in _array(coordinates, 1):
                _polygon(polygon, counter)
    except ValueError as exc:
        raise BadRequestData(f"{where}: invalid {kind} coordinates: {exc}") from None


def _array(value: Any, minimum: int) -> list[Any]:
    if not isinstance(value, list) or len(value) < minimum:
        raise ValueError(f"expected an array of at least {minimum} element(s)")
    return value


def _position(value: Any, counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > _MAX_POSITIONS:
        raise ValueError(f"more than {_MAX_POSITIONS} positions")
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise ValueError("a position is an array [longitude, latitude] or [longitude, latitude, altitude]")
    for number in value:
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ValueError(f"position {value!r} holds a non-number")
    lon, lat = value[0], value[1]
    if not -180 <= lon <= 180:
        raise ValueError(f"longitude {lon} is outside [-180, 180]")
    if not -90 <= lat <= 90:
        raise ValueError(f"latitude {lat} is outside [-90, 90]")


def _positions(value: Any, counter: list[int], minimum: int) -> list[Any]:
    positions = _array(value, minimum)
    for position in positions:
        _position(position, counter)
    return positions


def _polygon(value: Any, counter: list[int]) -> None:
    for ring in _array(value, 1):
        positions = _positions(ring, counter, minimum=4)
        if positions[0][:2] != positions[-1][:2]:
            raise ValueError("a polygon ring must be closed (first position equal to the last)")
