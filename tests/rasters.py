"""Small real GeoTIFFs written with rasterio, for ingest, tiler and API tests.

``write_geotiff`` writes any case; the ``*_tif`` helpers below are the ready-made ones the ingest
tests use. Every helper takes the folder to write into (usually pytest's ``tmp_path``) and
returns the path of the file.
"""

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC
from rasterio.transform import from_origin

Fill = Callable[[int, int, int], np.ndarray]

UTM_ORIGIN = (500_000.0, 5_600_000.0)  # EPSG:32633, about 50.5 N 15 E


def gradient(count: int, height: int, width: int, dtype: str = "uint8") -> np.ndarray:
    """A smooth deterministic pattern with a different phase per band, never 0."""
    y, x = np.mgrid[0:height, 0:width]
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    top = float(info.max) if info else 1000.0
    bands = [
        1 + (top - 2) * (0.5 + 0.5 * np.sin((x + 7 * b) / 23.0) * np.cos((y + 3 * b) / 17.0))
        for b in range(count)
    ]
    return np.stack(bands).astype(dtype)


def write_geotiff(
    path: Path,
    *,
    width: int,
    height: int,
    count: int,
    dtype: str,
    crs: str | CRS | None,
    transform: Affine | None,
    nodata: float | None = None,
    tiled: bool = False,
    photometric: str | None = None,
    tags: Mapping[str, str] | None = None,
    fill: Fill | None = None,
    blocksize: int = 256,
    compress: str | None = None,
    colorinterp: Sequence[ColorInterp] | None = None,
    mask: np.ndarray | None = None,
    gcps: tuple[Sequence[GroundControlPoint], str] | None = None,
    descriptions: Sequence[str] | None = None,
    rpcs: RPC | None = None,
    **profile: Any,
) -> Path:
    """Write a GeoTIFF. ``fill(count, height, width)`` gives the pixels (default: ``gradient``).

    ``mask`` (height x width, true where valid) becomes an internal mask band. ``crs`` and
    ``transform`` may be None for a raster without georeferencing; ``gcps`` is
    ``(points, crs)`` for a GCP-only raster, ``rpcs`` makes an RPC-only one.
    """
    data = (fill or (lambda c, h, w: gradient(c, h, w, dtype)))(count, height, width)
    options: dict[str, Any] = {"tiled": tiled, **profile}
    if tiled:
        options.update(blockxsize=blocksize, blockysize=blocksize)
    if photometric:
        options["photometric"] = photometric
    if compress:
        options["compress"] = compress
    if crs is not None:
        options["crs"] = crs
    if transform is not None:
        options["transform"] = transform
    env = {"GDAL_TIFF_INTERNAL_MASK": "YES", "GDAL_PAM_ENABLED": "NO"}
    with warnings.catch_warnings(), rasterio.Env(**env):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=count, dtype=dtype,
            nodata=nodata, **options,
        ) as dst:  # fmt: skip
            dst.write(data)
            if colorinterp is not None:
                dst.colorinterp = list(colorinterp)
            if mask is not None:
                dst.write_mask(np.where(mask, 255, 0).astype("uint8"))
            if gcps is not None:
                dst.gcps = (list(gcps[0]), CRS.from_user_input(gcps[1]))
            if rpcs is not None:
                dst.rpcs = rpcs
            if tags:
                dst.update_tags(**tags)
            for index, text in enumerate(descriptions or [], start=1):
                dst.set_band_description(index, text)
    return path


def _bordered(border: int, nodata: float, dtype: str) -> Fill:
    def fill(count: int, height: int, width: int) -> np.ndarray:
        data = gradient(count, height, width, dtype)
        data[:, :border, :] = nodata
        data[:, height - border :, :] = nodata
        data[:, :, :border] = nodata
        data[:, :, width - border :] = nodata
        return data

    return fill


# -- ready-made cases ----------------------------------------------------------------------------
def utm_rgb_tif(
    folder: Path, *, size: int = 512, border: int = 64, name: str = "utm_rgb.tif", **kw: Any
) -> Path:
    """EPSG:32633, 3-band uint8 RGB, 10 m pixels, nodata 0 on a ``border``-pixel frame."""
    return write_geotiff(
        folder / name, width=size, height=size, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*UTM_ORIGIN, 10, 10), nodata=0, photometric="RGB",
        fill=_bordered(border, 0, "uint8"), **kw,
    )  # fmt: skip


def rgbn_uint16_tif(folder: Path, *, size: int = 300, **kw: Any) -> Path:
    """EPSG:32633, 4-band uint16 with colour interpretation red, green, blue, NIR."""
    return write_geotiff(
        folder / "rgbn.tif", width=size, height=size, count=4, dtype="uint16", crs="EPSG:32633",
        transform=from_origin(*UTM_ORIGIN, 20, 20), photometric="MINISBLACK",
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.nir],
        fill=lambda c, h, w: (gradient(c, h, w, "uint16") // 16).astype("uint16"), **kw,
    )  # fmt: skip


def float_tif(folder: Path, *, size: int = 200, **kw: Any) -> Path:
    """EPSG:4326 single float32 band, nodata -9999 on the left quarter, values 0..1000."""

    def fill(count: int, height: int, width: int) -> np.ndarray:
        data = gradient(count, height, width, "float32")
        data[:, :, : width // 4] = -9999
        return data

    return write_geotiff(
        folder / "float.tif", width=size, height=size, count=1, dtype="float32",
        crs="EPSG:4326", transform=from_origin(10.0, 46.0, 0.001, 0.001), nodata=-9999,
        fill=fill, **kw,
    )  # fmt: skip


def polar_north_tif(folder: Path, *, size: int = 200, half_width: float = 1_000_000) -> Path:
    """EPSG:3413 (NSIDC north polar stereographic) square centred on the North Pole."""
    pixel = 2 * half_width / size
    return write_geotiff(
        folder / "polar.tif", width=size, height=size, count=1, dtype="uint8", crs="EPSG:3413",
        transform=from_origin(-half_width, half_width, pixel, pixel),
    )  # fmt: skip


def polar_south_tif(folder: Path, *, size: int = 200, half_width: float = 1_000_000) -> Path:
    """EPSG:3031 (Antarctic polar stereographic) square centred on the South Pole."""
    pixel = 2 * half_width / size
    return write_geotiff(
        folder / "polar_south.tif", width=size, height=size, count=1, dtype="uint8",
        crs="EPSG:3031", transform=from_origin(-half_width, half_width, pixel, pixel),
    )  # fmt: skip


def antimeridian_utm_tif(folder: Path, *, size: int = 200) -> Path:
    """EPSG:32660 (UTM 60N, central meridian 177 E) at ~50 N, reaching past 180 to ~178.8 W."""
    return write_geotiff(
        folder / "antimeridian.tif", width=size, height=size, count=1, dtype="uint8",
        crs="EPSG:32660", transform=from_origin(600_000, 5_600_000, 1500, 1500),
    )  # fmt: skip


def antimeridian_geographic_tif(folder: Path, *, size: int = 200) -> Path:
    """EPSG:4326 from 175 E to 185 E (written past 180, as some products are), 10 S to 0."""
    return write_geotiff(
        folder / "antimeridian_4326.tif", width=size, height=size // 2, count=1, dtype="uint8",
        crs="EPSG:4326", transform=from_origin(175.0, 0.0, 10 / size, 10 / size),
    )  # fmt: skip


def not_georeferenced_tif(folder: Path) -> Path:
    """A TIFF with neither CRS nor geotransform."""
    return write_geotiff(
        folder / "plain.tif", width=64, height=64, count=1, dtype="uint8", crs=None,
        transform=None,
    )  # fmt: skip


def gcps_only_tif(folder: Path) -> Path:
    """A TIFF georeferenced by four ground control points only (no geotransform)."""
    points = [
        GroundControlPoint(row=0, col=0, x=15.0, y=50.0),
        GroundControlPoint(row=0, col=64, x=15.1, y=50.0),
        GroundControlPoint(row=64, col=64, x=15.1, y=49.9),
        GroundControlPoint(row=64, col=0, x=15.0, y=49.9),
    ]
    return write_geotiff(
        folder / "gcps.tif", width=64, height=64, count=1, dtype="uint8", crs=None,
        transform=None, gcps=(points, "EPSG:4326"),
    )  # fmt: skip


def rpc_only_tif(folder: Path) -> Path:
    """A 64 x 64 TIFF located by rational polynomial coefficients only (a raw satellite scene)."""
    rpcs = RPC(
        height_off=0, height_scale=500, lat_off=50, lat_scale=0.1, line_off=32, line_scale=32,
        long_off=15, long_scale=0.1, samp_off=32, samp_scale=32,
        line_num_coeff=[0, 0, -1] + [0] * 17, line_den_coeff=[1] + [0] * 19,
        samp_num_coeff=[0, 1] + [0] * 18, samp_den_coeff=[1] + [0] * 19,
    )  # fmt: skip
    return write_geotiff(
        folder / "rpc.tif", width=64, height=64, count=1, dtype="uint8", crs=None,
        transform=None, rpcs=rpcs,
    )  # fmt: skip


def truncated_tif(folder: Path, *, tiled: bool = False) -> Path:
    """A valid GeoTIFF (striped, or tiled) cut to half its length."""
    path = utm_rgb_tif(folder, size=256, border=0, name="truncated.tif", tiled=tiled)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)
    return path


def text_tif(folder: Path) -> Path:
    """A text file named .tif."""
    path = folder / "notes.tif"
    path.write_text("these are not pixels\n" * 20)
    return path


def complex_tif(folder: Path) -> Path:
    """A complex64 single band (radar-like)."""
    return write_geotiff(
        folder / "complex.tif", width=32, height=32, count=1, dtype="complex64",
        crs="EPSG:32633", transform=from_origin(*UTM_ORIGIN, 10, 10),
        fill=lambda c, h, w: (np.ones((c, h, w)) + 1j).astype("complex64"),
    )  # fmt: skip


def bomb_tif(folder: Path, size: int = 40_000) -> Path:
    """A sparse tiled GeoTIFF: ``size`` x ``size`` px declared, no block written (about 50 KB
    at 40,000 px: only the tile index), which GDAL reads as zeros."""
    path = folder / "bomb.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(*UTM_ORIGIN, 1, 1), tiled=True,
        blockxsize=512, blockysize=512, sparse_ok=True, compress="deflate",
    ):  # fmt: skip
        pass
    return path


def many_bands_tif(folder: Path, count: int = 5) -> Path:
    """``count`` uint8 bands of 32 x 32 pixels."""
    return write_geotiff(
        folder / "bands.tif", width=32, height=32, count=count, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(*UTM_ORIGIN, 10, 10),
    )  # fmt: skip


def cog_tif(source: Path, destination: Path, **options: Any) -> Path:
    """``source`` rewritten by GDAL's COG driver (a valid COG with overviews)."""
    creation = {"compress": "DEFLATE", "blocksize": 256, "overview_resampling": "nearest"}
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        rasterio.shutil.copy(source, destination, driver="COG", **{**creation, **options})
    return destination


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths are the same inode."""
    return os.path.samefile(a, b)
