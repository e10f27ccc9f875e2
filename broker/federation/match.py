"""Which registrations a request, a query (5.10.2) or a registration subscription (5.11) concerns.

Registrations of a tenant are few (one per source and kind of data), so they are compared
here in Python rather than in SQL: every comparison is the overlap rule of clause 4.3.6,
registration information against the entities and attributes asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, assert_never

from broker.errors import AlreadyExists, NotImplementedYet
from broker.federation.model import EntityInfo, Mode, Registration
from broker.jsonld.context import TermMap
from broker.notify.model import EntitySelector, Subscription
from broker.query.geo import GeoQuery
from broker.query.geo_eval import matches_geo
from broker.query.qlang import (
    And,
    Bool,
    Compare,
    Exists,
    Number,
    Op,
    Or,
    Pattern,
    QExpr,
    Range,
    Text,
    Uri,
    ValueList,
)
from broker.query.types import TypeExpr, matches_type


def lookup(
    registrations: Iterable[Registration],
    entity_id: str | None,
    types: Iterable[str] | None,
    attrs: Iterable[str] | None,
    operation: str | None,
    now: datetime,
) -> list[Registration]:
    """The unexpired registrations that may answer ``operation`` for the entity and attributes
    (names expanded; None: any id, any type, every attribute), in id order."""
    wanted_types = frozenset(types) if types is not None else None
    wanted_attrs = frozenset(attrs) if attrs is not None else None
    return sorted(
        (
            r
            for r in registrations
            if not r.expired(now) and r.matches(entity_id, wanted_types, wanted_attrs, operation)
        ),
        key=lambda r: r.id,
    )


@dataclass(frozen=True, slots=True)
class RegistrationQuery:
    """The selection of Query CSourceRegistrations (clause 5.10.2); names expanded."""

    ids: frozenset[str] | None = None
    id_pattern: re.Pattern[str] | None = None
    types: TypeExpr | None = None
    attrs: frozenset[str] | None = None
    geo: GeoQuery | None = None
    q: QExpr | None = None
    csf: QExpr | None = None

    def selects(self, registration: Registration, tm: TermMap) -> bool:
        if self.geo is not None and (
            registration.location is None or not matches_geo(self.geo, registration.location)
        ):
            return False
        if self.q is not None and not matches_simple_q(self.q, dict(registration.properties), tm.expand):
            return False
        if self.csf is not None and not matches_simple_q(
            self.csf, dict(registration.context_source_info), lambda name: name
        ):
            return False
        return any(
            info.covers(self.attrs)
            and (not self._entities_asked() or any(self._selects(e) for e in info.entities or (None,)))
            for info in registration.information
        )

    def _entities_asked(self) -> bool:
        return self.ids is not None or self.id_pattern is not None or self.types is not None

    def _selects(self, entity: EntityInfo | None) -> bool:
        """An EntityInfo (None: the registration names no entities, so any) against id/idPattern/type."""
        if entity is None:
            return True
        if self.types is not None and not matches_type(self.types, sorted(entity.types)):
            return False
        return _ids_overlap(entity, self.ids, self.id_pattern)


def _ids_overlap(entity: EntityInfo, ids: frozenset[str] | None, pattern: re.Pattern[str] | None) -> bool:
    """Whether an EntityInfo may hold one of ``ids`` or an id matching ``pattern`` (None: any).

    Two patterns are taken to overlap: telling whether two regular expressions share a
    string is more than a registry needs to decide.
    """
    if ids is not None:
        return any(entity.selects(entity_id, None) for entity_id in ids)
    if pattern is not None and entity.id is not None:
        return pattern.fullmatch(entity.id) is not None
    return True


def subscription_selects(subscription: Subscription, registration: Registration) -> bool:
    """Whether a registration subscription (clause 5.11) concerns ``registration``: its entities
    overlap the registration's, watchedAttributes its attribute names, geoQ its location, q its
    properties."""
    if subscription.geo is not None and (
        registration.location is None or not matches_geo(subscription.geo, registration.location)
    ):
        return False
    if subscription.q is not None and not matches_simple_q(
        subscription.q, dict(registration.properties), subscription.tm.expand
    ):
        return False
    return any(
        info.covers(subscription.watched)
        and (
            not subscription.entities
            or not info.entities
            or any(_selector_overlaps(s, e) for s in subscription.entities for e in info.entities)
        )
        for info in registration.information
    )


def _selector_overlaps(selector: EntitySelector, entity: EntityInfo) -> bool:
    if selector.types is not None and not matches_type(selector.types, sorted(entity.types)):
        return False
    return _ids_overlap(entity, selector.ids, selector.id_pattern)


def check_conflicts(candidate: Registration, others: Sequence[Registration], now: datetime) -> None:
    """4.3.6.3: an exclusive registration's entity ids and attributes belong to it alone.

    AlreadyExists (409) when ``candidate`` is exclusive and another unexpired non-auxiliary
    registration may provide one of its attributes of one of its entities, or when ``candidate``
    (not auxiliary) may provide what an exclusive one holds.
    """
    for other in others:
        if other.id == candidate.id or other.expired(now):
            continue
        exclusive, rival = (candidate, other) if candidate.mode is Mode.EXCLUSIVE else (other, candidate)
        if exclusive.mode is not Mode.EXCLUSIVE or rival.mode is Mode.AUXILIARY:
            continue
        for info in exclusive.information:
            for entity in info.entities:
                if rival.matches(entity.id, entity.types, info.attributes):
                    raise AlreadyExists(
                        f"registration {other.id} ({other.mode}) already covers attributes of entity"
                        f" {entity.id} that an exclusive registration holds alone (clause 4.3.6.3)"
                    )


# -------------------------------------------------------------------------- q and csf, where simple


def check_simple_q(expr: QExpr, what: str) -> QExpr:
    """A q (or csf) this broker evaluates on registrations: comparisons and existence of top-level
    members with numbers, texts, URIs or booleans; NotImplementedYet (501) for the rest."""
    match expr:
        case And(parts) | Or(parts):
            for part in parts:
                check_simple_q(part, what)
        case Exists(path) | Compare(path) | Pattern(path):
            if path.subs or path.meta or path.keys:
                raise NotImplementedYet(f"{what} on registrations: dotted or bracketed paths are not offered")
            if isinstance(expr, Compare) and not _simple_operand(expr.operand):
                raise NotImplementedYet(
                    f"{what} on registrations compares with numbers, texts and booleans only"
                )
    return expr


def _simple_operand(operand: Any) -> bool:
    if isinstance(operand, Range):
        return _simple_operand(operand.low) and _simple_operand(operand.high)
    if isinstance(operand, ValueList):
        return all(_simple_operand(item) for item in operand.items)
    return isinstance(operand, Number | Text | Uri | Bool)


def matches_simple_q(expr: QExpr, values: Mapping[str, Any], name: Any) -> bool:
    """``expr`` (checked by ``check_simple_q``) on ``values`` keyed by names as ``name`` expands them."""
    match expr:
        case And(parts):
            return all(matches_simple_q(part, values, name) for part in parts)
        case Or(parts):
            return any(matches_simple_q(part, values, name) for part in parts)
        case Exists(path, negated):
            return (name(path.attr) in values) != negated
        case Pattern(path, regex, negated):
            value = values.get(name(path.attr))
            if not isinstance(value, str):
                return False
            flags = re.DOTALL | (re.IGNORECASE if regex.ignore_case else 0)
            return (re.search(regex.python, value, flags) is not None) != negated
        case Compare(path, op, operand):
            key = name(path.attr)
            return key in values and _compare(values[key], op, operand)
        case _:
            assert_never(expr)


def _compare(value: Any, op: Op, operand: Any) -> bool:
    if isinstance(operand, Range):
        low, high = _scalar(operand.low), _scalar(operand.high)
        inside = _ordered(value, low, Op.GE) and _ordered(value, high, Op.LE)
        return inside if op is Op.EQ else not inside
    if isinstance(operand, ValueList):
        found = any(_same(value, _scalar(item)) for item in operand.items)
        return found if op is Op.EQ else not found
    target = _scalar(operand)
    if op is Op.EQ:
        return _same(value, target)
    if op is Op.NE:
        return not _same(value, target)
    return _ordered(value, target, op)


def _scalar(operand: Any) -> Any:
    """The value of a Number, Text, Uri or Bool (check_simple_q let no other through)."""
    return operand.value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:  # inf, nan
        return None


def _same(value: Any, target: Any) -> bool:
    if isinstance(target, Decimal):
        return _number(value) == target
    if isinstance(value, list):
        return any(_same(item, target) for item in value)
    return bool(value == target) and type(value) is type(target)


def _ordered(value: Any, target: Any, op: Op) -> bool:
    if isinstance(target, Decimal):
        left: Any = _number(value)
    elif isinstance(target, str) and isinstance(value, str):
        left = value
    else:
        return False
    if left is None:
        return False
    result: bool = {Op.GT: left > target, Op.GE: left >= target, Op.LT: left < target, Op.LE: left <= target}[
        op
    ]
    return result
