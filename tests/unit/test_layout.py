"""The package's layout holds: production code never imports the testing helpers, and the top
level holds only the entry points (everything else lives in a subpackage named by its side)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "workers"
TOP_LEVEL = {"__init__.py", "app.py", "celery_defaults.py", "exceptions.py", "queue.py",
             "schedule.py", "py.typed"}  # fmt: skip


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_production_module_imports_the_testing_helpers() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in imported(path) if "workers.testing" in m)
        for path in PACKAGE.rglob("*.py")
        if "testing" not in path.relative_to(PACKAGE).parts
    }

    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_top_level_holds_only_entry_points_and_subpackages() -> None:
    files = {p.name for p in PACKAGE.iterdir() if p.is_file()}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}

    assert files == TOP_LEVEL
    assert folders == {"alarms", "cli", "config", "connections", "demo", "kafka", "metrics",
                       "ops", "pulling", "runtime", "stages", "state", "testing"}  # fmt: skip
    assert all((PACKAGE / folder / "__init__.py").exists() for folder in folders)
