"""Vector files through the ingest process and a real worker: each format, several CRSs,
multi-layer files, repaired geometries; features, types and extent are what the file held."""

import datetime as dt
import io
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from fastapi.testclient import TestClient
from pyogrio.raw import write
from sqlalchemy import Engine

from server.settings import Settings
from tests.apps import AppPool
from tests.conftest import S3Server
from tests.workers import MakeWorker, wait_for

from .vector_uploads import (
    AREAS,
    COUNTS,
    CROPS,
    DAYS,
    ensure_collection,
    features,
    layer_row,
    loaded,
    lonlat,
    polygons_in,
    start_worker,
    upload,
    valid_collection,
    write_layer,
)

TYPES = {"crop": "string", "area": "number", "count": "integer", "day": "datetime"}


@pytest.fixture
def worker(settings: Settings, make_worker: MakeWorker) -> None:
    start_worker(settings, make_worker)


def _check_layer(engine: Engine, collection_id: str, crs: str, geoms: list[shapely.Geometry],
                 source_crs: str) -> None:  # fmt: skip
    layer = layer_row(engine, collection_id)
    assert {p["name"]: p["type"] for p in layer["properties"]} == TYPES
    assert layer["source_crs"] == source_crs and layer["geometry_type"] == "Polygon"
    assert layer["feature_count"] == 3 and layer["datetime_property"] == "day"
    # Matched by ``count`` (unique): FlatGeobuf stores features in its index's order.
    got = {f["count"]: f for f in features(engine, collection_id)}
    expected = [lonlat(g, crs) for g in geoms]
    for i, want in enumerate(expected):
        feature = got[int(COUNTS[i])]
        assert shapely.equals_exact(shapely.normalize(feature["geom"]), shapely.normalize(want),
                                    tolerance=1e-7)  # fmt: skip
        assert feature["crop"] == CROPS[i] and feature["area"] == AREAS[i]
        assert feature["day"] == DAYS[i].astype(dt.datetime).replace(tzinfo=dt.UTC)
    west, south, east, north = shapely.total_bounds(expected)
    assert np.allclose([layer["west"], layer["south"], layer["east"], layer["north"]],
                       [west, south, east, north], atol=1e-9)  # fmt: skip
    assert layer["start_datetime"] == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("crs", "driver", "name"),
    [
        ("EPSG:2154", "GPKG", "fields.gpkg"),
        ("EPSG:32631", "FlatGeobuf", "fields.fgb"),
        ("EPSG:4326", "GeoJSON", "fields.geojson"),
    ],
)
def test_a_file_becomes_a_vector_collection(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine,
    tmp_path: Path, crs: str, driver: str, name: str,
) -> None:  # fmt: skip
    geoms = polygons_in(crs, (2.35, 48.85), 100 if crs != "EPSG:4326" else 0.001)
    path = write_layer(tmp_path / name, geoms, crs, driver)
    # A name that says nothing: the content decides.
    record = upload(client, admin, "fields", "upload.bin", path.read_bytes())
    assert loaded(record) == ["fields"]
    _check_layer(sync_engine, "fields", crs, geoms, crs)
    doc = client.get("/collections/fields", headers=admin).json()
    assert doc["terracat:kind"] == "vector" and doc["itemType"] == "feature"


def _zipped(folder: Path, arcname_prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for part in sorted(folder.iterdir()):
            archive.write(part, arcname_prefix + part.name)
    return buffer.getvalue()


def _shapefile(tmp_path: Path, geoms: list[shapely.Geometry], crs: str) -> bytes:
    folder = tmp_path / "shp"
    folder.mkdir()
    # DBF has dates, not datetimes.
    fields = {"crop": CROPS, "area": AREAS, "count": COUNTS, "day": DAYS.astype("datetime64[D]")}
    write_layer(folder / "parcels.shp", geoms, crs, "ESRI Shapefile", fields=fields)
    return _zipped(folder, "data/")


def _geoparquet(tmp_path: Path, geoms: list[shapely.Geometry], crs: str) -> bytes:
    from pyproj import CRS

    table = pa.table({"geometry": shapely.to_wkb(np.array(geoms, dtype=object)),
                      "crop": CROPS, "area": AREAS, "count": COUNTS,
                      "day": pa.array(DAYS, pa.timestamp("ms", tz="UTC"))})  # fmt: skip
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                    "crs": CRS.from_user_input(crs).to_json_dict()}}}  # fmt: skip
    table = table.replace_schema_metadata({b"geo": __import__("json").dumps(geo).encode()})
    pq.write_table(table, tmp_path / "fields.parquet")
    return (tmp_path / "fields.parquet").read_bytes()


@pytest.mark.parametrize(
    ("kind", "crs", "types"),
    [
        ("shapefile", "EPSG:2154", {**TYPES, "day": "date"}),
        ("geoparquet", "EPSG:32631", TYPES),
        ("geojsonseq", "EPSG:4326", TYPES),
        ("csv-wkt", "EPSG:4326", TYPES),
        ("kml", "EPSG:4326", None),
    ],
)
def test_every_format_is_read_by_its_content(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine,
    tmp_path: Path, kind: str, crs: str, types: dict[str, str] | None,
) -> None:  # fmt: skip
    geoms = polygons_in(crs, (2.35, 48.85), 100 if crs != "EPSG:4326" else 0.001)
    if kind == "shapefile":
        data = _shapefile(tmp_path, geoms, crs)
    elif kind == "geoparquet":
        data = _geoparquet(tmp_path, geoms, crs)
    else:
        driver, suffix, options = {
            "geojsonseq": ("GeoJSONSeq", "geojsonl", {}),
            "kml": ("KML", "kml", {}),
            "csv-wkt": ("CSV", "csv", {"layer_options": {"GEOMETRY": "AS_WKT"}}),
        }[kind]
        data = write_layer(tmp_path / f"f.{suffix}", geoms, crs, driver, **options).read_bytes()
    record = upload(client, admin, "fields", "no-extension", data)
    assert loaded(record) == ["fields"]
    layer = layer_row(sync_engine, "fields")
    assert layer["feature_count"] == 3 and layer["source_crs"] == crs
    props = {p["name"]: p["type"] for p in layer["properties"]}
    if types is not None:
        assert props == types
    else:  # KML keeps its typed ExtendedData fields, as text unless the schema says otherwise
        assert {"crop", "area"} <= set(props) and props["area"] == "number"
    got = features(sync_engine, "fields")
    expected = sorted((lonlat(g, crs) for g in geoms), key=lambda g: g.bounds)
    for feature, want in zip(sorted(got, key=lambda f: f["geom"].bounds), expected, strict=True):
        assert shapely.equals_exact(shapely.normalize(feature["geom"]), shapely.normalize(want),
                                    tolerance=1e-7)  # fmt: skip
    assert sorted(f["crop"] for f in got) == sorted(CROPS)


def test_csv_with_lon_lat_columns(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    points = [shapely.Point(2.3, 48.8), shapely.Point(2.4, 48.9), shapely.Point(2.5, 48.7)]
    path = write_layer(tmp_path / "p.csv", points, "EPSG:4326", "CSV",
                       layer_options={"GEOMETRY": "AS_XY"})  # fmt: skip
    assert loaded(upload(client, admin, "sites", "sites.txt", path.read_bytes())) == ["sites"]
    layer = layer_row(sync_engine, "sites")
    assert layer["geometry_type"] == "Point" and layer["source_crs"] == "EPSG:4326"
    # The coordinate columns became the geometry, not properties.
    assert {p["name"]: p["type"] for p in layer["properties"]} == TYPES
    assert [f["geom"] for f in features(sync_engine, "sites")] == points
    assert (layer["west"], layer["south"], layer["east"], layer["north"]) == (2.3, 48.7, 2.5, 48.9)


def test_every_layer_of_a_geopackage_becomes_a_collection(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "survey.gpkg"
    write_layer(path, polygons_in("EPSG:2154", (2.35, 48.85), 50), "EPSG:2154", layer="parcels")
    write_layer(path, [shapely.Point(652000, 6862000)], "EPSG:2154", layer="wells  (2024)",
                fields={"depth": np.array([12.5])})  # fmt: skip
    write(str(path), None, [np.array([1, 2])], ["k"], layer="lookup", driver="GPKG")  # no geometry
    record = upload(client, admin, "survey", "survey.gpkg", path.read_bytes())
    assert loaded(record) == ["survey", "survey-wells-2024"]
    assert layer_row(sync_engine, "survey")["feature_count"] == 3
    wells = layer_row(sync_engine, "survey-wells-2024")
    assert wells["geometry_type"] == "Point" and wells["properties"][0]["name"] == "depth"
    (well,) = features(sync_engine, "survey-wells-2024")
    assert shapely.equals_exact(well["geom"], lonlat(shapely.Point(652000, 6862000), "EPSG:2154"),
                                tolerance=1e-9)  # fmt: skip
    doc = client.get("/collections/survey-wells-2024", headers=admin).json()
    assert doc["terracat:kind"] == "vector" and doc["itemType"] == "feature"
    valid_collection(doc)
    assert doc["extent"]["spatial"]["bbox"][0][0] == pytest.approx(wells["west"])
    links = {link["href"] for link in record["links"] if link["rel"] == "collection"}
    assert links == {"http://testserver/collections/survey",
                     "http://testserver/collections/survey-wells-2024"}  # fmt: skip
    # The upload set may name the one layer to load instead.
    record = upload(client, admin, "wells", "survey.gpkg", path.read_bytes(),
                    layer="wells  (2024)")  # fmt: skip
    assert loaded(record) == ["wells"] and layer_row(sync_engine, "wells")["feature_count"] == 1


def test_invalid_geometries_are_repaired(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    spike = shapely.Polygon([(2, 0), (3, 0), (3, 1), (2, 1), (2, 0), (2, -1), (2, 0)])
    good = shapely.box(4, 0, 5, 1)
    assert not bowtie.is_valid and not spike.is_valid
    path = write_layer(tmp_path / "bad.gpkg", [bowtie, spike, good])
    assert loaded(upload(client, admin, "repaired", "bad.gpkg", path.read_bytes()))
    got = features(sync_engine, "repaired")
    assert all(f["geom"].is_valid for f in got)
    assert got[0]["geom"].area == pytest.approx(0.5) and got[1]["geom"].area == pytest.approx(1)
    assert got[2]["geom"].equals(good)
    # A bow tie repairs into a MultiPolygon: the layer's type says so.
    assert layer_row(sync_engine, "repaired")["geometry_type"] == "MultiPolygon"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_a_vector_file_by_url(
    settings: Settings, apps: AppPool, admin: dict[str, str], make_worker: MakeWorker,
    sync_engine: Engine, tmp_path: Path,
) -> None:  # fmt: skip
    settings.ingest.url_allow_private = True
    start_worker(settings, make_worker)
    folder = tmp_path / "www"
    folder.mkdir()
    write_layer(folder / "parcels.fgb", polygons_in("EPSG:3857", (2.35, 48.85), 80),
                "EPSG:3857", "FlatGeobuf")  # fmt: skip
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with apps.client(settings) as client:
            ensure_collection(client, admin, "linked")
            r = client.post("/upload_sets", json={"collection": "linked"}, headers=admin)
            href = f"http://127.0.0.1:{httpd.server_address[1]}/parcels.fgb"
            r = client.post(f"/upload_sets/{r.json()['id']}/files", json={"href": href},
                            headers=admin)  # fmt: skip
            assert r.status_code == 201, r.text
            job = wait_for(client, admin, r.json()["job"]["id"], "successful", "failed")
            assert job["status"] == "successful", job
    finally:
        httpd.shutdown()
        httpd.server_close()
    layer = layer_row(sync_engine, "linked")
    assert layer["feature_count"] == 3 and layer["source_crs"] == "EPSG:3857"


def test_a_crs_without_code_is_kept_as_wkt(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine, tmp_path: Path
) -> None:
    laea = "+proj=laea +lat_0=48 +lon_0=2 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
    geoms = polygons_in(laea, (2.35, 48.85), 100)
    path = write_layer(tmp_path / "laea.gpkg", geoms, laea)
    assert loaded(upload(client, admin, "laea", "laea.gpkg", path.read_bytes())) == ["laea"]
    layer = layer_row(sync_engine, "laea")
    assert layer["source_crs"].startswith("PROJCRS[") and "Lambert" in layer["source_crs"]
    got = {f["count"]: f["geom"] for f in features(sync_engine, "laea")}
    for i, geom in enumerate(geoms):
        want = shapely.normalize(lonlat(geom, laea))
        assert shapely.equals_exact(shapely.normalize(got[int(COUNTS[i])]), want, tolerance=1e-7)


def test_a_vector_file_staged_in_object_storage(
    settings: Settings, apps: AppPool, admin: dict[str, str], make_worker: MakeWorker,
    s3_server: S3Server, sync_engine: Engine, tmp_path: Path,
) -> None:  # fmt: skip
    settings.storage = s3_server.settings(s3_server.make_bucket(), "terracat")
    start_worker(settings, make_worker)
    geoms = polygons_in("EPSG:2154", (2.35, 48.85), 100)
    data = _shapefile(tmp_path, geoms, "EPSG:2154")  # the job fetches it from the bucket
    with apps.client(settings) as client:
        assert loaded(upload(client, admin, "s3-parcels", "p.zip", data)) == ["s3-parcels"]
    assert layer_row(sync_engine, "s3-parcels")["feature_count"] == 3
