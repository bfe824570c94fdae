"""A small evaluator of MapLibre style expressions, for the colours of map images.

Enough for data-driven colours as styles write them (and as ``color_by`` generates them):
``get``, ``literal``, ``to-string``, ``to-number``, ``typeof``, comparisons, ``!``, ``all``,
``any``, ``case``, ``match``, ``coalesce``, ``step`` and ``interpolate`` (linear, over numbers
or colours). Anything else raises ``Unsupported``: the caller then draws the collection's own
colour, as MapLibre would draw something rather than nothing.
"""

from collections.abc import Callable
from typing import Any


class Unsupported(ValueError):
    """An expression this evaluator does not know."""


def names(expr: Any) -> set[str]:
    """The properties an expression reads (``["get", name]``)."""
    found: set[str] = set()
    if isinstance(expr, list) and expr:
        if expr[0] == "get" and len(expr) == 2 and isinstance(expr[1], str):
            found.add(expr[1])
        for arg in expr[1:]:
            found |= names(arg)
    return found


def _typeof(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b and _typeof(a) == _typeof(b),
    "!=": lambda a, b: not (a == b and _typeof(a) == _typeof(b)),
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def evaluate(expr: Any, props: dict[str, Any], blend: Callable[..., Any] | None = None) -> Any:
    """The value of ``expr`` for a feature with ``props``; ``blend(a, b, t)`` mixes two
    outputs of ``interpolate`` that are not numbers (colours)."""
    if not isinstance(expr, list) or not expr or not isinstance(expr[0], str):
        return expr
    op, args = expr[0], expr[1:]

    def ev(value: Any) -> Any:
        return evaluate(value, props, blend)

    if op == "literal":
        return args[0]
    if op == "get":
        return props.get(ev(args[0]))
    if op == "to-string":
        return _to_string(ev(args[0]))
    if op == "to-number":
        value = ev(args[0])
        return float(value) if value is not None and not isinstance(value, bool) else 0.0
    if op == "typeof":
        return _typeof(ev(args[0]))
    if op in _COMPARE:
        a, b = ev(args[0]), ev(args[1])
        try:
            return _COMPARE[op](a, b)
        except TypeError:
            return False
    if op == "!":
        return not ev(args[0])
    if op in ("all", "any"):
        results = (bool(ev(arg)) for arg in args)
        return all(results) if op == "all" else any(results)
    if op == "coalesce":
        return next((v for v in map(ev, args) if v is not None), None)
    if op == "case":
        for condition, output in zip(args[:-1:2], args[1:-1:2], strict=True):
            if ev(condition):
                return ev(output)
        return ev(args[-1])
    if op == "match":
        value = ev(args[0])
        for label, output in zip(args[1:-1:2], args[2:-1:2], strict=True):
            if value in (label if isinstance(label, list) else [label]):
                return ev(output)
        return ev(args[-1])
    if op == "step":
        value, output = ev(args[0]), ev(args[1])
        for stop, then in zip(args[2::2], args[3::2], strict=True):
            if value is None or value < stop:
                break
            output = ev(then)
        return output
    if op == "interpolate":
        return _interpolate(args, ev, blend)
    raise Unsupported(f"expression {op!r}")


def _interpolate(args: list[Any], ev: Callable[[Any], Any], blend: Any) -> Any:
    value = ev(args[1])
    stops = list(zip(args[2::2], args[3::2], strict=True))
    if not isinstance(value, int | float) or isinstance(value, bool) or not stops:
        raise Unsupported("interpolate of a missing or non-numeric input")
    if value <= stops[0][0]:
        return ev(stops[0][1])
    for (x0, out0), (x1, out1) in zip(stops, stops[1:], strict=False):
        if value <= x1:
            t = (value - x0) / (x1 - x0) if x1 > x0 else 1.0
            a, b = ev(out0), ev(out1)
            if isinstance(a, int | float) and isinstance(b, int | float):
                return a + (b - a) * t
            if blend is None:
                raise Unsupported("interpolate between values that are not numbers")
            return blend(a, b, t)
    return ev(stops[-1][1])


__all__ = ["Unsupported", "evaluate", "names"]
