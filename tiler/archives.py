"""Tile archive writers: MBTiles 1.3 (SQLite) and PMTiles v3 (through the ``pmtiles`` package).

Both take tiles one at a time in XYZ numbering and hold no tile data in memory: MBTiles rows go
to SQLite in batched transactions, PMTiles tile data to a temporary file beside the archive
(the package keeps only its directory, about 250 bytes a tile, because PMTiles writes the
directory before the data). A writer builds a file that is only ever published whole: used as a
context manager, a failure (or a SIGTERM unwinding the job) closes and deletes it.
"""

import math
import sqlite3
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer as PMTilesFileWriter

TileFormat = Literal["png", "jpeg", "webp"]
# MBTiles 1.3 spells JPEG "jpg"; PMTiles has a tile type per format.
MBTILES_FORMATS: dict[str, str] = {"png": "png", "jpeg": "jpg", "webp": "webp"}
PMTILES_TYPES: dict[str, TileType] = {
    "png": TileType.PNG,
    "jpeg": TileType.JPEG,
    "webp": TileType.WEBP,
}
MBTILES_APPLICATION_ID = 0x4D504258  # "MPBX", MBTiles 1.3
MAX_MERCATOR_LAT = 85.0511287798066


@dataclass(frozen=True)
class ArchiveMetadata:
    """What both archive formats say about their tileset (MBTiles 1.3 metadata names)."""

    name: str
    format: TileFormat
    bounds: tuple[float, float, float, float]  # west, south, east, north in EPSG:4326
    minzoom: int
    maxzoom: int
    description: str = ""
    attribution: str | None = None
    version: str = "1.0.0"
    type: Literal["overlay", "baselayer"] = "overlay"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def center(self) -> tuple[float, float, int]:
        """The middle of the bounds, at a zoom that shows them whole (within the zooms)."""
        west, south, east, north = self.bounds
        lon, lat = (west + east) / 2, (south + north) / 2
        span = max(east - west, 1e-9)
        zoom = int(math.floor(math.log2(360.0 / span)))
        return lon, lat, max(self.minzoom, min(self.maxzoom, zoom))

    def entries(self) -> dict[str, str]:
        """Name -> value rows of the MBTiles ``metadata`` table (also PMTiles' JSON metadata)."""
        lon, lat, zoom = self.center
        values = {
            "name": self.name,
            "format": MBTILES_FORMATS[self.format],
            "bounds": ",".join(_coord(v) for v in self.bounds),
            "center": f"{_coord(lon)},{_coord(lat)},{zoom}",
            "minzoom": str(self.minzoom),
            "maxzoom": str(self.maxzoom),
            "type": self.type,
            "version": self.version,
            "description": self.description,
            **self.extra,
        }
        if self.attribution:
            values["attribution"] = self.attribution
        return values


def _coord(value: float) -> str:
    return f"{value:.8f}".rstrip("0").rstrip(".")


class ArchiveWriter(ABC):
    """Writes one archive file at ``path``; ``add`` tiles, then ``finish`` (or ``abort``)."""

    extension: ClassVar[str]
    media_type: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tiles = 0
        self._done = False

    @abstractmethod
    def add(self, z: int, x: int, y: int, data: bytes) -> None:
        """Store one tile; ``y`` counts from the top (XYZ, as the tile endpoints do)."""

    @abstractmethod
    def finish(self, metadata: ArchiveMetadata) -> None:
        """Write the metadata and close the file; it is complete afterwards."""

    @abstractmethod
    def _close(self) -> None:
        """Release the file handles without completing the file."""

    def abort(self) -> None:
        """Close and delete the unfinished file."""
        if not self._done:
            self._done = True
            try:
                self._close()
            finally:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None or not self._done:
            self.abort()


class MBTilesWriter(ArchiveWriter):
    """MBTiles 1.3: ``metadata`` and ``tiles`` tables, rows in TMS numbering (y from the south).

    The file is scratch until published, so SQLite runs without a journal or fsyncs; inserts go
    in transactions of ``batch_size`` rows and the unique tile index is built once at the end.
    """

    extension = "mbtiles"
    media_type = "application/vnd.sqlite3"

    def __init__(self, path: Path, batch_size: int = 500) -> None:
        super().__init__(path)
        self.batch_size = batch_size
        self._batch: list[tuple[int, int, int, bytes]] = []
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.executescript(
            f"""
            PRAGMA application_id = {MBTILES_APPLICATION_ID};
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE metadata (name text, value text);
            CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer,
                                tile_data blob);
            """
        )

    def add(self, z: int, x: int, y: int, data: bytes) -> None:
        """Queue one row; a full batch is inserted in one transaction."""
        self._batch.append((z, x, (1 << z) - 1 - y, data))
        self.tiles += 1
        if len(self._batch) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT INTO tiles (zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)",
            self._batch,
        )
        self._db.execute("COMMIT")
        self._batch.clear()

    def finish(self, metadata: ArchiveMetadata) -> None:
        """Insert the last rows, the metadata and the indexes; close the database."""
        self._flush()
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT INTO metadata (name, value) VALUES (?, ?)", metadata.entries().items()
        )
        self._db.execute("CREATE UNIQUE INDEX name ON metadata (name)")
        self._db.execute(
            "CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)"
        )
        self._db.execute("COMMIT")
        self._db.close()
        self._done = True

    def _close(self) -> None:
        self._db.close()


class PMTilesWriter(ArchiveWriter):
    """PMTiles v3 by the ``pmtiles`` package's writer; tiles ordered by tile id are clustered."""

    extension = "pmtiles"
    media_type = "application/vnd.pmtiles"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by finish/abort
        self._writer = PMTilesFileWriter(self._file)  # type: ignore[no-untyped-call]
        # The package spools tile data to the system temp folder (often a small tmpfs): keep
        # it on the archive's filesystem instead. Unlinked at once, so a kill leaves nothing.
        self._writer.tile_f.close()
        self._writer.tile_f = tempfile.TemporaryFile(dir=self.path.parent)  # noqa: SIM115

    def add(self, z: int, x: int, y: int, data: bytes) -> None:
        """Append one tile (identical tiles are stored once)."""
        self._writer.write_tile(zxy_to_tileid(z, x, y), data)  # type: ignore[no-untyped-call]
        self.tiles += 1

    def finish(self, metadata: ArchiveMetadata) -> None:
        """Write header, directories, metadata and the tile data; close the file."""
        if self.tiles == 0:
            raise ValueError("a PMTiles archive needs at least one tile")
        west, south, east, north = metadata.bounds
        lon, lat, zoom = metadata.center
        header: dict[str, Any] = {
            "tile_type": PMTILES_TYPES[metadata.format],
            "tile_compression": Compression.NONE,
            "min_lon_e7": round(west * 1e7),
            "min_lat_e7": round(south * 1e7),
            "max_lon_e7": round(east * 1e7),
            "max_lat_e7": round(north * 1e7),
            "center_zoom": zoom,
            "center_lon_e7": round(lon * 1e7),
            "center_lat_e7": round(lat * 1e7),
        }
        self._writer.finalize(header, metadata.entries())  # type: ignore[no-untyped-call]
        self._file.close()
        self._done = True

    def _close(self) -> None:
        self._writer.tile_f.close()
        self._file.close()


WRITERS: dict[str, type[ArchiveWriter]] = {
    MBTilesWriter.extension: MBTilesWriter,
    PMTilesWriter.extension: PMTilesWriter,
}
