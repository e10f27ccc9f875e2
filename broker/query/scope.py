"""Scope queries (ETSI GS CIM 009 clause 4.19): ``scopeQ`` parsed into a small AST, then SQL or Python.

Grammar (a recursive-descent parser, no whitespace)::

    scopeQ  = or
    or      = and *( ("|" / ",") and )     ; "," as OR, as Orion-LD and Stellio accept
    and     = term *( ";" term )
    term    = "(" or ")" / pattern
    pattern = "/#" / ["/"] level *( "/" level ) [ "/#" ]
    level   = 1*( unicode letter / unicode number / "_" ) / "+"

A pattern matches one scope: ``/a/b`` exactly that scope, ``/a/#`` the scope
``/a`` and every scope below it, ``+`` any single level (``/a/+/c``), ``/#`` any
scope at all. An entity matches a pattern when one of its scopes does; an entity
without scopes matches no pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broker.errors import BadRequestData, TooComplexQuery
from broker.query.params import Params

MAX_PATTERNS = 100
MAX_DEPTH = 20
_ANY_LEVEL = "+"


@dataclass(frozen=True, slots=True)
class ScopePattern:
    """One scope pattern: its levels ("+" for any one level), whether it starts with "/" or ends with "/#"."""

    levels: tuple[str, ...]
    rooted: bool = True
    descendants: bool = False

    @property
    def matches_any(self) -> bool:
        return not self.levels and self.descendants


@dataclass(frozen=True, slots=True)
class ScopeAnd:
    parts: tuple[ScopeQuery, ...]


@dataclass(frozen=True, slots=True)
class ScopeOr:
    parts: tuple[ScopeQuery, ...]


ScopeQuery = ScopePattern | ScopeAnd | ScopeOr


def parse_scope_q(text: str) -> ScopeQuery:
    """The scope query ``text`` denotes; BadRequestData when it is not one, TooComplexQuery when too big."""
    parser = _Parser(text)
    query = parser.parse_or(depth=0)
    if parser.pos != len(text):
        raise BadRequestData(f"scopeQ: unexpected {text[parser.pos]!r} at position {parser.pos} in {text!r}")
    return query


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.patterns = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse_or(self, depth: int) -> ScopeQuery:
        if depth > MAX_DEPTH:
            raise TooComplexQuery(f"scopeQ nests parentheses deeper than {MAX_DEPTH}")
        parts = [self.parse_and(depth)]
        while self.peek() in ("|", ","):
            self.pos += 1
            parts.append(self.parse_and(depth))
        return parts[0] if len(parts) == 1 else ScopeOr(tuple(parts))

    def parse_and(self, depth: int) -> ScopeQuery:
        parts = [self.parse_term(depth)]
        while self.peek() == ";":
            self.pos += 1
            parts.append(self.parse_term(depth))
        return parts[0] if len(parts) == 1 else ScopeAnd(tuple(parts))

    def parse_term(self, depth: int) -> ScopeQuery:
        if self.peek() == "(":
            self.pos += 1
            inner = self.parse_or(depth + 1)
            if self.peek() != ")":
                raise BadRequestData(f"scopeQ: missing ')' at position {self.pos} in {self.text!r}")
            self.pos += 1
            return inner
        return self.parse_pattern()

    def parse_pattern(self) -> ScopePattern:
        self.patterns += 1
        if self.patterns > MAX_PATTERNS:
            raise TooComplexQuery(f"scopeQ has more than {MAX_PATTERNS} scope patterns")
        start = self.pos
        while self.peek() not in ("", "|", ",", ";", "(", ")"):
            self.pos += 1
        return _pattern(self.text[start : self.pos], start, self.text)


def _pattern(word: str, at: int, text: str) -> ScopePattern:
    if word == "/#":
        return ScopePattern(levels=(), descendants=True)
    rooted = word.startswith("/")
    body = word[1:] if rooted else word
    descendants = body.endswith("/#")
    if descendants:
        body = body[:-2]
    levels = tuple(body.split("/"))
    for level in levels:
        if level != _ANY_LEVEL and not _is_level(level):
            raise BadRequestData(
                f"scopeQ: {word!r} at position {at} in {text!r} is not a scope pattern "
                "(levels of letters, digits and _, '+' for one level, a final '/#' for all below)"
            )
    return ScopePattern(levels=levels, rooted=rooted, descendants=descendants)


def _is_level(level: str) -> bool:
    return bool(level) and all(char.isalnum() or char == "_" for char in level)


def matches_scope(q: ScopeQuery, scopes: list[str] | None) -> bool:
    """True when an entity with ``scopes`` matches the scope query (the same answer as scope_to_sql)."""
    if isinstance(q, ScopeAnd):
        return all(matches_scope(part, scopes) for part in q.parts)
    if isinstance(q, ScopeOr):
        return any(matches_scope(part, scopes) for part in q.parts)
    return any(_matches_pattern(q, scope) for scope in scopes or ())


def _matches_pattern(pattern: ScopePattern, scope: str) -> bool:
    if pattern.matches_any:
        return True
    if scope.startswith("/") != pattern.rooted:
        return False
    levels = (scope[1:] if pattern.rooted else scope).split("/")
    wanted = len(pattern.levels)
    if len(levels) < wanted or (len(levels) > wanted and not pattern.descendants):
        return False
    return all(
        want == level or (want == _ANY_LEVEL and level != "")
        for want, level in zip(pattern.levels, levels, strict=False)
    )


def scope_to_sql(q: ScopeQuery, params: Params, alias: str = "e") -> str:
    """A boolean SQL expression over the entities row ``alias`` that holds when it matches ``q``."""
    if isinstance(q, ScopeAnd | ScopeOr):
        joiner = " AND " if isinstance(q, ScopeAnd) else " OR "
        return "(" + joiner.join(scope_to_sql(part, params, alias) for part in q.parts) + ")"
    column = f"{alias}.scopes"
    if q.matches_any:
        return f"({column} IS NOT NULL AND cardinality({column}) > 0)"
    text = ("/" if q.rooted else "") + "/".join(q.levels)
    if _ANY_LEVEL not in q.levels and not q.descendants:
        # Containment answers from the GIN index on scopes.
        return f"({column} IS NOT NULL AND {column} @> ARRAY[{params.add(text, 'text')}])"
    if _ANY_LEVEL not in q.levels:
        exact, below = params.add(text, "text"), params.add(text + "/", "text")
        test = f"(s.scope = {exact} OR starts_with(s.scope, {below}))"
    else:
        test = f"s.scope ~ {params.add(_regex(q), 'text')}"
    return f"EXISTS (SELECT 1 FROM unnest({column}) AS s(scope) WHERE {test})"


def _regex(pattern: ScopePattern) -> str:
    """A PostgreSQL regular expression matching exactly the scopes ``pattern`` matches."""
    levels = ["[^/]+" if level == _ANY_LEVEL else re.escape(level) for level in pattern.levels]
    prefix = "/" if pattern.rooted else ""
    suffix = "(/.*)?" if pattern.descendants else ""
    return f"^{prefix}{'/'.join(levels)}{suffix}$"
