"""Imports flow one way: catalog <- tiler <- ogc <- server (STYLE.md section 1)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["catalog", "tiler", "ogc", "server"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", ORDER)
def test_no_reverse_imports(package: str) -> None:
    allowed = set(ORDER[: ORDER.index(package) + 1])
    forbidden = set(ORDER) - allowed
    for path in (ROOT / package).rglob("*.py"):
        bad = _imports(path) & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


# Inside catalog/: each sub-package imports only the ones before it in this order; the modules
# at catalog/'s top (errors, settings, geometry, timeparse, web) are for every sub-package.
CATALOG_ORDER = ["db", "accounts", "storage", "stac", "jobs", "maps", "ingest", "uploads"]


def _catalog_part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "catalog" or len(parts) < 2 or parts[1] not in CATALOG_ORDER:
        return None
    return parts[1]


def _catalog_imports(path: Path) -> set[str]:
    """The catalog sub-packages ``path`` imports (absolute and relative imports)."""
    package = path.relative_to(ROOT).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {part for name in names if (part := _catalog_part(name))}
    return found


@pytest.mark.parametrize("part", CATALOG_ORDER)
def test_catalog_sub_packages_import_one_way(part: str) -> None:
    allowed = set(CATALOG_ORDER[: CATALOG_ORDER.index(part) + 1])
    for path in (ROOT / "catalog" / part).rglob("*.py"):
        bad = _catalog_imports(path) - allowed
        assert not bad, f"{path.relative_to(ROOT)} imports catalog's {sorted(bad)}"
