"""Entity type selection (clause 4.17): ``A,B`` or ``A|B`` any of, ``A;B`` all of, parentheses.

Names are expanded with the request's TermMap while parsing, so the AST holds IRIs.
``;`` binds tighter than ``,`` and ``|`` (which mean the same: OR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broker.errors import BadRequestData, TooComplexQuery
from broker.jsonld.context import TermMap
from broker.model.parse import check_name
from broker.query.params import Params

MAX_LENGTH = 2048
MAX_NAMES = 100
_TOKEN = re.compile(r"\s*(?:([(),;|])|([^(),;|\s]+))")


@dataclass(frozen=True, slots=True)
class TypeName:
    iri: str


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[TypeExpr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[TypeExpr, ...]


TypeExpr = TypeName | AllOf | AnyOf


class _Parser:
    def __init__(self, text: str, tm: TermMap) -> None:
        self.tokens = _tokenize(text)
        self.position = 0
        self.tm = tm
        self.names = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def any_of(self) -> TypeExpr:
        parts = [self.all_of()]
        while self.peek() in (",", "|"):
            self.take()
            parts.append(self.all_of())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def all_of(self) -> TypeExpr:
        parts = [self.atom()]
        while self.peek() == ";":
            self.take()
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def atom(self) -> TypeExpr:
        token = self.peek()
        if token is None:
            raise BadRequestData("type expression ends where a type name was expected")
        if token == "(":
            self.take()
            inner = self.any_of()
            if self.peek() != ")":
                raise BadRequestData("type expression: missing ')'")
            self.take()
            return inner
        if token in "),;|":
            raise BadRequestData(f"type expression: unexpected {token!r}")
        self.names += 1
        if self.names > MAX_NAMES:
            raise TooComplexQuery(f"type expression names more than {MAX_NAMES} types")
        return TypeName(self.tm.expand(check_name(self.take(), "entity type")))


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                raise BadRequestData(f"type expression: unexpected text at {position}")
            break
        tokens.append(match.group(1) or match.group(2))
        position = match.end()
    return tokens


def parse_type_expr(text: str, tm: TermMap) -> TypeExpr:
    """Parse the 'type' parameter; BadRequestData when it is malformed."""
    if len(text) > MAX_LENGTH:
        raise TooComplexQuery(f"type expression longer than {MAX_LENGTH} characters")
    parser = _Parser(text, tm)
    if not parser.tokens:
        raise BadRequestData("type expression is empty")
    expr = parser.any_of()
    if parser.peek() is not None:
        raise BadRequestData(f"type expression: unexpected {parser.peek()!r}")
    return expr


def type_to_sql(expr: TypeExpr, params: Params, alias: str = "e") -> str:
    """SQL over ``alias.types`` that the GIN index on types can serve."""
    if isinstance(expr, TypeName):
        return f"{alias}.types @> {params.add([expr.iri], 'text[]')}"
    names = [p.iri for p in expr.parts if isinstance(p, TypeName)]
    if len(names) == len(expr.parts):
        operator = "&&" if isinstance(expr, AnyOf) else "@>"
        return f"{alias}.types {operator} {params.add(names, 'text[]')}"
    joiner = " OR " if isinstance(expr, AnyOf) else " AND "
    return "(" + joiner.join(type_to_sql(p, params, alias) for p in expr.parts) + ")"


def matches_type(expr: TypeExpr, types: list[str]) -> bool:
    """Python evaluation of a type expression (for subscriptions)."""
    if isinstance(expr, TypeName):
        return expr.iri in types
    if isinstance(expr, AnyOf):
        return any(matches_type(p, types) for p in expr.parts)
    return all(matches_type(p, types) for p in expr.parts)
