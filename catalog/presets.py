"""The one table of band presets: indices and composites as formulas of band common names.

The tiler renders them over a STAC item's bands (tiler/presets.py resolves common names to
asset bands there); datacube layers (catalog/cubes/layers.py) evaluate the same formulas over
named arrays with ``evaluate_formula``. Bands are found by common name; ``ALIASES`` widens a few
(``nir`` also matches ``nir08``), and ``SENTINEL2_BANDS`` gives the common names of the usual
Sentinel-2 band ids, for cubes whose variables are named ``B04``, ``B08``...
"""

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ALIASES: dict[str, tuple[str, ...]] = {
    "nir": ("nir", "nir08"),
    "rededge": ("rededge", "rededge071", "rededge075", "rededge078"),
}
SENTINEL2_BANDS: dict[str, str] = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge071",
    "B06": "rededge075", "B07": "rededge078", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}  # fmt: skip
# Other names a preset answers to: the Spatio-Temporal API's ``agriculture``.
PRESET_ALIASES: dict[str, str] = {"agriculture": "agri"}


@dataclass(frozen=True)
class Preset:
    """A named rendering: output bands as formulas of common names, rescale and colormap."""

    name: str
    title: str
    formulas: tuple[str, ...]  # one per output band, over {common_name} placeholders
    bands: tuple[str, ...]  # the common names the formulas use
    rescale: tuple[float, float] | None = None  # None: each band's own statistics
    colormap: str | None = None

    @property
    def is_index(self) -> bool:
        """One output band (an index such as NDVI), not a composite."""
        return len(self.formulas) == 1


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("ndvi", "Normalized difference vegetation index", ("({nir}-{red})/({nir}+{red})",),
               ("nir", "red"), (-1.0, 1.0), "rdylgn"),
        Preset("ndmi", "Normalized difference moisture index",
               ("({nir}-{swir16})/({nir}+{swir16})",), ("nir", "swir16"), (-1.0, 1.0), "brbg"),
        Preset("ndre", "Normalized difference red edge index",
               ("({nir}-{rededge})/({nir}+{rededge})",), ("nir", "rededge"), (-1.0, 1.0),
               "rdylgn"),
        Preset("gndvi", "Green normalized difference vegetation index",
               ("({nir}-{green})/({nir}+{green})",), ("nir", "green"), (-1.0, 1.0), "rdylgn"),
        Preset("evi", "Enhanced vegetation index",
               ("2.5*({nir}-{red})/({nir}+6*{red}-7.5*{blue}+1)",), ("nir", "red", "blue"),
               (-1.0, 1.0), "rdylgn"),
        Preset("rgb", "True colour", ("{red}", "{green}", "{blue}"), ("red", "green", "blue")),
        Preset("cir", "Colour infrared", ("{nir}", "{red}", "{green}"), ("nir", "red", "green")),
        Preset("agri", "Agriculture (SWIR, NIR, blue)", ("{swir16}", "{nir}", "{blue}"),
               ("swir16", "nir", "blue")),
        Preset("swir", "Short-wave infrared (SWIR2, NIR, red)", ("{swir22}", "{nir}", "{red}"),
               ("swir22", "nir", "red")),
    )
}  # fmt: skip


def find_preset(name: str) -> Preset | None:
    """The preset called ``name`` (any case, or one of its ``PRESET_ALIASES``), or None."""
    key = name.lower()
    return PRESETS.get(PRESET_ALIASES.get(key, key))


def common_name_of(name: str, common_name: str | None = None) -> str | None:
    """A band's common name: its own, else the one of its Sentinel-2 id (``B8A``: nir08)."""
    return common_name or SENTINEL2_BANDS.get(name.upper())


class FormulaError(ValueError):
    """A formula that is not arithmetic of names and numbers, or names an unknown value."""


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
MAX_FORMULA_LENGTH = 2048


def evaluate_formula(formula: str, values: Mapping[str, Any]) -> Any:
    """``formula`` (``+ - * /``, parentheses, numbers, names of ``values``) over ``values``.

    The values are arrays (numpy, xarray): the arithmetic is theirs, so an xarray result keeps
    its coordinates. Nothing but that arithmetic runs: no calls, attributes or subscripts.
    """
    if len(formula) > MAX_FORMULA_LENGTH:
        raise FormulaError(f"formulas are at most {MAX_FORMULA_LENGTH} characters")
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"not a formula: {formula[:80]!r}") from exc
    return _node(tree.body, values)


def formula_names(formula: str) -> list[str]:
    """The names a formula uses, in order of first use."""
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"not a formula: {formula[:80]!r}") from exc
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    return list(dict.fromkeys(names))


def _node(node: ast.AST, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_node(node.left, values), _node(node.right, values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _node(node.operand, values)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise FormulaError(f"unknown name {node.id!r} (known: {sorted(values)})")
        return values[node.id]
    raise FormulaError(f"only + - * /, numbers and names: not {ast.unparse(node)[:40]!r}")


def formula_text(formula: str, names: Mapping[str, str]) -> str:
    """``formula`` checked as ``evaluate_formula`` checks it, written again with each name
    replaced by ``names[name]``: an expression numexpr evaluates (the same arithmetic)."""
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"not a formula: {formula[:80]!r}") from exc
    return _text(tree.body, names)


_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _text(node: ast.AST, names: Mapping[str, str]) -> str:
    if isinstance(node, ast.BinOp) and type(node.op) in _SYMBOLS:
        left, right = _text(node.left, names), _text(node.right, names)
        return f"({left} {_SYMBOLS[type(node.op)]} {right})"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return f"({'-' if isinstance(node.op, ast.USub) else '+'}{_text(node.operand, names)})"
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return repr(float(node.value))  # type: ignore[arg-type]
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise FormulaError(f"unknown name {node.id!r} (known: {sorted(names)})")
        return names[node.id]
    raise FormulaError(f"only + - * /, numbers and names: not {ast.unparse(node)[:40]!r}")


__all__ = [
    "ALIASES",
    "PRESETS",
    "PRESET_ALIASES",
    "SENTINEL2_BANDS",
    "FormulaError",
    "Preset",
    "common_name_of",
    "evaluate_formula",
    "formula_text",
    "find_preset",
    "formula_names",
]
