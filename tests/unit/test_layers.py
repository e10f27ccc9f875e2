"""Imports between the broker's packages go one way (README design notes): a test, so a forbidden one fails.

Covered here: every package below the handlers (the device side's rules are in
test_adapter_imports.py). Only broker/app.py, the composition root, sees everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from broker.store.migrate import migration_files

BROKER = Path(__file__).resolve().parents[2] / "broker"

# package -> what none of its modules may import
ABOVE_ALL = ("broker.api", "broker.config", "broker.app", "adapters")
FORBIDDEN = {
    "store": ("broker.notify", "broker.temporal", "broker.ingest", *ABOVE_ALL),
    "notify": ("broker.temporal", "broker.ingest", *ABOVE_ALL),
    "mqtt": ("broker.store", "broker.notify", "broker.model", *ABOVE_ALL),
    "temporal": ("broker.notify", "broker.ingest", *ABOVE_ALL),
    "query": ("broker.store", "broker.notify", "broker.temporal", "broker.ingest", *ABOVE_ALL),
    "model": (
        "broker.store",
        "broker.notify",
        "broker.temporal",
        "broker.query",
        "broker.ingest",
        *ABOVE_ALL,
    ),
    "jsonld": ("broker.notify", "broker.temporal", "broker.ingest", *ABOVE_ALL),
    "forward": ("broker.notify", "broker.temporal", "broker.query", *ABOVE_ALL),
    "auth": ("broker.notify", "broker.temporal", "broker.ingest", "broker.query", *ABOVE_ALL),
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


def test_every_migration_has_a_version_of_its_own() -> None:
    # Two files of one version: the ledger records the version, so the second is never applied.
    versions = [version for version, _, _ in migration_files()]
    assert len(versions) == len(set(versions)), sorted(versions)
