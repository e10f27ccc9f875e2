"""The device side imports the broker narrowly, and the broker knows it through one door (README design notes).

adapters/ may import from broker only the write path, the models, errors, the shared edge helpers
and shape kit, the clock, the supervisor, the term maps, the paho integration and the pool and
LISTEN infrastructure of the store; what else it needs (settings, app keys, the term-map resolver,
the redelivery-key housekeeping) the composition root gives it (adapters.keys.Host). In broker/,
only app.py imports adapters, and only adapters.wiring. Nothing installed imports the tests (the
simulators live there). SQL lives in the device side's store modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What adapters may import from the broker: a module, or a package and everything in it.
ALLOWED = (
    "broker.ingest",
    "broker.model",
    "broker.errors",
    "broker.edge",
    "broker.shape",
    "broker.clock",
    "broker.supervise",
    "broker.tasks",
    "broker.jsonld.context",
    "broker.mqtt",
    "broker.store.pool",
    "broker.store.listener",
    # The one set of transient database errors (retried, never dead-lettered).
    "broker.store.faults",
    # Counting device messages and dead letters where they are decided (Prometheus metrics).
    "broker.metrics",
    # The request id of an HTTP device message, carried into the notifications it causes.
    "broker.logs",
)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, ``from broker import edge`` counted as broker.edge."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}" for alias in node.names if node.module in ("broker", "adapters")
            )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def forbidden_broker_imports(path: Path) -> list[str]:
    """The broker modules ``path`` (an adapters module) imports outside ALLOWED."""
    wrong = []
    for name in sorted(imports_of(path)):
        # ``from broker import x`` also records "broker" itself: x is what is checked.
        if name != "broker" and _within(name, "broker") and not any(_within(name, ok) for ok in ALLOWED):
            wrong.append(name)
    return wrong


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_adapters_import_from_the_broker_only_its_narrow_interface() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules("adapters")
        for name in forbidden_broker_imports(path)
    ]
    assert not wrong, "\n".join(wrong)


def test_only_broker_app_imports_the_device_side_and_only_through_its_wiring() -> None:
    wrong = []
    for path in _modules("broker"):
        for name in sorted(imports_of(path)):
            if not _within(name, "adapters") or name == "adapters":
                continue
            if path != ROOT / "broker" / "app.py" or name != "adapters.wiring":
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", ["broker", "adapters"])
def test_nothing_installed_imports_the_tests_or_the_simulators(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in sorted(imports_of(path))
        if _within(name, "tests")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from broker.api.keys import POOL\n"
        "from broker import config, edge\n"
        "import broker.store.frames\n"
        "from broker.store.pool import Connection\n"
        "from broker.model.entity import Entity\n",
        encoding="utf-8",
    )
    assert forbidden_broker_imports(module) == ["broker.api.keys", "broker.config", "broker.store.frames"]


# The device side's store modules: the only ones that may hold SQL.
STORES = ("adapters/store", "adapters/provisioning/store.py")
_SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT INTO|UPDATE\s+\w+\s+SET|DELETE FROM)\b", re.DOTALL)


def sql_in(path: Path) -> list[str]:
    """The SQL statements written in ``path`` (string constants, docstrings aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value.split()[0] + " ..."
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and _SQL.search(node.value)
    ]


def test_the_device_side_writes_sql_only_in_its_store_modules() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: {statement}"
        for path in _modules("adapters")
        if not any(str(path.relative_to(ROOT)).startswith(store) for store in STORES)
        for statement in sql_in(path)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_sql_check_sees_a_statement_outside_a_docstring(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""Claims rows with SELECT ... FROM outbox FOR UPDATE."""\n'
        "async def f(conn):\n"
        '    await conn.execute("DELETE FROM dead_letters WHERE id = $1", 1)\n',
        encoding="utf-8",
    )
    assert sql_in(module) == ["DELETE ..."]
