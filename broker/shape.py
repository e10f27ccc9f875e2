"""Checking the shape of decoded JSON at the edge: typed members, lists of, enums of, with one error type.

A ``Check[T]`` takes a value and the name it goes by in messages, and returns the value as a
``T`` or raises. A ``Shape`` makes checks that raise its own error (BadRequestData for NGSI-LD
bodies; the IoT Agent API wraps it to carry its WRONG_SYNTAX name) and reads object members
with them, so every message has one form: "<name> must be ...", "<name> is required".

    shape = Shape(BadRequestData)
    name = shape.required(body, "name", shape.text())                  # str
    tags = shape.optional(body, "tags", shape.list_of(shape.text()))   # list[str] | None
    form = shape.optional(body, "format", shape.one_of(FORMS))         # Form | None

Parse, don't validate twice: the typed values a Shape returns are what the rest of the code uses.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

# A check: (value, the name it goes by in messages) -> the value, typed; raises when it is wrong.
Check = Callable[[Any, str], T]


def _nothing(_value: Any) -> bool:
    return False


class Shape:
    """Checks bound to the error they raise and to what a null member means."""

    def __init__(
        self,
        error: Callable[[str], Exception],
        *,
        is_null: Callable[[Any], bool] = _nothing,
        null_is_absent: bool = False,
    ) -> None:
        """``error(detail)`` is raised for every wrong value. A member that is None or for which
        ``is_null`` holds is refused ("must not be null"), unless ``null_is_absent``: then it
        counts as not given."""
        self._error = error
        self._is_null = is_null
        self._null_is_absent = null_is_absent

    def fail(self, detail: str) -> NoReturn:
        raise self._error(detail)

    # ------------------------------------------------------------------------------------ members

    def optional(self, obj: Mapping[str, Any], member: str, check: Check[T], prefix: str = "") -> T | None:
        """``check`` of ``obj[member]``, None when absent; named ``prefix + member`` in messages."""
        if member not in obj:
            return None
        value, what = obj[member], prefix + member
        if value is None or self._is_null(value):
            if self._null_is_absent:
                return None
            self.fail(f"{what} must not be null")
        return check(value, what)

    def required(self, obj: Mapping[str, Any], member: str, check: Check[T], prefix: str = "") -> T:
        """``check`` of ``obj[member]``; "<name> is required" when it is absent."""
        found = self.optional(obj, member, check, prefix)
        if found is None:
            self.fail(f"{prefix}{member} is required")
        return found

    def unknown(self, obj: Mapping[str, Any], known: Collection[str], where: str) -> None:
        """Refuse members other than ``known`` ("<where>: unknown member a, b")."""
        extra = sorted(set(obj) - set(known))
        if extra:
            self.fail(f"{where}: unknown member {', '.join(extra)}")

    # ------------------------------------------------------------------------------------ values

    def of_type(self, kind: type[T], noun: str) -> Check[T]:
        """A value of Python type ``kind`` ("<name> must be <noun>")."""

        def check(value: Any, what: str) -> T:
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                self.fail(f"{what} must be {noun}")
            return value

        return check

    def text(self, *, limit: int | None = None) -> Check[str]:
        """A non-empty string (of at most ``limit`` characters)."""

        def check(value: Any, what: str) -> str:
            if not isinstance(value, str) or not value:
                self.fail(f"{what} must be a non-empty string")
            if limit is not None and len(value) > limit:
                self.fail(f"{what} is longer than {limit} characters")
            return value

        return check

    def flag(self) -> Check[bool]:
        return self.of_type(bool, "true or false")

    def obj(self) -> Check[dict[str, Any]]:
        """A JSON object (its members unchecked: read them with ``required``/``optional``)."""

        def check(value: Any, what: str) -> dict[str, Any]:
            if not isinstance(value, dict):
                self.fail(f"{what} must be a JSON object")
            return value

        return check

    def number(
        self,
        *,
        unit: str = "",
        above: float | None = None,
        non_negative: bool = False,
        at_most: float | None = None,
    ) -> Check[float]:
        """A finite JSON number (not a boolean), greater than ``above`` or not negative, up to ``at_most``."""
        noun = f"a number of {unit}" if unit else "a number"

        def check(value: Any, what: str) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                self.fail(f"{what} must be {noun}")
            if above is not None and value <= above:
                bound = f"{above:g} {unit}".rstrip()
                self.fail(f"{what} must be greater than {bound}, got {value}")
            if non_negative and value < 0:
                self.fail(f"{what} must not be negative, got {value}")
            if at_most is not None and value > at_most:
                self.fail(f"{what} must be at most {at_most:g} {unit}".rstrip() + f", got {value}")
            return float(value)

        return check

    def list_of(self, item: Check[T], *, non_empty: bool = True) -> Check[list[T]]:
        """A JSON array whose entries pass ``item`` (named "<name>[i]")."""
        noun = "a non-empty array" if non_empty else "an array"

        def check(value: Any, what: str) -> list[T]:
            if not isinstance(value, list) or (non_empty and not value):
                self.fail(f"{what} must be {noun}")
            return [item(entry, f"{what}[{index}]") for index, entry in enumerate(value)]

        return check

    def one_of(self, allowed: Mapping[str, T]) -> Check[T]:
        """One of the strings ``allowed`` names, as the value it maps to."""

        def check(value: Any, what: str) -> T:
            if not isinstance(value, str) or value not in allowed:
                self.fail(f"{what} {value!r} is not one of {', '.join(allowed)}")
            return allowed[value]

        return check

    def enum_of(self, kind: type[E]) -> Check[E]:
        """A member of the enum ``kind``, given by its value."""
        return self.one_of({str(member.value): member for member in kind})

    def anything(self) -> Check[Any]:
        """Any value at all (a member whose presence alone matters, or checked later)."""
        return lambda value, _what: value
