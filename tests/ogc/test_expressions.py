"""The style expressions map images evaluate (ogc/expressions.py), against what MapLibre's
specification says each gives."""

import pytest

from ogc.drawing import blend, colour
from ogc.expressions import Unsupported, evaluate, names


def test_lookups_comparisons_and_branches() -> None:
    props = {"crop": "maize", "n": 3, "organic": True, "gone": None}
    assert evaluate(["get", "crop"], props) == "maize"
    assert evaluate(["to-string", ["get", "n"]], props) == "3"
    assert evaluate(["to-string", ["get", "organic"]], props) == "true"
    assert evaluate(["typeof", ["get", "gone"]], props) == "null"
    assert evaluate(["==", ["get", "n"], 3], props) is True
    assert evaluate(["==", ["get", "organic"], 1], props) is False  # boolean is no number
    assert (
        evaluate(["match", ["get", "crop"], "wheat", "a", ["maize", "rye"], "b", "c"], props) == "b"
    )
    assert evaluate(["match", ["get", "crop"], "wheat", "a", "c"], props) == "c"
    assert evaluate(["case", ["get", "organic"], "yes", "no"], props) == "yes"
    assert evaluate(["case", [">", ["get", "n"], 5], "big", "small"], props) == "small"
    assert evaluate(["step", ["get", "n"], "low", 2, "mid", 10, "high"], props) == "mid"
    assert evaluate(["coalesce", ["get", "gone"], ["get", "crop"]], props) == "maize"
    assert evaluate(["all", ["get", "organic"], ["!", ["get", "gone"]]], props) is True
    assert names(["case", ["==", ["get", "a"], 1], ["get", "b"], "#fff"]) == {"a", "b"}


def test_interpolate_numbers_and_colours() -> None:
    ramp = ["interpolate", ["linear"], ["get", "v"], 0, "#000000", 10, "#ffffff"]
    mixed = colour(evaluate(ramp, {"v": 5}, blend))
    assert mixed == ((127, 127, 127), 1.0)
    assert evaluate(ramp, {"v": -4}, blend) == "#000000"
    assert evaluate(ramp, {"v": 40}, blend) == "#ffffff"
    assert evaluate(["interpolate", ["linear"], ["get", "v"], 0, 0, 10, 100], {"v": 2.5}) == 25
    with pytest.raises(Unsupported):
        evaluate(ramp, {"v": None}, blend)
    with pytest.raises(Unsupported):
        evaluate(["within", {"type": "Polygon"}], {})
