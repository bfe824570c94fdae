"""Bounds on the size of a search, checked before its costly work starts.

Parsing, validating and compiling a filter or a geometry run in Python, outside the database,
so PostgreSQL's statement timeout does not bound them: a 600 KB filter took seconds. Each
check here walks the request once, iteratively (no recursion on hostile nesting), and stops
at the first limit passed; the refusal names the setting (``limit``) and its value.
"""

import re
from collections.abc import Sized
from typing import Any

from catalog.errors import FilterTooLarge, GeometryTooLarge, InvalidParameter, TooManyValues
from catalog.geometry import GEOMETRY_TYPES
from catalog.settings import LimitSettings

_PREFIX = "TERRACAT_LIMITS_"


def _refuse(error: type[InvalidParameter], what: str, setting: str, maximum: int) -> None:
    raise error(f"{what}: the limit is {maximum}", limit=_PREFIX + setting.upper(),
                maximum=maximum)  # fmt: skip


def check_count(values: Sized | None, what: str, setting: str, limits: LimitSettings) -> None:
    """Refuse more ``values`` than the count limit named ``setting`` allows."""
    maximum: int = getattr(limits, setting)
    if values is not None and len(values) > maximum:
        _refuse(TooManyValues, f"too many {what} ({len(values)})", setting, maximum)


def check_vertices(geometry: Any, limits: LimitSettings, counted: int = 0) -> int:
    """Refuse a GeoJSON geometry (parsed) whose positions, with ``counted`` others already
    met, pass ``geometry_max_vertices``; the new total."""
    maximum = limits.geometry_max_vertices
    stack = [geometry]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.get(k) for k in ("coordinates", "geometries"))
        elif isinstance(node, list):
            if node and isinstance(node[0], int | float):
                counted += 1  # a position
                if counted > maximum:
                    _refuse(GeometryTooLarge, "too many vertices", "geometry_max_vertices",
                            maximum)  # fmt: skip
            else:
                stack.extend(node)
    return counted


def _is_node(value: Any) -> bool:
    return isinstance(value, dict) and ("op" in value or "property" in value)


def check_filter(expr: Any, limits: LimitSettings) -> None:
    """Refuse a CQL2-JSON filter over the node, depth, value or vertex limits.

    A node is an operator or function, a property, a literal or a list of values. The values
    in lists (IN, array literals) are bounded all together by ``filter_max_values``, the
    vertices of its geometries by ``geometry_max_vertices``. Depth counts nested operators
    and lists.
    """
    nodes = values = vertices = 0
    stack: list[tuple[Any, int]] = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > limits.filter_max_nodes:
            _refuse(FilterTooLarge, "filter has too many nodes", "filter_max_nodes",
                    limits.filter_max_nodes)  # fmt: skip
        container = isinstance(node, list) or (isinstance(node, dict) and "op" in node)
        if container and depth > limits.filter_max_depth:
            _refuse(FilterTooLarge, "filter is nested too deeply", "filter_max_depth",
                    limits.filter_max_depth)  # fmt: skip
        if isinstance(node, list):
            values += len(node)
            if values > limits.filter_max_values:
                _refuse(FilterTooLarge, "filter lists too many values", "filter_max_values",
                        limits.filter_max_values)  # fmt: skip
            # Values are leaves; properties and functions in a list are nodes of their own.
            stack.extend((v, depth + 1) for v in node if isinstance(v, list) or _is_node(v))
        elif isinstance(node, dict) and "op" in node:
            args = node.get("args")
            if isinstance(args, list):
                stack.extend((a, depth + 1) for a in args)
        elif isinstance(node, dict) and node.get("type") in GEOMETRY_TYPES:
            vertices = check_vertices(node, limits, vertices)


# -- CQL2 text: the parser's stack, bounded before it runs ----------------------------------
_TOKEN = re.compile(r"'(?:[^']|'')*'?|[()\[\],]|[<>=]+|[-+*/%^]|[^\s()\[\]'<>=+*/%^,-]+")
_WKT = {"POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON",
        "GEOMETRYCOLLECTION"}  # fmt: skip
_OPERATORS = {"NOT", "LIKE", "IN", "BETWEEN", "IS", "DIV", "+", "-", "*", "/", "%", "^"}
TEXT_PARSE_BUDGET = 4000  # ~2 MB of stack; cql2 overflows 8 MB near 16,000


def text_parse_cost(text: str) -> int:
    """An upper bound of the stack cql2 needs to parse ``text``, in ~0.5 KB units.

    The Rust parser recurses per bracket level and per operator, and a stack overflow is a
    segfault that kills the server, so costly text is refused before cql2 sees it. Measured
    on 8 MB: a bracket level costs ~11 units, NOT or a comparison ~5, AND/OR ~1 (flattened,
    so their operands are siblings: only operators between two AND/OR can stack).
    """
    junctions = depth = deepest = segment = longest = numbers = 0
    saved: list[tuple[int, bool, bool]] = []  # the enclosing level's state at each bracket
    in_wkt = between = False
    previous = ""
    for token in _TOKEN.findall(text):
        word = token.upper()
        numbers = 0 if token in "()[]," else numbers + (token[0] not in "-+*/%^")
        if token in ("(", "["):
            saved.append((segment, in_wkt, between))
            in_wkt, segment, between = in_wkt or previous in _WKT, 0, False
            depth += 1
            deepest = max(deepest, depth)
        elif token in (")", "]"):
            if saved:
                segment, in_wkt, between = saved.pop()
                depth -= 1
        elif word in ("AND", "OR") and not between:
            junctions, segment = junctions + 1, 0
        elif word in _OPERATORS or token[0] in "<>=" or word == "AND":
            # In WKT "1 -2" is a coordinate; past 3 numbers cql2 reads it as a function call.
            if not (in_wkt and token == "-" and numbers <= 3):
                segment += 1
                longest = max(longest, segment)
            between = word == "BETWEEN"
        if not (word == "Z" and previous in _WKT):  # POINT Z (...)
            previous = word
    return junctions + (deepest + 1) * (12 + 5 * longest)
