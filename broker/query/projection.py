"""The projection lists of ``pick`` and ``omit`` (clause 4.21 of V1.9.1): names, with braces to go
one level down (``pick=id,speed{accuracy,source},location``).

A list is names separated by commas; a name may be followed by ``{list}`` naming the
sub-attributes of that attribute to keep (pick) or drop (omit). Anything else (an empty name,
unbalanced braces, a brace after a brace) is a 400 with the position it was found at.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import BadRequestData
from broker.model.parse import check_name

MAX_PROJECTION_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Projected:
    """One name of a projection list and, with braces, the projection of its members."""

    name: str
    inner: tuple[Projected, ...] | None = None


def parse_projection(text: str, parameter: str) -> tuple[Projected, ...]:
    """The names of a pick/omit list; BadRequestData for a malformed one."""
    items, end = _list(text, 0, parameter, 0)
    if end != len(text):
        raise BadRequestData(f"{parameter}: unexpected '{text[end]}' at position {end}")
    return items


def _list(text: str, start: int, parameter: str, depth: int) -> tuple[tuple[Projected, ...], int]:
    if depth > MAX_PROJECTION_DEPTH:
        raise BadRequestData(f"{parameter}: braces nest deeper than {MAX_PROJECTION_DEPTH} levels")
    items: list[Projected] = []
    position = start
    while True:
        end = position
        while end < len(text) and text[end] not in ",{}":
            end += 1
        name = text[position:end].strip()
        if not name:
            raise BadRequestData(f"{parameter}: an empty name at position {position}")
        check_name(name, f"{parameter} name")
        inner = None
        if end < len(text) and text[end] == "{":
            inner, end = _list(text, end + 1, parameter, depth + 1)
            if end >= len(text) or text[end] != "}":
                raise BadRequestData(f"{parameter}: '{{' at position {end} is not closed")
            end += 1
        items.append(Projected(name, inner))
        if end < len(text) and text[end] == ",":
            position = end + 1
            continue
        return tuple(items), end
