"""Bind parameters collected while SQL text is built."""

from __future__ import annotations

from typing import Any


class Params:
    """Collects values for $1, $2, ... in the order the SQL text asks for them."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any, cast: str | None = None) -> str:
        """Bind ``value`` and return its placeholder, e.g. ``$3`` or ``$3::numeric``."""
        self.values.append(value)
        placeholder = f"${len(self.values)}"
        return f"{placeholder}::{cast}" if cast else placeholder
