"""Small synthetic datacubes for tests, with values known from a formula.

- ``s2_cube``: Sentinel-2-like, one variable per band (B02..B12), dims (time, y, x), UTM 31N
  (EPSG:32631), 10 m pixels, ``times`` dates five days apart; ``s2_value`` gives any cell.
- ``model_cube``: lat/lon model output (EPSG:4326), ``t2m`` and ``precip``, hourly times.
- ``write_zarr`` / ``write_netcdf``: the cube as a Zarr store (v2 or v3, consolidated or not)
  or a NetCDF4 file, as clients produce them (xarray + rioxarray, CF grid mapping).
"""

import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

S2_BANDS = ("B02", "B03", "B04", "B05", "B08", "B8A", "B11", "B12")
S2_ORIGIN = (600_000.0, 5_000_000.0)  # west, north (EPSG:32631)
S2_START = "2024-03-01"


def s2_value(
    band: int, t: np.ndarray | int, y: np.ndarray | int, x: np.ndarray | int
) -> np.ndarray:
    """Reflectance of band index ``band`` at time index ``t``, row ``y``, column ``x``."""
    return np.asarray(
        0.05 * (band + 1) + 0.001 * np.asarray(x) + 0.002 * np.asarray(y) + 0.003 * np.asarray(t),
        dtype=np.float32,
    )


def s2_cube(size: int = 64, times: int = 40, bands: tuple[str, ...] = S2_BANDS) -> xr.Dataset:
    """The Sentinel-2-like cube: ``times`` x ``size`` x ``size`` per band, float32."""
    west, north = S2_ORIGIN
    x = west + 5 + 10 * np.arange(size)
    y = north - 5 - 10 * np.arange(size)
    time = pd.date_range(S2_START, periods=times, freq="5D")
    t, yy, xx = np.meshgrid(np.arange(times), np.arange(size), np.arange(size), indexing="ij")
    data = {
        name: (("time", "y", "x"), s2_value(i, t, yy, xx), {"units": "1"})
        for i, name in enumerate(bands)
    }
    ds = xr.Dataset(data, coords={"time": time, "y": y, "x": x})
    return ds.rio.write_crs("EPSG:32631")


def model_cube(nlat: int = 32, nlon: int = 48, times: int = 6) -> xr.Dataset:
    """A lat/lon model-output cube: ``t2m`` (K) and ``precip`` (mm), 0.25 degree cells."""
    lat = 50.0 - 0.125 - 0.25 * np.arange(nlat)
    lon = 2.0 + 0.125 + 0.25 * np.arange(nlon)
    time = pd.date_range("2025-01-01T00:00", periods=times, freq="6h")
    t, la, lo = np.meshgrid(np.arange(times), lat, lon, indexing="ij")
    t2m = (270.0 + t + 0.1 * lo - 0.1 * la).astype(np.float32)
    precip = (0.5 * t + 0.01 * lo).astype(np.float32)
    ds = xr.Dataset(
        {
            "t2m": (("time", "latitude", "longitude"), t2m, {"units": "K"}),
            "precip": (("time", "latitude", "longitude"), precip, {"units": "mm"}),
        },
        coords={"time": time, "latitude": lat, "longitude": lon},
    )
    return ds.rio.set_spatial_dims("longitude", "latitude").rio.write_crs("EPSG:4326")


def write_zarr(
    ds: xr.Dataset,
    path: Path,
    *,
    zarr_format: int = 3,
    consolidated: bool = True,
    chunks: dict[str, int] | None = None,
) -> Path:
    """``ds`` as a Zarr store at ``path`` (chunked per time step, the whole grid, by default)."""
    encoding = {}
    for name, var in ds.data_vars.items():
        wanted = {"time": 1, **(chunks or {})}
        chunked = tuple(wanted.get(d, n) for d, n in zip(var.dims, var.shape, strict=True))
        encoding[name] = {**var.encoding, "chunks": chunked}  # keeps rioxarray's grid_mapping
    with warnings.catch_warnings():
        # consolidated v3 metadata is zarr-python's extension, which clients do write
        warnings.filterwarnings("ignore", "Consolidated metadata is currently not part")
        ds.to_zarr(path, mode="w", zarr_format=zarr_format, consolidated=consolidated,
                   encoding=encoding)  # fmt: skip
    return path


def write_netcdf(ds: xr.Dataset, path: Path) -> Path:
    """``ds`` as a NetCDF4 file (h5netcdf)."""
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def zip_store(store: Path, archive: Path, *, inside: str | None = None) -> Path:
    """The Zarr folder ``store`` zipped as ``archive``, under ``inside/`` (its name by default)."""
    top = inside if inside is not None else store.name
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for file in sorted(store.rglob("*")):
            if file.is_file():
                zf.write(file, f"{top}/{file.relative_to(store).as_posix()}".lstrip("/"))
    return archive
