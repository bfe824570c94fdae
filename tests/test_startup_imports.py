"""An API worker starts without the libraries only datacubes and vector ingest use.

rio-tiler imports xarray whenever it is installed, and xarray pandas and pyarrow; pyogrio
brings its own GDAL and pandas: together ~150 MB in every worker (catalog/lazy_imports.py).
Checked in a fresh interpreter, as uvicorn starts one.
"""

import json
import subprocess
import sys

import numpy as np

HEAVY = ("xarray", "rioxarray", "pandas", "pyarrow", "pyogrio", "zarr", "h5py", "h5netcdf")

_SCRIPT = """
import json, sys
from server.app import create_app
create_app()
loaded = [m for m in {heavy!r} if type(sys.modules.get(m)).__name__ == "module"]
print(json.dumps(loaded))
"""


def test_create_app_imports_no_datacube_or_ingest_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env={"DATABASE_URL": "postgresql://terracat@127.0.0.1:1/none", "PATH": "/usr/bin"},
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_deferred_library_works_once_used() -> None:
    from catalog.lazy_imports import load

    xr = load("xarray")
    load("rioxarray")
    data = xr.DataArray(np.zeros((2, 2)), dims=("y", "x"),
                        coords={"x": [0.5, 1.5], "y": [1.5, 0.5]})  # fmt: skip
    assert str(data.rio.write_crs("EPSG:32631").rio.crs) == "EPSG:32631"
