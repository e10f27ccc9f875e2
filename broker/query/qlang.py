"""The NGSI-LD Query Language (ETSI GS CIM 009 V1.9.1 clause 4.9): q text -> a small sealed AST.

A hand-written recursive-descent parser over the q text; the scanner methods read
one token at a time because what a token is depends on where it stands (an
attribute path, a value, a regular expression). Grammar, with ``;`` binding
tighter than ``|`` as clause 4.9 requires::

    query    = or EOF
    or       = and *("|" and)
    and      = primary *(";" primary)
    primary  = "(" or ")" / term
    term     = "!" path / path [op operand]
    path     = name *("." name) *("[" key *("." key) "]")     ; a trailing metadata name:
                                                                ; speed.observedAt
    operand  = item *("," item) / item ".." item (after == and !=)
             / item (after > >= < <=) / regex (after ~= and !~=)
    item     = number / "string" / true / false / DateTime / Date / Time / URI

Beyond clause 4.9: ``!attr`` (non-existence), ``attr[a][b]`` as well as ``attr[a.b]``,
unquoted regular expressions (up to the next ``;``, ``|`` or ``)``) and blanks
between tokens. Linked-entity paths (``attr{...}``) are rejected.

Errors raise BadRequestData naming the character where parsing stopped (1-based);
queries beyond the limits below raise TooComplexQuery (403).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import TypeAlias

import orjson

from broker.errors import BadRequestData, TooComplexQuery
from broker.query.qregex import Regex, translate_regex

MAX_LENGTH = 4096  # characters of q text
MAX_DEPTH = 8  # nested parentheses
MAX_TERMS = 32  # query terms in one q
MAX_LIST_ITEMS = 64  # values in one value list
MAX_PATH_SEGMENTS = 8  # names and keys in one attribute path
# Members of an attribute instance a dotted path may end with (speed.observedAt).
META_MEMBERS = frozenset({"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"})


class Op(enum.Enum):
    EQ = "=="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="


@dataclass(frozen=True, slots=True)
class Path:
    """An attribute path as written (compact names; the translators expand them)."""

    attr: str
    subs: tuple[str, ...] = ()  # sub-attribute names after the first
    meta: str | None = None  # a metadata member ending the dotted path
    keys: tuple[str, ...] = ()  # trailing path into a JSON value (or a languageMap)


@dataclass(frozen=True, slots=True)
class Number:
    text: str  # as written: the exact decimal handed to PostgreSQL
    value: Decimal


@dataclass(frozen=True, slots=True)
class Text:
    value: str


@dataclass(frozen=True, slots=True)
class Uri:
    """An unquoted URI; compares as a string, like a quoted one."""

    value: str


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool


@dataclass(frozen=True, slots=True)
class DateTime:
    value: datetime  # timezone-aware; a DateTime written without offset is UTC


@dataclass(frozen=True, slots=True)
class Date:
    value: date


@dataclass(frozen=True, slots=True)
class Time:
    value: time  # UTC time of day, without tzinfo


Scalar: TypeAlias = Number | Text | Uri | Bool | DateTime | Date | Time


@dataclass(frozen=True, slots=True)
class Range:
    low: Scalar
    high: Scalar


@dataclass(frozen=True, slots=True)
class ValueList:
    items: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    path: Path
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Compare:
    path: Path
    op: Op
    operand: Scalar | Range | ValueList


@dataclass(frozen=True, slots=True)
class Pattern:
    path: Path
    regex: Regex
    negated: bool = False


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[QExpr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[QExpr, ...]


QExpr: TypeAlias = And | Or | Exists | Compare | Pattern

_OPERATORS = ("==", "!=", ">=", ">", "<=", "<", "~=", "!~=")
_ORDERED = (Number, Text, DateTime, Date, Time)  # what > >= < <= and ranges accept
_BLANKS = " \t\r\n"
_BARE_STOP = frozenset(';|),"' + _BLANKS)
_QUOTED = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z?")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\"<>\\^`{}\s]+")
_MAX_EXPONENT = 1000  # keeps numbers inside what PostgreSQL's numeric accepts


def parse_q(text: str) -> QExpr:
    """Parse a q parameter into its AST; raise BadRequestData or TooComplexQuery."""
    if len(text) > MAX_LENGTH:
        raise TooComplexQuery(f"q is longer than {MAX_LENGTH} characters")
    for index, char in enumerate(text):
        if char == "\x00" or "\ud800" <= char <= "\udfff":
            raise BadRequestData(f"q: character {index + 1} is not allowed in a query")
    return _Parser(text).query()


def _is_term_char(char: str) -> bool:
    return char.isalpha() or char == "_" or unicodedata.category(char)[0] == "N"


class _Parser:
    """One parse of one q text; ``pos`` is the index of the next character to read."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.terms = 0

    # ------------------------------------------------------------------ grammar

    def query(self) -> QExpr:
        expr = self._or()
        self._blanks()
        if self.pos < len(self.text):
            what = "')' without '('" if self._peek() == ")" else "';', '|' or the end of q"
            raise self._error(f"expected {what}")
        return expr

    def _or(self) -> QExpr:
        parts = [self._and()]
        while self._eat("|"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def _and(self) -> QExpr:
        parts = [self._primary()]
        while self._eat(";"):
            parts.append(self._primary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def _primary(self) -> QExpr:
        self._blanks()
        if not self._eat("("):
            return self._term()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TooComplexQuery(f"q nests parentheses deeper than {MAX_DEPTH}")
        expr = self._or()
        if not self._eat(")"):
            raise self._error("expected ')'")
        self.depth -= 1
        return expr

    def _term(self) -> QExpr:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise TooComplexQuery(f"q has more than {MAX_TERMS} query terms")
        if self._peek() == "!" and not self.text.startswith(("!=", "!~="), self.pos):
            self.pos += 1
            return Exists(self._path(), negated=True)
        path = self._path()
        self._blanks()
        op = self._operator()
        if op is None:
            return Exists(path)
        self._blanks()
        if op in ("~=", "!~="):
            return Pattern(path, self._regex(), negated=op == "!~=")
        operator = Op(op)
        start = self.pos
        if operator in (Op.EQ, Op.NE):
            return Compare(path, operator, self._operand())
        value = self._item()
        if not isinstance(value, _ORDERED):
            raise self._error(f"{op} compares numbers, strings, dates and times only", start)
        return Compare(path, operator, value)

    def _operand(self) -> Scalar | Range | ValueList:
        start = self.pos
        first = self._item()
        if self.text.startswith("..", self.pos):
            self.pos += 2
            second = self._item()
            if not isinstance(first, _ORDERED) or type(first) is not type(second):
                raise self._error("a range needs two numbers, strings, dates or times of one kind", start)
            return Range(first, second)
        if self._peek() != ",":
            return first
        items = [first]
        while self._eat(","):
            items.append(self._item())
            if len(items) > MAX_LIST_ITEMS:
                raise TooComplexQuery(f"a q value list has more than {MAX_LIST_ITEMS} values")
        return ValueList(tuple(items))

    # ------------------------------------------------------------------ paths

    def _path(self) -> Path:
        start = self.pos
        names = [self._name()]
        while self._peek() == "." and not self.text.startswith("..", self.pos):
            self.pos += 1
            names.append(self._name())
        keys: list[str] = []
        while self._eat_here("["):
            keys.append(self._key())
            while self._eat_here("."):
                keys.append(self._key())
            if not self._eat_here("]"):
                raise self._error("expected ']'")
        if self._peek() == "{":
            raise self._error("linked-entity queries (attr{...}) are not supported")
        if len(names) + len(keys) > MAX_PATH_SEGMENTS:
            raise TooComplexQuery(f"an attribute path has more than {MAX_PATH_SEGMENTS} segments")
        meta = names.pop() if len(names) > 1 and names[-1] in META_MEMBERS else None
        if meta is not None and keys:
            raise self._error(f"{meta} is a metadata member and has no members of its own", start)
        if any(name in META_MEMBERS for name in names[1:]):
            raise self._error("a metadata member can only end a dotted path", start)
        return Path(names[0], tuple(names[1:]), meta, tuple(keys))

    def _name(self) -> str:
        """AttrName, optionally prefixed (prefix:name) as clause 4.6.2 allows."""
        start = self.pos
        self._word("an attribute name")
        if self._peek() == ":":
            self.pos += 1
            self._word("a name after the prefix")
        return self.text[start : self.pos]

    def _word(self, what: str) -> None:
        if not self._peek().isalpha():
            raise self._error(f"expected {what} (starting with a letter)")
        while self.pos < len(self.text) and _is_term_char(self.text[self.pos]):
            self.pos += 1

    def _key(self) -> str:
        """A member name in a trailing path: letters, digits and _ - @ $ : (not starting with a digit)."""
        start = self.pos
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if not (_is_term_char(char) or char in "-@$:"):
                break
            self.pos += 1
        key = self.text[start : self.pos]
        if not key or key[0].isdigit() or key[0] == "-":
            raise self._error("expected a member name", start)
        return key

    # ------------------------------------------------------------------ values

    def _operator(self) -> str | None:
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        char = self._peek()
        if char and char not in ";|)":
            raise self._error("expected an operator (== != > >= < <= ~= !~=), ';', '|' or ')'")
        return None

    def _item(self) -> Scalar:
        start = self.pos
        if self._peek() == '"':
            return Text(self._quoted())
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_STOP:
            if self.text.startswith("..", self.pos):
                break
            self.pos += 1
        bare = self.text[start : self.pos]
        if not bare:
            raise self._error("expected a value")
        value = self._classify(bare, start)
        if value is None:
            raise self._error(f"{bare!r} is not a value (strings are written in double quotes)", start)
        return value

    def _classify(self, bare: str, start: int) -> Scalar | None:
        if bare in ("true", "false"):
            return Bool(bare == "true")
        try:
            if _NUMBER.fullmatch(bare):
                number = Decimal(bare)
                if abs(number.adjusted()) > _MAX_EXPONENT:
                    raise ValueError("number out of range")
                return Number(bare, number)
            if _DATETIME.fullmatch(bare):
                moment = datetime.fromisoformat(bare)
                return DateTime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
            if _DATE.fullmatch(bare):
                return Date(date.fromisoformat(bare))
            if _TIME.fullmatch(bare):
                return Time(time.fromisoformat(bare.removesuffix("Z")))
        except ValueError as exc:
            raise self._error(f"{bare!r} is not a valid value: {exc}", start) from None
        return Uri(bare) if _URI.fullmatch(bare) else None

    def _quoted(self) -> str:
        match = _QUOTED.match(self.text, self.pos)
        if match is None:
            raise self._error("unterminated or invalid string (JSON string syntax)")
        self.pos = match.end()
        value: str = orjson.loads(match.group())
        if any("\ud800" <= char <= "\udfff" or char == "\x00" for char in value):
            raise self._error("the string holds a character that is not allowed", match.start())
        return value

    def _raw_quoted(self) -> str:
        """A quoted regular expression: backslashes are the regex's own, only \\" stands for "."""
        start = self.pos
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            pair = self.text[self.pos : self.pos + 2]
            out.append('"' if pair == '\\"' else pair if char == "\\" else char)
            self.pos += len(pair) if char == "\\" else 1
        raise self._error("unterminated regular expression (missing closing quote)", start)

    def _regex(self) -> Regex:
        start = self.pos
        if self._peek() == '"':
            source = self._raw_quoted()
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in ";|)" + _BLANKS:
                self.pos += 1
            source = self.text[start : self.pos]
            if not source:
                raise self._error("expected a regular expression")
        try:
            return translate_regex(source)
        except ValueError as exc:
            raise self._error(f"invalid regular expression: {exc}", start) from None

    # ------------------------------------------------------------------ scanning

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _BLANKS:
            self.pos += 1

    def _eat(self, token: str) -> bool:
        """Consume ``token`` after optional blanks."""
        self._blanks()
        return self._eat_here(token)

    def _eat_here(self, token: str) -> bool:
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def _error(self, message: str, at: int | None = None) -> BadRequestData:
        where = self.pos if at is None else at
        shown = orjson.dumps(self.text[where : where + 12]).decode()
        found = f"at {shown}" if where < len(self.text) else "at the end"
        return BadRequestData(f"invalid q at character {where + 1} ({found}): {message}")
