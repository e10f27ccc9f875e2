"""Imports between the broker's packages go one way (README design notes): a test, so a forbidden one fails.

Covered here: the store and the pure layers below the handlers. The store's imports of
broker.notify (outbox rows, channel names) are the notifier's to move down and are not checked yet.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BROKER = Path(__file__).resolve().parents[2] / "broker"

# package -> what none of its modules may import
FORBIDDEN = {
    "store": ("broker.temporal", "broker.api", "broker.config", "broker.app", "adapters"),
    "temporal": ("broker.config", "broker.api", "broker.app", "adapters"),
    "query": ("broker.store", "broker.temporal", "broker.api", "broker.config", "adapters"),
    "model": ("broker.store", "broker.temporal", "broker.api", "broker.config", "broker.query", "adapters"),
    "jsonld": ("broker.api", "broker.config", "broker.temporal", "adapters"),
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_it(package: str) -> None:
    wrong = []
    for path in sorted((BROKER / package).rglob("*.py")):
        for name in sorted(imports_of(path)):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[package]):
                wrong.append(f"{path.relative_to(BROKER.parent)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from broker.temporal.render import x\nimport broker.api.keys\n", encoding="utf-8")
    assert imports_of(module) == {"broker.temporal.render", "broker.api.keys"}
