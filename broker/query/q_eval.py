"""The q language evaluated on one entity in Python: the reference semantics of clause 4.9.

``q_sql`` translates the same AST to SQL and must select exactly the entities
``matches_q`` accepts (the round-trip tests check this on random data); the
notifier will use ``matches_q`` to match subscriptions on each change.

What a term looks at. The attribute path picks *target elements*: every instance
of the attribute (any datasetId), or, along ``attr.sub``, the sub-attributes of
those instances. In each element the target value is the member its type names
(``value``, ``object``, ``vocab``, ``languageMap``, ...), or the metadata member
ending the path (``speed.observedAt``), followed into JSON objects by a trailing
path (``address[city]``; a missing key means the element has no target). The
*candidates* are that value, or its elements when it is an array; for a
LanguageProperty without a trailing path, the texts of every language. An array
inside that array is looked into too (one level, as SQL/JSON path's lax mode does).

How a term matches: when ANY element satisfies it.
  - ``==`` (and lists, ranges): some candidate equals (is in the list, lies in the range);
  - ``!=``: the element has a target and NO candidate equals (clause 4.9: values of
    another type are unequal, so they satisfy ``!=``);
  - ``> >= < <=``: some candidate of the query value's type compares so;
  - ``~=``: some string candidate matches; ``!~=``: the element has string candidates
    and none matches (a target that is not a string matches neither, clause 4.9);
  - Relationships and ListRelationships only take part in ``==`` and ``!=``; their
    objects, LanguageProperty texts and VocabProperty IRIs are strings, so only
    string and URI values are compared with them. Vocab values compare with the
    query value expanded by the @context.
Types compare only with their own kind: numbers numerically (exact decimals, as
PostgreSQL does), strings by code point, booleans by equality, DateTimes as instants
(a string or ``{"@type": "DateTime", "@value": ...}``; no offset means UTC), Dates and
Times as such. Anything else (a string against a number, a JSON object) does not compare.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any, assert_never

from broker.jsonld.context import TermMap
from broker.model.entity import VALUE_MEMBER, Entity
from broker.query.qlang import (
    And,
    Bool,
    Compare,
    Date,
    DateTime,
    Exists,
    Number,
    Op,
    Or,
    Path,
    Pattern,
    QExpr,
    Range,
    Scalar,
    Text,
    Time,
    Uri,
    ValueList,
)
from broker.query.qregex import Regex

RELATIONSHIP_TYPES = frozenset({"Relationship", "ListRelationship"})
# Types whose target values are always strings (validated on ingest).
STRING_TYPES = RELATIONSHIP_TYPES | {"LanguageProperty", "VocabProperty"}
DATETIME_TAGS = ("DateTime", "ngsi-ld:DateTime", "https://uri.etsi.org/ngsi-ld/DateTime")
DATE_TAGS = ("Date", "ngsi-ld:Date", "https://uri.etsi.org/ngsi-ld/Date")
TIME_TAGS = ("Time", "ngsi-ld:Time", "https://uri.etsi.org/ngsi-ld/Time")

# Which stored strings are dates: calendar-exact patterns (no 2026-02-30, no year 0000, offsets up
# to 14:59) written in the syntax both engines share, so that PostgreSQL's casts after a match
# cannot fail and both sides agree on what is a date.
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_LEAP = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = (
    f"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    f"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP}-02-29)"
)
_CLOCK = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]{1,6})?"
DATETIME_SHAPE = f"{_DATE}T{_CLOCK}(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?"
DATE_SHAPE = _DATE
TIME_SHAPE = f"{_CLOCK}Z?"
OFFSET_SHAPE = "(?:Z|[+-][0-9]{2}:[0-9]{2})"  # ends a DateTime that carries its offset

_DATETIME_RE = re.compile(DATETIME_SHAPE)
_DATE_RE = re.compile(DATE_SHAPE)
_TIME_RE = re.compile(TIME_SHAPE)
_ORDER: dict[Op, Callable[[Any, Any], bool]] = {
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
}
_MISSING = object()


def matches_q(expr: QExpr, entity: Entity, tm: TermMap) -> bool:
    """True when ``entity`` satisfies the q expression (names expanded with ``tm``)."""
    match expr:
        case And(parts):
            return all(matches_q(part, entity, tm) for part in parts)
        case Or(parts):
            return any(matches_q(part, entity, tm) for part in parts)
        case Exists(path, negated):
            return _exists(entity, path, tm) != negated
        case Compare(path, op, operand):
            return any(_compare(el, path, op, operand, tm) for el in target_elements(entity, path, tm))
        case Pattern(path, regex, negated):
            return any(_pattern(el, path, regex, negated) for el in target_elements(entity, path, tm))
        case _:
            assert_never(expr)


def target_elements(entity: Entity, path: Path, tm: TermMap) -> list[dict[str, Any]]:
    """The instances (or sub-attribute instances) the path names, all datasetIds."""
    items: list[Any] = list(_unwrap([entity.attrs.get(tm.expand(path.attr), [])]))
    for sub in path.subs:
        key = tm.expand(sub)
        items = [obj[key] for obj in _unwrap(items) if isinstance(obj, dict) and key in obj]
    return [obj for obj in _unwrap(items) if isinstance(obj, dict)]


def _unwrap(items: Iterable[Any]) -> Iterable[Any]:
    """Arrays replaced by their elements, one level (as SQL/JSON path's lax mode does)."""
    for item in items:
        if isinstance(item, list):
            yield from item
        else:
            yield item


def element_kind(element: dict[str, Any], path: Path) -> str | None:
    """The attribute type whose rules apply to the target (None for a metadata member)."""
    kind = element.get("type")
    return None if path.meta is not None else kind if isinstance(kind, str) else ""


def _target(element: dict[str, Any], path: Path) -> Any:
    """The target value in one element, or _MISSING."""
    if path.meta is not None:
        return element.get(path.meta, _MISSING)
    member = VALUE_MEMBER.get(element_kind(element, path) or "")
    value = _MISSING if member is None else element.get(member, _MISSING)
    for key in path.keys:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _candidates(kind: str | None, path: Path, value: Any) -> list[Any]:
    """The values a target offers: itself or its elements, and the elements of arrays within it."""
    if kind == "LanguageProperty" and not path.keys:
        return list(_unwrap(_unwrap(value.values()))) if isinstance(value, dict) else []
    return list(_unwrap(_unwrap([value])))


def _exists(entity: Entity, path: Path, tm: TermMap) -> bool:
    if not path.subs and path.meta is None and not path.keys:
        return tm.expand(path.attr) in entity.attrs
    elements = target_elements(entity, path, tm)
    if path.meta is None and not path.keys:
        return bool(elements)
    return any(_target(el, path) is not _MISSING for el in elements)


def considers(kind: str | None, item: Scalar) -> bool:
    """Whether targets of attribute type ``kind`` are compared with ``item`` at all."""
    return kind not in STRING_TYPES or isinstance(item, Text | Uri)


def _compare(
    element: dict[str, Any], path: Path, op: Op, operand: Scalar | Range | ValueList, tm: TermMap
) -> bool:
    value = _target(element, path)
    if value is _MISSING:
        return False
    kind = element_kind(element, path)
    cands = _candidates(kind, path, value)
    vocab = tm if kind == "VocabProperty" else None
    if op in (Op.EQ, Op.NE):
        found = any(_equals(c, operand, kind, vocab) for c in cands)
        return found if op is Op.EQ else not found
    if kind in RELATIONSHIP_TYPES:
        return False
    assert not isinstance(operand, Range | ValueList)  # the parser allows them after == and != only
    if not considers(kind, operand):
        return False
    wanted = _query_value(operand, vocab)
    return any((got := _as_kind(c, operand)) is not None and _ORDER[op](got, wanted) for c in cands)


def _equals(cand: Any, operand: Scalar | Range | ValueList, kind: str | None, vocab: TermMap | None) -> bool:
    match operand:
        case ValueList(items):
            return any(_equals(cand, item, kind, vocab) for item in items)
        case Range(low, high):
            got = _as_kind(cand, low)
            return (
                considers(kind, low)
                and got is not None
                and bool(_query_value(low, vocab) <= got <= _query_value(high, vocab))
            )
        case _:
            got = _as_kind(cand, operand)
            return considers(kind, operand) and got is not None and got == _query_value(operand, vocab)


def _query_value(item: Scalar, vocab: TermMap | None) -> Any:
    if isinstance(item, Text | Uri):
        return vocab.expand(item.value) if vocab is not None else item.value
    return item.value


def _as_kind(cand: Any, like: Scalar) -> Any:
    """``cand`` as a value of the same kind as the query value ``like``, or None."""
    match like:
        case Number():
            if isinstance(cand, bool) or not isinstance(cand, int | float):
                return None
            return Decimal(repr(cand)) if isinstance(cand, float) else Decimal(cand)
        case Text() | Uri():
            return cand if isinstance(cand, str) else None
        case Bool():
            return cand if isinstance(cand, bool) else None
        case DateTime():
            return as_datetime(cand)
        case Date():
            text = _tagged_text(cand, DATE_TAGS)
            return date.fromisoformat(text) if text is not None and _DATE_RE.fullmatch(text) else None
        case Time():
            text = _tagged_text(cand, TIME_TAGS)
            if text is None or not _TIME_RE.fullmatch(text):
                return None
            return time.fromisoformat(text.removesuffix("Z"))
        case _:
            assert_never(like)


def as_datetime(cand: Any) -> datetime | None:
    """A stored DateTime (plain string or @type/@value object) as an aware datetime, else None."""
    text = _tagged_text(cand, DATETIME_TAGS)
    if text is None or not _DATETIME_RE.fullmatch(text):
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _tagged_text(cand: Any, tags: tuple[str, ...]) -> str | None:
    if isinstance(cand, str):
        return cand
    if isinstance(cand, dict) and cand.get("@type") in tags and isinstance(cand.get("@value"), str):
        return str(cand["@value"])
    return None


def _pattern(element: dict[str, Any], path: Path, regex: Regex, negated: bool) -> bool:
    value = _target(element, path)
    kind = element_kind(element, path)
    if value is _MISSING or kind in RELATIONSHIP_TYPES:
        return False
    texts = [c for c in _candidates(kind, path, value) if isinstance(c, str)]
    compiled = _compile(regex.python, regex.ignore_case)
    found = any(compiled.search(text) for text in texts)
    return bool(texts) and not found if negated else found


@lru_cache(maxsize=512)
def _compile(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
