"""What kind of file an upload is, by its content (magic bytes), never by its name.

``detect`` answers a vector ``Format`` or None (not vector: the raster path decides, and
refuses what it cannot read). GDAL picks some drivers by extension only (CSV, Shapefile), so
``prepare`` gives the bytes a name GDAL recognises (a link, or a safely extracted zip).
"""

import csv
import io
import json
import os
import stat
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from .errors import ArchiveBomb, UnsafeArchive

_HEAD = 64 * 1024
# Column names GDAL's CSV driver takes as coordinates or geometry (its open options below).
X_NAMES = ("lon", "longitude", "lng", "long", "x")
Y_NAMES = ("lat", "latitude", "y")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "wkt_geom")


class Format(StrEnum):
    """A vector format we ingest (the value is the GDAL driver, or ``GeoParquet``)."""

    GPKG = "GPKG"
    SHAPEFILE = "ESRI Shapefile"
    GEOJSON = "GeoJSON"
    GEOJSONSEQ = "GeoJSONSeq"
    FLATGEOBUF = "FlatGeobuf"
    GEOPARQUET = "GeoParquet"
    KML = "KML"
    CSV = "CSV"


_SUFFIX = {
    Format.GPKG: ".gpkg",
    Format.GEOJSON: ".geojson",
    Format.GEOJSONSEQ: ".geojsons",
    Format.FLATGEOBUF: ".fgb",
    Format.GEOPARQUET: ".parquet",
    Format.KML: ".kml",
    Format.CSV: ".csv",
}


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(_HEAD)


def _is_geoparquet(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path).metadata or {}
    except Exception:  # a damaged footer: not something we can read as GeoParquet
        return False
    return b"geo" in metadata


def _text_format(head: bytes) -> Format | None:
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("\x1e"):
        return Format.GEOJSONSEQ
    if text.startswith("{"):
        first = text.split("\n", 1)[0].strip()
        try:  # one whole JSON object on the first line, then more: newline-delimited GeoJSON
            one = json.loads(first)
            rest = text[len(first) :].strip()
        except ValueError:
            return Format.GEOJSON
        if isinstance(one, dict) and one.get("type") == "Feature" and rest.startswith("{"):
            return Format.GEOJSONSEQ
        return Format.GEOJSON
    if text.startswith("<") and "<kml" in text[:4096]:
        return Format.KML
    return Format.CSV if _is_csv(text) else None


def _is_csv(text: str) -> bool:
    """A header line naming lon/lat or WKT columns (the only CSV files with geometry)."""
    lines = text.splitlines()
    if len(lines) < 2:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t|")
    except csv.Error:
        return False
    header = next(csv.reader(io.StringIO(lines[0]), dialect))
    names = {h.strip().strip('"').lower() for h in header}
    has_xy = any(x in names for x in X_NAMES) and any(y in names for y in Y_NAMES)
    return has_xy or any(w in names for w in WKT_NAMES)


def detect(path: Path) -> Format | None:
    """The vector format of the file at ``path``, or None when it is none of ours."""
    head = _head(path)
    if head.startswith(b"SQLite format 3\x00"):
        # GeoPackage application id ("GPKG"/"GP10"/"GP11") at byte 68 of the header.
        return Format.GPKG if head[68:70] == b"GP" else None
    if head.startswith(b"fgb\x03"):
        return Format.FLATGEOBUF
    if head.startswith(b"PAR1"):
        return Format.GEOPARQUET if _is_geoparquet(path) else None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_format(path)
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return None  # TIFF: the raster path
    if b"\x00" in head:
        return None  # binary, not any text format of ours
    return _text_format(head)


def _zip_format(path: Path) -> Format | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [PurePosixPath(n).suffix.lower() for n in archive.namelist()]
    except zipfile.BadZipFile:
        return None
    if ".shp" in names:
        return Format.SHAPEFILE
    if ".kml" in names:
        return Format.KML  # a KMZ
    return None


@dataclass(frozen=True)
class ZipLimits:
    """How far an archive may inflate (IngestSettings.zip_*)."""

    max_bytes: int
    max_ratio: float
    max_members: int


def _member_path(root: Path, name: str) -> Path:
    """Where member ``name`` goes under ``root``; UnsafeArchive if it would leave it."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise UnsafeArchive(f"zip member {name!r} would be written outside the archive's folder")
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafeArchive(f"zip member {name!r} would be written outside the archive's folder")
    return target


def extract(path: Path, folder: Path, limits: ZipLimits) -> None:
    """Extract the zip at ``path`` into ``folder``, refusing traversal, links and bombs.

    Declared sizes are checked first (total, and total over compressed bytes), then the bytes
    actually inflated are counted, since a header can lie.
    """
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise ArchiveBomb(f"the zip has {len(members)} members, more than the limit of "
                              f"{limits.max_members}")  # fmt: skip
        targets = []
        for info in members:
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchive(f"zip member {info.filename!r} is a symbolic link")
            targets.append(_member_path(folder, info.filename))
        declared = sum(i.file_size for i in members)
        packed = max(1, sum(i.compress_size for i in members))
        _check_size(declared, packed, limits)
        written = 0
        for info, target in zip(members, targets, strict=True):
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as out:
                while block := src.read(1 << 20):
                    written += len(block)
                    _check_size(written, packed, limits)
                    out.write(block)


def _check_size(size: int, packed: int, limits: ZipLimits) -> None:
    if size > limits.max_bytes:
        raise ArchiveBomb(f"the zip inflates to more than {limits.max_bytes} bytes")
    # Small archives are never bombs, whatever their ratio (a few KB of padded DBF).
    if size > 1 << 20 and size / packed > limits.max_ratio:
        raise ArchiveBomb(
            f"the zip inflates {size / packed:.0f} times its size, more than the limit of "
            f"{limits.max_ratio:g}"
        )


def prepare(source: Path, fmt: Format, work: Path, limits: ZipLimits) -> list[Path]:
    """The datasets GDAL (or pyarrow) opens as ``fmt``: a link with the format's suffix, or,
    from a safely extracted zip, every .shp (each a layer) or its first .kml (a KMZ)."""
    if fmt is Format.SHAPEFILE or (fmt is Format.KML and zipfile.is_zipfile(source)):
        folder = work / "unzipped"
        folder.mkdir()
        extract(source, folder, limits)
        pattern = "*.kml" if fmt is Format.KML else "*.shp"
        found = sorted(folder.rglob(pattern), key=lambda p: p.relative_to(folder).as_posix())
        return found[:1] if fmt is Format.KML else found
    link = work / f"source{_SUFFIX[fmt]}"
    os.symlink(source.resolve(), link)
    return [link]
