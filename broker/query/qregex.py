"""Regular expressions in q (clause 4.9): a portable subset, translated for PostgreSQL and Python.

Clause 4.9 asks for POSIX regular expressions. PostgreSQL (~, ARE flavour) and Python's re
differ on many corners (\b, $ before a final newline, [[:alpha:]], backreferences, Unicode
classes), and q_eval must agree with q_sql on every match. So only a portable subset is
accepted and rewritten for both engines: literals, . ^ $, [...] (ranges, negation),
(...) and (?:...), |, * + ? {m} {m,} {m,n} (n <= 255, lazy forms too), \\d \\w \\s \\D \\W \\S as
ASCII classes, \n \t \r \f \v, a backslash before any ASCII punctuation, and a leading (?i).
A quantifier on a group that itself repeats or alternates ((a+)+, (a|a)*) is refused: such
patterns backtrack exponentially in Python's engine, which will also match subscriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broker.errors import TooComplexQuery

MAX_REGEX_LENGTH = 256  # characters of one regular expression


@dataclass(frozen=True, slots=True)
class Regex:
    """A regular expression of the portable subset, as written and translated for each engine."""

    source: str
    python: str  # for re.search with re.DOTALL (| re.IGNORECASE)
    postgres: str  # for PostgreSQL's ~ (~* when ignore_case)
    ignore_case: bool


_END = "\x00$"  # marks $: PostgreSQL keeps it, Python needs \Z (its $ also matches before a final \n)
_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_", "s": " \\t\\n\\r\\f\\v"}
_CHAR_ESCAPES = frozenset("ntrfv")
_MAX_REPEAT = 255  # PostgreSQL's RE_DUP_MAX


def translate_regex(source: str) -> Regex:
    """Check ``source`` against the portable subset; raise ValueError (or TooComplexQuery)."""
    if len(source) > MAX_REGEX_LENGTH:
        raise TooComplexQuery(f"a q regular expression is longer than {MAX_REGEX_LENGTH} characters")
    ignore_case = source.startswith("(?i)")
    reader = _RegexReader(source, 4 if ignore_case else 0)
    pieces = reader.read()
    python = "".join(r"\Z" if piece == _END else piece for piece in pieces)
    postgres = "".join("$" if piece == _END else piece for piece in pieces)
    try:
        re.compile(python, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
    except re.error as exc:  # not expected for the subset; keep the promise of BadRequestData
        raise ValueError(str(exc)) from None
    return Regex(source, python, postgres, ignore_case)


def _escaped(char: str) -> str:
    """A literal character, escaped when it is ASCII punctuation (portable in and out of [...])."""
    return "\\" + char if char.isascii() and char.isprintable() and not char.isalnum() else char


class _RegexReader:
    def __init__(self, source: str, pos: int) -> None:
        self.src = source
        self.pos = pos

    def read(self) -> list[str]:
        pieces, _ = self._alternation()
        if self.pos < len(self.src):
            raise self._fail("')' without '('")
        return pieces

    def _fail(self, message: str) -> ValueError:
        return ValueError(f"{message} at its character {self.pos + 1}")

    def _alternation(self) -> tuple[list[str], bool]:
        """Pieces of branches separated by |, and whether they repeat or alternate."""
        pieces, repeats = self._sequence()
        while self.pos < len(self.src) and self.src[self.pos] == "|":
            self.pos += 1
            more, _ = self._sequence()
            pieces += ["|", *more]
            repeats = True
        return pieces, repeats

    def _sequence(self) -> tuple[list[str], bool]:
        pieces: list[str] = []
        repeats = False
        while self.pos < len(self.src) and self.src[self.pos] not in "|)":
            atom, inner_repeats, quantifiable = self._atom()
            quantifier = self._quantifier()
            if quantifier:
                if not quantifiable:
                    raise self._fail("nothing to repeat")
                if inner_repeats:
                    raise TooComplexQuery("a q regular expression repeats a group that repeats or alternates")
                repeats = True
            repeats = repeats or inner_repeats
            pieces += [*atom, quantifier]
        return pieces, repeats

    def _atom(self) -> tuple[list[str], bool, bool]:
        """(pieces, contains repetition, may be quantified) of the atom at pos."""
        char = self.src[self.pos]
        self.pos += 1
        if char == "(":
            if self.src.startswith("?:", self.pos):
                self.pos += 2
            elif self.src.startswith("?", self.pos):
                raise self._fail("only (...), (?:...) and a leading (?i) are supported")
            inner, repeats = self._alternation()
            if self.pos >= len(self.src) or self.src[self.pos] != ")":
                raise self._fail("missing ')'")
            self.pos += 1
            return ["(?:", *inner, ")"], repeats, True
        if char == "[":
            return [self._bracket()], False, True
        if char in "^$":
            return ["^" if char == "^" else _END], False, False
        if char == ".":
            return ["."], False, True
        if char == "\\":
            return [self._escape(in_bracket=False)], False, True
        if char in "*+?{":
            self.pos -= 1
            raise self._fail("nothing to repeat")
        if char in "]}":
            self.pos -= 1
            raise self._fail(f"write a literal {char} as \\{char}")
        return [_escaped(char)], False, True

    def _escape(self, *, in_bracket: bool) -> str:
        if self.pos >= len(self.src):
            raise self._fail("trailing backslash")
        char = self.src[self.pos]
        self.pos += 1
        if char.lower() in _CLASS_ESCAPES:
            inner = _CLASS_ESCAPES[char.lower()]
            if in_bracket and char.isupper():
                raise self._fail(f"\\{char} is not supported inside [...]")
            if in_bracket:
                return inner
            return f"[^{inner}]" if char.isupper() else f"[{inner}]"
        if char in _CHAR_ESCAPES:
            return "\\" + char
        if char.isascii() and not char.isalnum():
            return "\\" + char
        raise self._fail(f"unsupported escape \\{char}")

    def _quantifier(self) -> str:
        if self.pos >= len(self.src) or self.src[self.pos] not in "*+?{":
            return ""
        start = self.pos
        if self.src[self.pos] == "{":
            match = re.compile(r"\{([0-9]{1,3})(,([0-9]{1,3})?)?\}").match(self.src, self.pos)
            if match is None:
                raise self._fail("expected {m}, {m,} or {m,n}")
            low, high = int(match.group(1)), match.group(3)
            if low > _MAX_REPEAT or (high is not None and not low <= int(high) <= _MAX_REPEAT):
                raise self._fail(f"repetition counts must satisfy m <= n <= {_MAX_REPEAT}")
            self.pos = match.end()
        else:
            self.pos += 1
        if self.pos < len(self.src) and self.src[self.pos] == "?":
            self.pos += 1  # lazy: same yes/no answer, so accepted
        if self.pos < len(self.src) and self.src[self.pos] in "*+?{":
            raise self._fail("a quantifier cannot follow a quantifier")
        return self.src[start : self.pos]

    def _bracket(self) -> str:
        out = ["["]
        if self.pos < len(self.src) and self.src[self.pos] == "^":
            out.append("^")
            self.pos += 1
        first = True
        while True:
            if self.pos >= len(self.src):
                raise self._fail("missing ']'")
            char = self.src[self.pos]
            if char == "]" and not first:
                self.pos += 1
                return "".join([*out, "]"])
            first = False
            out.append(self._bracket_item())

    def _bracket_item(self) -> str:
        low = self._bracket_char()
        if low is None:  # a class escape such as \d
            self.pos += 1
            return self._escape(in_bracket=True)
        at_range = self.src.startswith("-", self.pos) and not self.src.startswith("-]", self.pos)
        if not at_range:
            return _escaped(low)
        self.pos += 1
        high = self._bracket_char()
        if high is None or ord(high) < ord(low):
            raise self._fail("invalid range in [...]")
        return f"{_escaped(low)}-{_escaped(high)}"

    def _bracket_char(self) -> str | None:
        """The literal character at pos (consumed), or None before a class escape (not consumed)."""
        if self.pos >= len(self.src):
            raise self._fail("missing ']'")
        char = self.src[self.pos]
        if char == "[":
            raise self._fail("write a literal [ inside [...] as \\[")
        if char == "]":
            raise self._fail("write a literal ] inside [...] as \\]")
        if char != "\\":
            self.pos += 1
            return char
        following = self.src[self.pos + 1 : self.pos + 2]
        if following.lower() in _CLASS_ESCAPES:
            return None
        self.pos += 1
        escape = self._escape(in_bracket=True)
        return {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\f": "\f", "\\v": "\v"}.get(escape, escape[-1])
