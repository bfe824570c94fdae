"""Vector files the ingest refuses, each with its stable code and nothing half-loaded; appends
that extend the schema or conflict with it; a raster upload still becoming a STAC item."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from server.settings import Settings
from tests import rasters
from tests.workers import MakeWorker

from .vector_uploads import (
    features,
    layer_row,
    loaded,
    polygons_in,
    refused,
    start_worker,
    upload,
    write_layer,
)


@pytest.fixture
def worker(settings: Settings, make_worker: MakeWorker) -> None:
    start_worker(settings, make_worker)


def _feature_tables(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM pg_tables WHERE schemaname = "
                                    "'features'")) or 0)  # fmt: skip


def _nothing_loaded(client: TestClient, admin: dict[str, str], engine: Engine, cid: str) -> None:
    assert _feature_tables(engine) == 0
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM vector_layers")) == 0
    doc = client.get(f"/collections/{cid}", headers=admin).json()
    assert "terracat:kind" not in doc


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _shapefile_parts(tmp_path: Path) -> dict[str, bytes]:
    write_layer(tmp_path / "p.shp", polygons_in("EPSG:4326", (2.35, 48.85), 0.001), "EPSG:4326",
                "ESRI Shapefile", fields={"n": np.array([1, 2, 3])})  # fmt: skip
    return {f"p{s}": (tmp_path / f"p{s}").read_bytes() for s in (".shp", ".shx", ".dbf", ".prj")}


def test_archives_that_escape_or_explode_are_refused(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    parts = _shapefile_parts(tmp_path)
    escaping = _zip({**parts, "../../evil.shp": parts["p.shp"]})
    message = refused(upload(client, admin, "zips", "a.zip", escaping), "ingest.UnsafeArchive")
    assert "../../evil.shp" in message
    # 64 MiB of zeros in a DBF next to the shapefile: a few dozen KB zipped.
    bomb = _zip({**parts, "padding.dbf": bytes(64 << 20)})
    assert len(bomb) < 200_000
    message = refused(upload(client, admin, "zips", "b.zip", bomb), "ingest.ArchiveBomb")
    assert "times its size" in message
    assert not list((tmp_path.parent).glob("**/evil.shp"))
    _nothing_loaded(client, admin, sync_engine, "zips")
    # The same shapefile, zipped plainly, loads.
    assert loaded(upload(client, admin, "zips", "c.zip", _zip(parts))) == ["zips"]


def test_a_zip_over_the_size_limit_is_refused(
    settings: Settings, apps: object, admin: dict[str, str], make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    settings.ingest.zip_max_bytes = 10_000
    start_worker(settings, make_worker)
    with apps.client(settings) as client:  # type: ignore[attr-defined]
        parts = _shapefile_parts(tmp_path)
        data = _zip({**parts, "notes.txt": b"x" * 20_000})
        message = refused(upload(client, admin, "big", "z.zip", data), "ingest.ArchiveBomb")
        assert "more than 10000 bytes" in message


def test_geometries_that_cannot_be_repaired_refuse_the_file(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    flat = shapely.from_wkt("POLYGON ((0 0, 1 1, 2 2, 0 0))")  # collapses to a line
    path = write_layer(tmp_path / "flat.gpkg", [shapely.box(0, 0, 1, 1), flat])
    message = refused(upload(client, admin, "flat", "f.gpkg", path.read_bytes()),
                      "ingest.InvalidGeometry")  # fmt: skip
    assert "feature 1" in message
    _nothing_loaded(client, admin, sync_engine, "flat")


def test_unreadable_files_and_files_without_geometry(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    path = write_layer(tmp_path / "ok.gpkg", polygons_in("EPSG:4326", (2.35, 48.85), 0.001))
    truncated = path.read_bytes()[:5000]
    refused(upload(client, admin, "bad", "t.gpkg", truncated), "ingest.UnreadableVector")
    broken_json = b'{"type": "FeatureCollection", "features": [{"type": "Feature", '
    refused(upload(client, admin, "bad", "b.json", broken_json), "ingest.UnreadableVector")
    table = tmp_path / "table.csv"
    table.write_text("name,value\na,1\nb,2\n")
    # A CSV without coordinates is not vector data: the raster path refuses it.
    refused(upload(client, admin, "bad", "t.csv", table.read_bytes()), "ingest.NotARaster")
    no_geometry = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None, "properties": {"a": 1}}]}  # fmt: skip
    refused(upload(client, admin, "bad", "n.geojson", json.dumps(no_geometry).encode()),
            "ingest.NoGeometry")  # fmt: skip
    _nothing_loaded(client, admin, sync_engine, "bad")


def test_mixed_crs_and_too_many_features(
    settings: Settings, apps: object, admin: dict[str, str], make_worker: MakeWorker,
    sync_engine: Engine, tmp_path: Path,
) -> None:  # fmt: skip
    from pyproj import CRS

    settings.ingest.vector_max_features = 2
    start_worker(settings, make_worker)
    wkb = shapely.to_wkb(np.array(polygons_in("EPSG:4326", (2.35, 48.85), 0.001), dtype=object))
    geo = {"version": "1.1.0", "primary_column": "a", "columns": {
        "a": {"encoding": "WKB", "geometry_types": []},
        "b": {"encoding": "WKB", "geometry_types": [],
              "crs": CRS.from_epsg(2154).to_json_dict()}}}  # fmt: skip
    table = pa.table({"a": wkb, "b": wkb}).replace_schema_metadata({"geo": json.dumps(geo)})
    pq.write_table(table, tmp_path / "mixed.parquet")
    with apps.client(settings) as client:  # type: ignore[attr-defined]
        data = (tmp_path / "mixed.parquet").read_bytes()
        refused(upload(client, admin, "many", "m.parquet", data), "ingest.MixedCrs")
        path = write_layer(tmp_path / "three.fgb", polygons_in("EPSG:4326", (2.35, 48.85), 0.001),
                           driver="FlatGeobuf")  # fmt: skip
        message = refused(upload(client, admin, "many", "three.fgb", path.read_bytes()),
                          "ingest.TooManyFeatures")  # fmt: skip
        assert "more than the limit of 2" in message
        _nothing_loaded(client, admin, sync_engine, "many")


def test_appends_extend_the_schema_and_type_conflicts_refuse_the_file(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    geoms = polygons_in("EPSG:4326", (2.35, 48.85), 0.001)
    first = write_layer(tmp_path / "a.gpkg", geoms)
    assert loaded(upload(client, admin, "parcels", "a.gpkg", first.read_bytes()))
    # A second file: the same properties plus a new one, the count as a real number is fine
    # for a number column only, so it stays an integer here.
    more = {"crop": np.array(["rye", "oat"], dtype=object), "count": np.array([7, 8]),
            "owner": np.array(["ann", "bob"], dtype=object)}  # fmt: skip
    second = write_layer(tmp_path / "b.geojson", polygons_in("EPSG:2154", (2.4, 48.9), 30)[:2],
                         "EPSG:2154", "GeoJSON", fields=more)  # fmt: skip
    assert loaded(upload(client, admin, "parcels", "b.geojson", second.read_bytes()))
    layer = layer_row(sync_engine, "parcels")
    assert [p["name"] for p in layer["properties"]] == ["crop", "area", "count", "day", "owner"]
    assert layer["feature_count"] == 5
    got = features(sync_engine, "parcels")
    assert [f["owner"] for f in got] == [None, None, None, "ann", "bob"]
    assert [f["area"] for f in got][3:] == [None, None]
    # The extent grew to hold the appended features.
    assert layer["north"] == pytest.approx(max(f["geom"].bounds[3] for f in got))
    # "count" as text: refused, and nothing of the file is in.
    clash = {"count": np.array(["many"], dtype=object), "extra": np.array([1.0])}
    third = write_layer(tmp_path / "c.gpkg", geoms[:1], fields=clash)
    message = refused(upload(client, admin, "parcels", "c.gpkg", third.read_bytes()),
                      "ingest.TypeConflict")  # fmt: skip
    assert "'count' is string in the file but integer" in message
    after = layer_row(sync_engine, "parcels")
    assert after["feature_count"] == 5 and len(after["properties"]) == 5


def test_layer_choice_for_appends_and_unknown_layers(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "two.gpkg"
    write_layer(path, polygons_in("EPSG:4326", (2.35, 48.85), 0.001), layer="a")
    write_layer(path, polygons_in("EPSG:4326", (2.45, 48.85), 0.001), layer="b")
    assert loaded(upload(client, admin, "two", "two.gpkg", path.read_bytes())) == ["two", "two-b"]
    # The very same bytes again: a duplicate, found at once (no job).
    r = client.post("/upload_sets", json={"collection": "two"}, headers=admin)
    again = client.post(f"/upload_sets/{r.json()['id']}/files", headers=admin,
                        files={"file": ("same.gpkg", path.read_bytes())})  # fmt: skip
    assert again.json()["status"] == "duplicate", again.text
    write_layer(path, [shapely.box(0, 0, 1, 1)], layer="c", fields={})  # other bytes
    message = refused(upload(client, admin, "two", "again.gpkg", path.read_bytes()),
                      "ingest.LayerChoiceNeeded")  # fmt: skip
    assert "'a', 'b', 'c'" in message
    refused(upload(client, admin, "two", "x.gpkg", path.read_bytes(), layer="zz"),
            "ingest.UnknownLayer")  # fmt: skip
    assert loaded(upload(client, admin, "two", "y.gpkg", path.read_bytes(), layer="b")) == ["two"]
    assert layer_row(sync_engine, "two")["feature_count"] == 6


def test_upload_set_options_datetime_property_and_annotates(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    from .vector_uploads import ensure_collection

    ensure_collection(client, admin, "imagery")
    fields = {"seen": np.array(["2024-01-01", "2024-01-05", "2024-01-09"], dtype="datetime64[D]"),
              "day": np.array(["2023-01-01T00:00", "2023-02-01T00:00", "2023-03-01T00:00"],
                              dtype="datetime64[ms]")}  # fmt: skip
    path = write_layer(tmp_path / "d.gpkg", polygons_in("EPSG:4326", (2.35, 48.85), 0.001),
                       fields=fields)  # fmt: skip
    bad = client.post("/upload_sets", headers=admin,
                      json={"collection": "imagery", "annotates": "nowhere"})  # fmt: skip
    assert bad.status_code == 404, bad.text
    record = upload(client, admin, "notes", "d.gpkg", path.read_bytes(),
                    datetime_property="seen", annotates="imagery")  # fmt: skip
    assert loaded(record) == ["notes"]
    upload_set = client.get(record["links"][0]["href"].rsplit("/files/", 1)[0], headers=admin)
    assert upload_set.json()["annotates"] == "imagery"
    assert upload_set.json()["datetime_property"] == "seen" and "layer" not in upload_set.json()
    layer = layer_row(sync_engine, "notes")
    assert layer["datetime_property"] == "seen" and layer["annotates"] == "imagery"
    assert layer["end_datetime"].isoformat() == "2024-01-09T00:00:00+00:00"
    refused(upload(client, admin, "notes2", "d.gpkg", path.read_bytes(),
                   datetime_property="missing"), "ingest.InvalidDatetimeProperty")  # fmt: skip
    # Annotations are of imagery: not of a vector collection, nor of the collection itself.
    for target, wanted in (("notes", "holds vector features"), ("imagery", "itself")):
        r = client.post("/upload_sets", headers=admin,
                        json={"collection": "imagery", "annotates": target})  # fmt: skip
        assert r.status_code == 400 and wanted in r.json()["description"], r.text


def test_a_raster_still_becomes_an_item_and_vector_data_stays_out_of_its_collection(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    tif = rasters.utm_rgb_tif(tmp_path, size=160, border=16)
    record = upload(client, admin, "orthos", "ortho.tif", tif.read_bytes())
    assert record["status"] == "ready" and record["item_id"] == "ortho", json.dumps(record)
    item = client.get("/collections/orthos/items/ortho", headers=admin).json()
    assert item["type"] == "Feature" and "stac_version" in item
    path = write_layer(tmp_path / "v.gpkg", polygons_in("EPSG:4326", (2.35, 48.85), 0.001))
    refused(upload(client, admin, "orthos", "v.gpkg", path.read_bytes()),
            "ingest.NotAVectorCollection")  # fmt: skip
    assert _feature_tables(sync_engine) == 0
