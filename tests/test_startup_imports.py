"""An API worker starts without the libraries only datacubes and vector ingest use.

rio-tiler imports xarray whenever it is installed, and xarray pandas and pyarrow; pyogrio
brings its own GDAL and pandas: together ~150 MB in every worker (catalog/lazy_imports.py).
Checked in a fresh interpreter, as uvicorn starts one.
"""

import json
import subprocess
import sys

HEAVY = (
    "xarray",
    "rioxarray",
    "pandas",
    "pyarrow",
    "pyogrio",
    "zarr",
    "h5py",
    "h5netcdf",
    "obstore",
    "PIL",
    "geopic_tag_reader",
    "pillow_heif",
    "httpx",  # its CLI brings rich and pygments; only a URL download uses it
    "rich",
)

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


_USE = """
import sys
import catalog  # defers xarray and rioxarray
import rioxarray  # noqa: F401  (the stand-in: runs nothing)
import numpy as np
import xarray as xr
assert type(sys.modules["xarray"]).__name__ == "_Deferred"
data = xr.DataArray(np.zeros((2, 2)), dims=("y", "x"), coords={"x": [0.5, 1.5], "y": [1.5, 0.5]})
print(data.rio.write_crs("EPSG:32631").rio.crs)
"""

_SUBMODULE = """
import catalog  # defers xarray and rioxarray
import xarray as xr
from rioxarray.exceptions import MissingSpatialDimensionError  # a submodule of a stand-in
try:
    xr.Dataset({"a": (("t", "q"), [[0.0]])}).rio.width
except MissingSpatialDimensionError:
    print("caught")
"""


def test_a_deferred_library_runs_on_first_use_with_its_companion() -> None:
    # xarray's first attribute read runs it, and rioxarray with it: the .rio accessor is there.
    out = subprocess.run([sys.executable, "-c", _USE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "EPSG:32631"


def test_a_submodule_of_a_deferred_package_runs_once() -> None:
    # Run twice, its exception classes would differ from those the package raises.
    out = subprocess.run(
        [sys.executable, "-c", _SUBMODULE], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "caught"
