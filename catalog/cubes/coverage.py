"""CoverageJSON of a datacube's layers at a point or over an area (OGC API - EDR answers).

``position``: the pixel holding the point, every time step of the interval (domain type
``PointSeries``, x/y the point as asked in lon/lat). ``area``: the window of the area's
bounds on the cube's own grid (domain type ``Grid``: pixel centres in the cube's CRS, the time
steps), values null outside the area (centre-inside, as the time series), where nodata, or
where the quality mask leaves them out. Layers and masks are those of the time series
(catalog/cubes/layers.py).
"""

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS

from .model import Cube
from .series import Selection

COVJSON = "application/prs.coverage+json"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def _stamp(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _values(array: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in array.ravel().tolist()]


def _parameters(cube: Cube, names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        layer = cube.layer(name)
        parameter: dict[str, Any] = {
            "type": "Parameter",
            "description": {"en": (layer.description if layer else None) or name},
            "observedProperty": {"id": name, "label": {"en": name}},
        }
        if layer is not None and layer.unit:
            parameter["unit"] = {"symbol": layer.unit}
        out[name] = parameter
    return out


def _crs_system(cube: Cube) -> dict[str, Any]:
    crs = CRS.from_user_input(cube.crs)
    epsg = crs.to_epsg()
    if epsg == 4326:
        return {"type": "GeographicCRS", "id": CRS84}
    kind = "GeographicCRS" if crs.is_geographic else "ProjectedCRS"
    if epsg is not None:
        return {"type": kind, "id": f"http://www.opengis.net/def/crs/EPSG/0/{epsg}"}
    return {"type": kind, "wkt": crs.to_wkt()}


def _time_system() -> dict[str, Any]:
    return {"coordinates": ["t"], "system": {"type": "TemporalRS", "calendar": "Gregorian"}}


def position_coverage(cube: Cube, selection: Selection, lon: float, lat: float) -> dict[str, Any]:
    """The PointSeries coverage of the selection's single pixel."""
    names = list(selection.layers)
    steps = len(selection.times)
    return {
        "type": "Coverage",
        "domain": {
            "type": "Domain",
            "domainType": "PointSeries",
            "axes": {
                "x": {"values": [lon]},
                "y": {"values": [lat]},
                "t": {"values": [_stamp(t) for t in selection.times]},
            },
            "referencing": [
                {"coordinates": ["x", "y"], "system": {"type": "GeographicCRS", "id": CRS84}},
                _time_system(),
            ],
        },  # fmt: skip
        "parameters": _parameters(cube, names),
        "ranges": {
            name: {
                "type": "NdArray",
                "dataType": "float",
                "axisNames": ["t"],
                "shape": [steps],
                "values": _values(values.values.reshape(steps)),
            }
            for name, values in selection.layers.items()
        },  # fmt: skip
    }


def area_coverage(cube: Cube, selection: Selection) -> dict[str, Any]:
    """The Grid coverage of the selection's window (null outside the area)."""
    transform = Affine.from_gdal(*cube.transform)
    window = selection.window
    cols = np.arange(window.cols.start, window.cols.stop) + 0.5
    rows = np.arange(window.rows.start, window.rows.stop) + 0.5
    xs = (transform.c + transform.a * cols).tolist()
    ys = (transform.f + transform.e * rows).tolist()
    shape = [len(selection.times), len(ys), len(xs)]
    return {
        "type": "Coverage",
        "domain": {
            "type": "Domain",
            "domainType": "Grid",
            "axes": {
                "x": {"values": xs},
                "y": {"values": ys},
                "t": {"values": [_stamp(t) for t in selection.times]},
            },
            "referencing": [
                {"coordinates": ["x", "y"], "system": _crs_system(cube)},
                _time_system(),
            ],
        },  # fmt: skip
        "parameters": _parameters(cube, list(selection.layers)),
        "ranges": {
            name: {
                "type": "NdArray",
                "dataType": "float",
                "axisNames": ["t", "y", "x"],
                "shape": shape,
                "values": _values(values.values),
            }
            for name, values in selection.layers.items()
        },  # fmt: skip
    }


__all__ = ["COVJSON", "area_coverage", "position_coverage"]
