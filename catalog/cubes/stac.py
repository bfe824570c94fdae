"""A datacube in STAC: the collection's datacube extension fields, one item per time slice.

The collection gets ``cube:dimensions`` and ``cube:variables`` (datacube extension v2.2.0);
each time step of the cube becomes an item (its datetime, the grid's footprint in lon/lat,
the projection extension) whose ``data`` asset is the store (``terracat:time_index``: the
step's index in it): ``storage:`` hrefs are shown as the item's asset URL
(catalog/stac/assets.py), under which the store's files are served, so xarray on another
machine opens ``.../assets/data`` as a Zarr store.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pystac
from affine import Affine
from pyproj import CRS

from catalog.cubes.model import Cube, CubeLayer
from catalog.ingest.footprint import geometry_bbox, grid_footprint

DATACUBE_EXTENSION = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
MEDIA_TYPES = {"zarr": "application/vnd+zarr", "netcdf": "application/netcdf"}
_MAX_LISTED_TIMES = 1000  # beyond, cube:dimensions gives the extent (and step) only


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def item_ids(times: Sequence[datetime]) -> list[str]:
    """One id per time step: its instant (``20240301T000000Z``), numbered when it repeats."""
    ids, seen = [], set()
    for n, moment in enumerate(times):
        name = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        if moment.microsecond:
            name = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        if name in seen:
            name = f"{name}-{n}"
        seen.add(name)
        ids.append(name)
    return ids


def _reference_system(crs: str) -> int | str:
    epsg = CRS.from_user_input(crs).to_epsg()
    return epsg if epsg is not None else CRS.from_user_input(crs).to_wkt("WKT2_2019")


def _projection(cube: Cube) -> dict[str, Any]:
    epsg = CRS.from_user_input(cube.crs).to_epsg()
    code = {"proj:code": f"EPSG:{epsg}"} if epsg is not None else {
        "proj:wkt2": CRS.from_user_input(cube.crs).to_wkt("WKT2_2019")
    }  # fmt: skip
    transform = Affine.from_gdal(*cube.transform)
    return {
        **code,
        "proj:shape": [cube.height, cube.width],
        "proj:transform": [float(v) for v in list(transform)[:6]],
        "proj:bbox": [float(v) for v in cube.bounds],
    }


def slice_items(cube: Cube) -> list[dict[str, Any]]:
    """The STAC items of the cube's time steps (``cube.href`` as their data asset's href)."""
    footprint = grid_footprint(Affine.from_gdal(*cube.transform), cube.width, cube.height,
                               CRS.from_user_input(cube.crs))  # fmt: skip
    bbox = geometry_bbox(footprint)
    projection = _projection(cube)
    media_type = MEDIA_TYPES[cube.format]
    items = []
    for n, (item_id, moment) in enumerate(zip(item_ids(cube.times), cube.times, strict=True)):
        item = pystac.Item(
            id=item_id, geometry=footprint, bbox=bbox, datetime=moment,
            properties={**projection, "title": f"{cube.collection_id} at {iso(moment)}"},
            collection=cube.collection_id,
        )  # fmt: skip
        item.clear_links()
        item.add_link(pystac.Link(pystac.RelType.COLLECTION,
                                  f"../../{quote(cube.collection_id, safe='')}",
                                  media_type=pystac.MediaType.JSON))  # fmt: skip
        item.stac_extensions = [PROJECTION_EXTENSION]
        item.add_asset("data", pystac.Asset(
            href=cube.href, media_type=media_type, roles=["data"],
            title=f"The datacube (time step {n} of {cube.time_dim or 'none'})",
            extra_fields={"terracat:time_index": n},
        ))  # fmt: skip
        items.append(item.to_dict(include_self_link=False, transform_hrefs=False))
    return items


def cube_fields(cube: Cube) -> dict[str, Any]:
    """The collection's ``cube:dimensions`` and ``cube:variables``."""
    west, south, east, north = cube.bounds
    system = _reference_system(cube.crs)
    dimensions: dict[str, Any] = {
        cube.x_dim: {"type": "spatial", "axis": "x", "extent": [west, east],
                     "step": cube.transform[1], "reference_system": system},
        cube.y_dim: {"type": "spatial", "axis": "y", "extent": [south, north],
                     "step": cube.transform[5], "reference_system": system},
    }  # fmt: skip
    if cube.time_dim is not None and cube.times:
        temporal: dict[str, Any] = {
            "type": "temporal",
            "extent": [iso(min(cube.times)), iso(max(cube.times))],
        }
        if len(cube.times) <= _MAX_LISTED_TIMES:
            temporal["values"] = [iso(t) for t in cube.times]
        dimensions[cube.time_dim] = temporal
    if cube.band_dim is not None:
        bands = list(dict.fromkeys(layer.band for layer in cube.layers if layer.band))
        dimensions[cube.band_dim] = {"type": "bands", "values": bands}
    order = [d for d in (cube.time_dim, cube.band_dim, cube.y_dim, cube.x_dim) if d]
    variables: dict[str, Any] = {}
    for layer in cube.layers:
        if layer.variable in variables:
            continue
        variables[layer.variable] = _variable(layer, order if layer.band else
                                              [d for d in order if d != cube.band_dim])  # fmt: skip
    return {"cube:dimensions": dimensions, "cube:variables": variables}


def _variable(layer: CubeLayer, dims: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"dimensions": dims, "type": "data"}
    if layer.unit:
        out["unit"] = layer.unit
    if layer.description:
        out["description"] = layer.description
    if layer.nodata is not None:
        out["nodata"] = layer.nodata
    return out


def with_cube(content: dict[str, Any], cube: Cube) -> dict[str, Any]:
    """A collection document with the cube's extension fields (replacing earlier ones)."""
    out = {k: v for k, v in content.items() if not k.startswith("cube:")}
    extensions = [e for e in out.get("stac_extensions", []) if "/datacube/" not in e]
    out["stac_extensions"] = [*extensions, DATACUBE_EXTENSION]
    out.update(cube_fields(cube))
    return out
