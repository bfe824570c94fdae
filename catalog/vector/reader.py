"""Read a vector file's layers into EPSG:4326 WKB and typed columns (the ingest child's work).

GDAL formats are read with pyogrio as Arrow tables; GeoParquet (no GDAL driver here) with
pyarrow and its ``geo`` metadata. Geometries are reprojected with pyproj and repaired with
shapely (``make_valid``, keeping the geometry's dimension) here, in the job's child process,
so that the commit is only a COPY: a layer is written to a local CSV file (hex EWKB, then the
properties), which the commit streams to PostgreSQL as it is: rows through Python cost the
commit seconds (Arrow ``to_pylist`` alone took 1.0 s for 100k rows, then psycopg's
``write_row`` per row), this costs no Python per row.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
import pyogrio
import shapely
from pyproj import CRS, Transformer

from catalog.ingest.errors import NotGeoreferenced

from .errors import InvalidGeometry, MixedCrs, NoGeometry, TooManyFeatures, Unreadable
from .formats import WKT_NAMES, X_NAMES, Y_NAMES, Format
from .layer_data import LayerData
from .schema import PropertyType

WKB = "wkb"  # the geometry column of the CSV file (hex EWKB); properties are c0, c1...
# Open options of GDAL's CSV driver: coordinates or WKT from the usual column names.
_CSV_OPTIONS = {
    "X_POSSIBLE_NAMES": ",".join(X_NAMES),
    "Y_POSSIBLE_NAMES": ",".join(Y_NAMES),
    "GEOM_POSSIBLE_NAMES": ",".join(WKT_NAMES),
    "KEEP_GEOM_COLUMNS": "NO",
    "AUTODETECT_TYPE": "YES",
}
_BASE_TYPES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString",
               "MultiPolygon", "GeometryCollection")  # fmt: skip
_TYPE_IDS = {0: "Point", 1: "LineString", 2: "LineString", 3: "Polygon", 4: "MultiPoint",
             5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}  # fmt: skip


@dataclass(frozen=True)
class SourceLayer:
    """One layer of an upload: the dataset it is in and its name there."""

    dataset: Path
    name: str
    format: Format


def _options(fmt: Format) -> dict[str, str]:
    return dict(_CSV_OPTIONS) if fmt is Format.CSV else {}


def list_layers(datasets: list[Path], fmt: Format) -> list[SourceLayer]:
    """Every layer of the datasets, in file order."""
    if fmt is Format.GEOPARQUET:
        return [SourceLayer(d, d.stem, fmt) for d in datasets]
    found = []
    for dataset in datasets:
        try:
            names = pyogrio.list_layers(dataset)
        except Exception as exc:  # GDAL says why in its message
            raise Unreadable(f"the file cannot be read as {fmt.value}: {exc}") from exc
        # Attribute tables (no geometry type) of a file that has spatial layers are left out.
        spatial = [row for row in names if row[1] is not None] or list(names)
        found += [SourceLayer(dataset, str(row[0]), fmt) for row in spatial]
    if not found:
        raise Unreadable(f"the {fmt.value} file holds no layer")
    return found


def property_type(kind: pa.DataType) -> PropertyType | None:
    """The property type an Arrow column becomes (None: not kept, e.g. raw binary)."""
    if pa.types.is_dictionary(kind):
        return property_type(kind.value_type)
    if pa.types.is_boolean(kind):
        return PropertyType.BOOLEAN
    if pa.types.is_integer(kind):
        return PropertyType.NUMBER if kind == pa.uint64() else PropertyType.INTEGER
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return PropertyType.NUMBER
    if pa.types.is_timestamp(kind):
        return PropertyType.DATETIME
    if pa.types.is_date(kind):
        return PropertyType.DATE
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return PropertyType.STRING
    if pa.types.is_time(kind):
        return PropertyType.STRING
    if pa.types.is_nested(kind):
        return PropertyType.JSON
    return None


def _column(values: pa.ChunkedArray | pa.Array, kind: PropertyType) -> pa.Array:
    """A source column as the CSV file holds it for ``kind``."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if kind is PropertyType.DATETIME:
        if values.type.tz is None:  # a local time without zone is taken as UTC
            values = pc.assume_timezone(values, "UTC")
        return values.cast(pa.timestamp("us", tz="UTC"))
    if kind is PropertyType.JSON:
        return pa.array([None if v is None else json.dumps(v, default=str)
                         for v in values.to_pylist()], pa.string())  # fmt: skip
    target = {PropertyType.INTEGER: pa.int64(), PropertyType.NUMBER: pa.float64(),
              PropertyType.STRING: pa.string(), PropertyType.DATE: pa.date32(),
              PropertyType.BOOLEAN: pa.bool_()}[kind]  # fmt: skip
    values = values.cast(target)
    if kind is PropertyType.STRING:  # PostgreSQL text holds no NUL character
        values = pc.replace_substring(values, "\x00", "")
    return values


def _crs_name(crs: CRS) -> str:
    code = crs.to_epsg(min_confidence=70)
    if code is not None:
        return f"EPSG:{code}"
    authority = crs.to_authority(min_confidence=70)
    return ":".join(authority) if authority else crs.to_wkt()


@dataclass
class _Raw:
    geometry: pa.Array  # WKB
    properties: list[tuple[str, pa.Array]]
    crs: CRS | None
    declared_type: str | None


def _read_gdal(layer: SourceLayer, max_features: int) -> _Raw:
    try:
        info = pyogrio.read_info(layer.dataset, layer=layer.name, **_options(layer.format))
        if info["features"] > max_features:
            raise TooManyFeatures(
                f"layer {layer.name!r} has {info['features']} features, more than the limit "
                f"of {max_features}"
            )
        meta, table = pyogrio.read_arrow(layer.dataset, layer=layer.name,
                                         **_options(layer.format))  # fmt: skip
    except TooManyFeatures:
        raise
    except Exception as exc:
        raise Unreadable(f"layer {layer.name!r} cannot be read: {exc}") from exc
    geom_name = meta.get("geometry_name") or "wkb_geometry"
    if meta.get("geometry_type") in (None, "None") or geom_name not in table.column_names:
        raise NoGeometry(f"layer {layer.name!r} has no geometry column")
    crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else None
    if layer.format in (Format.CSV, Format.KML, Format.GEOJSON, Format.GEOJSONSEQ):
        crs = crs or CRS.from_epsg(4326)  # coordinates in these are longitude/latitude
    props = [(name, table.column(name)) for name in table.column_names if name != geom_name]
    return _Raw(table.column(geom_name).combine_chunks(), props, crs,
                meta.get("geometry_type"))  # fmt: skip


def _read_geoparquet(layer: SourceLayer, max_features: int) -> _Raw:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(layer.dataset)
        geo = json.loads(file.schema_arrow.metadata[b"geo"])
        rows = file.metadata.num_rows
    except Exception as exc:
        raise Unreadable(f"the GeoParquet file cannot be read: {exc}") from exc
    columns: dict[str, Any] = geo.get("columns") or {}
    primary = geo.get("primary_column")
    if not columns or primary not in columns:
        raise NoGeometry("the GeoParquet metadata names no geometry column")
    crss = {json.dumps(c.get("crs", "OGC:CRS84"), sort_keys=True) for c in columns.values()}
    if len(crss) > 1:
        raise MixedCrs(f"the geometry columns {sorted(columns)} are in different CRSs")
    if rows > max_features:
        raise TooManyFeatures(f"the file has {rows} features, more than the limit of "
                              f"{max_features}")  # fmt: skip
    spec = columns[primary]
    if str(spec.get("encoding", "WKB")).upper() != "WKB":
        raise Unreadable(f"geometry encoding {spec.get('encoding')!r} is not read; use WKB")
    try:
        table = file.read()
    except Exception as exc:
        raise Unreadable(f"the GeoParquet file cannot be read: {exc}") from exc
    crs_value = spec.get("crs", "OGC:CRS84")
    crs = None if crs_value is None else CRS.from_user_input(crs_value)
    types = spec.get("geometry_types") or []
    props = [(n, table.column(n)) for n in table.column_names if n not in columns]
    return _Raw(table.column(primary).combine_chunks(), props, crs,
                types[0] if len(types) == 1 else None)  # fmt: skip


def _base_type(name: str) -> str:
    base = name.replace(" Z", "").replace(" M", "").replace("25D", "").strip()
    return next((t for t in _BASE_TYPES if t.lower() == base.lower()), "Geometry")


def geometry_type(geoms: np.ndarray, declared: str | None) -> str:
    """One name for the layer's geometries: their type, the Multi type if single and multi
    are mixed, else ``Geometry`` (the file's declared type when it has no feature)."""
    if not len(geoms):
        return _base_type(declared or "Geometry")
    names = {_TYPE_IDS.get(k, "Geometry") for k in set(shapely.get_type_id(geoms).tolist())}
    if len(names) == 1:
        return names.pop()
    for single in ("Point", "LineString", "Polygon"):
        if names == {single, f"Multi{single}"}:
            return f"Multi{single}"
    return "Geometry"


def _to_4326(geoms: np.ndarray, crs: CRS | None, layer: str) -> np.ndarray:
    if crs is None:
        bounds = shapely.total_bounds(geoms) if len(geoms) else np.zeros(4)
        if np.all(np.abs(bounds[[0, 2]]) <= 180) and np.all(np.abs(bounds[[1, 3]]) <= 90):
            return geoms  # no CRS and longitude/latitude values: taken as such
        raise NotGeoreferenced(f"layer {layer!r} has no CRS and its coordinates are not "
                               "longitude/latitude")  # fmt: skip
    if crs.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        return geoms
    transformer = Transformer.from_crs(crs, 4326, always_xy=True)
    has_z = bool(len(geoms)) and bool(shapely.has_z(geoms).any())
    moved: np.ndarray = shapely.transform(
        geoms,
        lambda xy: np.column_stack(transformer.transform(*xy.T)),
        include_z=has_z,
    )
    return moved


def _repaired(geoms: np.ndarray, layer: str) -> np.ndarray:
    """Valid geometries; InvalidGeometry for one that collapses (or has no finite coordinates)."""
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
        geoms = geoms.copy()
        geoms[invalid] = fixed
    broken = shapely.is_empty(geoms) | ~shapely.is_valid(geoms)
    if broken.any():
        index = int(np.flatnonzero(broken)[0])
        raise InvalidGeometry(
            f"layer {layer!r}: {int(broken.sum())} geometr(y/ies) cannot be made valid "
            f"(the first is feature {index}, counted from 0): they collapse to nothing or have "
            "coordinates outside the CRS"
        )
    return geoms


def read_layer(
    layer: SourceLayer,
    target: Path,
    max_features: int,
    log: Callable[[str], None] = lambda _: None,
) -> LayerData:
    """Read ``layer``, convert it and write its rows to the CSV file ``target``."""
    raw = (_read_geoparquet if layer.format is Format.GEOPARQUET else _read_gdal)(
        layer, max_features
    )
    present = pc.invert(pc.is_null(raw.geometry)) if len(raw.geometry) else None
    skipped = 0
    if present is not None and not pc.all(present).as_py():
        skipped = len(raw.geometry) - int(pc.sum(present).as_py() or 0)
        if skipped == len(raw.geometry):
            raise NoGeometry(f"no feature of layer {layer.name!r} has a geometry")
        raw.geometry = raw.geometry.filter(present)
        raw.properties = [(n, c.filter(present)) for n, c in raw.properties]
        log(f"layer {layer.name!r}: {skipped} feature(s) without geometry skipped")
    if len(raw.geometry) > max_features:
        raise TooManyFeatures(f"layer {layer.name!r} has {len(raw.geometry)} features, more "
                              f"than the limit of {max_features}")  # fmt: skip
    try:
        geoms = shapely.from_wkb(np.asarray(raw.geometry.to_numpy(zero_copy_only=False)))
    except Exception as exc:  # GEOS refuses the WKB itself (a ring of 3 points...)
        raise InvalidGeometry(f"layer {layer.name!r}: a geometry cannot be read: {exc}") from exc
    geoms = _repaired(_to_4326(geoms, raw.crs, layer.name), layer.name)
    properties: list[tuple[str, PropertyType]] = []
    empty: list[str] = []
    ewkb = shapely.to_wkb(shapely.set_srid(geoms, 4326), hex=True, include_srid=True)
    arrays: list[pa.Array] = [pa.array(ewkb, pa.string())]
    for name, values in raw.properties:
        kind = property_type(values.type)
        if kind is None:
            log(f"layer {layer.name!r}: property {name!r} ({values.type}) is not kept")
            continue
        properties.append((name, kind))
        arrays.append(_column(values, kind))
        if len(values) and values.null_count == len(values):
            empty.append(name)
    names = [WKB, *(f"c{i}" for i in range(len(properties)))]
    # COPY-ready CSV: no header, nulls unquoted and empty, strings quoted ("" is empty text).
    csv.write_csv(pa.Table.from_arrays(arrays, names=names), str(target),
                  csv.WriteOptions(include_header=False, quoting_style="needed"))  # fmt: skip
    return LayerData(
        name=layer.name,
        path=target,
        properties=properties,
        geometry_type=geometry_type(geoms, raw.declared_type),
        source_crs=_crs_name(raw.crs) if raw.crs is not None else None,
        count=len(geoms),
        skipped=skipped,
        empty=tuple(empty),
    )
