"""The layers of the notification side hold: store below notify, notify below api, broker.mqtt above nothing.

Read from the source (no import needed), so a forbidden import fails here before it can
form a cycle: design.md's "broker never imports adapters", and issue 18's "no import from
store/ up into notify/".
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BROKER = Path(__file__).resolve().parents[2] / "broker"


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("store", ("broker.notify", "broker.api", "adapters")),
        ("notify", ("broker.api", "adapters")),
        ("mqtt", ("broker.notify", "broker.api", "broker.store", "adapters")),
    ],
)
def test_a_package_imports_nothing_from_the_layers_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    offending = {
        f"{path.relative_to(BROKER.parent)} imports {name}"
        for path in sorted((BROKER / package).glob("*.py"))
        for name in imported(path)
        if name.startswith(forbidden)
    }
    assert offending == set()
