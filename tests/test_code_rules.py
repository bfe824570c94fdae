"""House rules checked on the code: no module over 600 lines, no function over 60, no assert.

A function's length runs from its ``def`` line to its last line: decorators do not count,
nested functions and methods count on their own (and inside the function holding them).
ruff and mypy run in ``make test`` before pytest (Makefile).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["catalog", "tiler", "ogc", "server", "bench"]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


class _Functions(ast.NodeVisitor):
    """Every function and method of a module: (line, qualified name, length in lines)."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str, int]] = []
        self._scope: list[str] = []

    def _enter(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self._scope.append(node.name)
        if not isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            self.found.append((node.lineno, ".".join(self._scope), length))
        self.generic_visit(node)
        self._scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _enter


def oversized(path: Path) -> list[str]:
    """``file:line name length`` of the module and of each function over the limits."""
    text = path.read_text()
    where = path.relative_to(ROOT)
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{where}:1 (module) {lines}")
    functions = _Functions()
    functions.visit(ast.parse(text, filename=str(path)))
    for line, name, length in functions.found:
        if length > MAX_FUNCTION_LINES:
            found.append(f"{where}:{line} {name} {length}")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_and_functions_are_small(package: str) -> None:
    offenders = [o for path in sorted((ROOT / package).rglob("*.py")) for o in oversized(path)]
    assert not offenders, (
        f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function "
        f"({len(offenders)}):\n" + "\n".join(offenders)
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_no_assert_statements(package: str) -> None:
    # python -O strips them: a check that matters has to raise by itself.
    asserts = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert not asserts, "assert in production code (stripped under python -O):\n" + "\n".join(
        asserts
    )
