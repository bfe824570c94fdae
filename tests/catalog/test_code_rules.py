"""catalog/ stays clean and checked: strict mypy, short modules and functions, no asserts."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "catalog"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[str, ast.Module, int]]:
    found = []
    for path in sorted(CATALOG.rglob("*.py")):
        text = path.read_text()
        found.append((str(path.relative_to(ROOT)), ast.parse(text), len(text.splitlines())))
    return found


def test_mypy_strict_reports_nothing() -> None:
    # The [tool.mypy] settings of pyproject.toml: strict for catalog.*.
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "catalog"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_modules_and_functions_stay_short() -> None:
    too_long = []
    for name, tree, lines in _modules():
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {size} lines")
    assert not too_long


def test_no_assert_statements() -> None:
    # python -O strips them: a check that matters has to raise by itself.
    asserts = [
        f"{name}:{node.lineno}"
        for name, tree, _ in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert)
    ]
    assert not asserts
