"""Tile archive writers, the tile walk of an export and its render loop (no database)."""

import random
import sqlite3
import threading
import time
from pathlib import Path

import morecantile
import numpy as np
import pytest
import shapely
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType, zxy_to_tileid

from tests.tiler.conftest import TMS, ListWriter, expected_tiles
from tiler import tiling
from tiler.archives import ArchiveMetadata, MBTilesWriter, PMTilesWriter
from tiler.export import attribution, write_tiles

META = ArchiveMetadata(
    name="test/tiles", format="png", bounds=(14.9, 50.4, 15.2, 50.6), minzoom=3, maxzoom=5,
    description="Some tiles", attribution="© Someone", type="overlay",
)  # fmt: skip
TILES = {(3, 4, 2): b"a" * 10, (4, 8, 5): b"b" * 20, (5, 17, 10): b"c" * 30, (5, 16, 10): b"a" * 10}


# -- MBTiles ------------------------------------------------------------------------------------
def test_mbtiles_has_the_standard_schema_tms_rows_and_complete_metadata(tmp_path: Path) -> None:
    path = tmp_path / "t.mbtiles"
    with MBTilesWriter(path, batch_size=2) as writer:
        for (z, x, y), data in TILES.items():
            writer.add(z, x, y, data)
        writer.finish(META)
    assert writer.tiles == 4
    db = sqlite3.connect(path)
    tables = dict(db.execute("SELECT name, sql FROM sqlite_master"))
    assert "tile_index" in tables and "name" in tables  # unique indexes
    columns = [row[1] for row in db.execute("PRAGMA table_info(tiles)")]
    assert columns == ["zoom_level", "tile_column", "tile_row", "tile_data"]
    assert [row[1] for row in db.execute("PRAGMA table_info(metadata)")] == ["name", "value"]
    assert db.execute("PRAGMA application_id").fetchone()[0] == 0x4D504258
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {(z, x, y): bytes(d) for z, x, y, d in db.execute("SELECT * FROM tiles")}
    assert rows == {(z, x, (1 << z) - 1 - y): data for (z, x, y), data in TILES.items()}
    metadata = dict(db.execute("SELECT name, value FROM metadata"))
    assert metadata == {
        "name": "test/tiles", "format": "png", "bounds": "14.9,50.4,15.2,50.6",
        "center": "15.05,50.5,5", "minzoom": "3", "maxzoom": "5", "type": "overlay",
        "version": "1.0.0", "description": "Some tiles", "attribution": "© Someone",
    }  # fmt: skip
    db.close()


def test_mbtiles_spells_jpeg_jpg_and_leaves_out_a_missing_attribution(tmp_path: Path) -> None:
    meta = ArchiveMetadata(name="j", format="jpeg", bounds=(0, 0, 1, 1), minzoom=0, maxzoom=9)
    entries = meta.entries()
    assert entries["format"] == "jpg" and "attribution" not in entries
    assert entries["center"] == "0.5,0.5,8"  # the zoom showing 1 degree, within 0..9


def test_a_failed_or_unfinished_mbtiles_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "t.mbtiles"
    with pytest.raises(RuntimeError), MBTilesWriter(path) as writer:
        writer.add(1, 0, 0, b"x")
        raise RuntimeError("renderer failed")
    assert not path.exists()
    with MBTilesWriter(path) as writer:
        writer.add(1, 0, 0, b"x")  # never finished
    assert not path.exists()


# -- PMTiles ------------------------------------------------------------------------------------
def test_pmtiles_reads_back_with_header_metadata_and_tiles(tmp_path: Path) -> None:
    path = tmp_path / "t.pmtiles"
    ordered = sorted(TILES.items(), key=lambda kv: zxy_to_tileid(*kv[0]))
    with PMTilesWriter(path) as writer:
        for (z, x, y), data in ordered:
            writer.add(z, x, y, data)
        writer.finish(META)
    assert not list(tmp_path.glob("tmp*"))  # the spooled tile data went with the writer
    with path.open("rb") as f:
        reader = Reader(MmapSource(f))
        header = reader.header()
        assert (header["min_zoom"], header["max_zoom"]) == (3, 5)
        assert header["tile_type"] == TileType.PNG
        assert header["tile_compression"] == Compression.NONE
        assert header["clustered"]
        assert header["addressed_tiles_count"] == 4 and header["tile_contents_count"] == 3
        assert (header["min_lon_e7"], header["min_lat_e7"]) == (149_000_000, 504_000_000)
        assert (header["max_lon_e7"], header["max_lat_e7"]) == (152_000_000, 506_000_000)
        assert header["center_zoom"] == 5
        assert reader.metadata()["attribution"] == "© Someone"
        assert reader.metadata()["name"] == "test/tiles"
        for (z, x, y), data in TILES.items():
            assert reader.get(z, x, y) == data
        assert reader.get(5, 0, 0) is None
        assert len(list(all_tiles(MmapSource(f)))) == 4


def test_an_empty_pmtiles_is_refused_and_deleted(tmp_path: Path) -> None:
    path = tmp_path / "t.pmtiles"
    with pytest.raises(ValueError, match="at least one tile"), PMTilesWriter(path) as writer:
        writer.finish(META)
    assert not path.exists()


# -- the tile walk ------------------------------------------------------------------------------
def test_tile_ids_are_pmtiles_ids() -> None:
    rng = np.random.default_rng(7)
    for z in (0, 1, 5, 13, 22):
        x, y = rng.integers(0, 1 << z, 200), rng.integers(0, 1 << z, 200)
        expected = [zxy_to_tileid(z, int(a), int(b)) for a, b in zip(x, y, strict=True)]
        assert tiling.tile_ids(z, x, y).tolist() == expected


REGION = shapely.Polygon([(14.9, 50.4), (15.2, 50.45), (15.1, 50.6), (14.95, 50.55)])


@pytest.mark.parametrize("block_levels", [1, 2, 6])
def test_walk_finds_the_tiles_meeting_the_region_in_tile_id_order(
    monkeypatch: pytest.MonkeyPatch, block_levels: int
) -> None:
    monkeypatch.setattr(tiling, "BLOCK_LEVELS", block_levels)  # small blocks: deep recursion
    walked = list(tiling.iter_tiles(REGION, 6, 14))
    assert len(walked) == len(set(walked))
    assert set(walked) == expected_tiles(REGION, 6, 14)
    ids = [zxy_to_tileid(*t) for t in walked]
    assert ids == sorted(ids)


def test_walk_of_a_multipolygon_and_of_a_tile_sized_box() -> None:
    parts = shapely.MultiPolygon([shapely.box(-10, -5, -9, -4), shapely.box(30, 10, 31.5, 11)])
    assert set(tiling.iter_tiles(parts, 4, 9)) == expected_tiles(parts, 4, 9)
    tile = morecantile.Tile(137, 84, 8)
    box = shapely.box(*TMS.bounds(tile))
    assert list(tiling.iter_tiles(box, 8, 8)) == [(8, 137, 84)]
    assert len(list(tiling.iter_tiles(box, 9, 9))) == 4


def test_count_tiles_counts_the_bbox_tiles_as_morecantile() -> None:
    bounds = (14.9, 50.4, 15.2, 50.6)
    expected = len(list(TMS.tiles(*bounds, list(range(3, 16)))))
    assert tiling.count_tiles(bounds, 3, 15) == expected
    assert tiling.count_tiles((-180, -90, 180, 90), 0, 2) == 1 + 4 + 16
    assert tiling.tile_range((10, 10, 10, 11), 3) is None


# -- the render loop ----------------------------------------------------------------------------
def test_write_tiles_keeps_order_skips_empty_and_bounds_the_tiles_in_flight() -> None:
    tiles = [(9, x, y) for x in range(20) for y in range(10)]
    lock = threading.Lock()
    started = drained = peak = 0
    writer = ListWriter()

    def render(z: int, x: int, y: int) -> bytes | None:
        nonlocal started, peak
        with lock:
            started += 1
            peak = max(peak, started - drained)
        time.sleep(random.random() / 1000)
        return None if (x + y) % 7 == 0 else f"{z}/{x}/{y}".encode()

    def progress(percent: int, message: str) -> None:
        nonlocal drained
        drained = int(message.split("/")[0])  # called after each tile (progress_every_s=0)
        reports.append((percent, message))

    reports: list[tuple[int, str]] = []
    stats = write_tiles(iter(tiles), render, writer, len(tiles), 3, progress,  # type: ignore[arg-type]
                        progress_every_s=0)  # fmt: skip
    kept = [t for t in tiles if (t[1] + t[2]) % 7 != 0]
    assert [t[:3] for t in writer.tiles] == kept
    assert all(data == f"{z}/{x}/{y}".encode() for z, x, y, data in writer.tiles)
    assert stats == {"written": len(kept), "empty": len(tiles) - len(kept)}
    assert writer.threads == {threading.get_ident()}
    assert reports[-1] == (99, f"{len(tiles)}/{len(tiles)} tiles")
    assert 3 <= peak <= 4 * 3 + 1  # the window: 4 tiles per renderer


def test_write_tiles_stops_at_a_render_error() -> None:
    rendered: list[tuple[int, int, int]] = []

    def render(z: int, x: int, y: int) -> bytes | None:
        rendered.append((z, x, y))
        if x == 5:
            raise RuntimeError("broken tile")
        return b"x"

    tiles = ((12, x, 0) for x in range(10_000))
    with pytest.raises(RuntimeError, match="broken tile"):
        write_tiles(tiles, render, ListWriter(), 10_000, 2, lambda p, m: None)  # type: ignore[arg-type]
    time.sleep(0.05)
    assert len(rendered) < 100  # queued renders were dropped


def test_attribution_names_the_licensors_and_producers_once() -> None:
    providers = [
        {"name": "ESA", "roles": ["licensor", "producer"]},
        {"name": "Host", "roles": ["host"]},
        {"name": "Lab", "roles": ["processor", "producer"]},
        {"name": "ESA", "roles": ["licensor"]},
    ]
    assert attribution({"providers": providers}) == "© ESA, Lab"
    assert attribution({"providers": [{"name": "Host", "roles": ["host"]}]}) is None
    assert attribution({}) is None
