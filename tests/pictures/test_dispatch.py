"""Pictures of one trip through an upload set and a real worker: sequences, capture
duplicates and rejections come out as the set's options say; items, links and lines."""

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from server.settings import Settings
from tests import rasters
from tests.catalog.vector_uploads import start_worker
from tests.workers import MakeWorker, wait_for

from .photos import along, photo
from .uploads import by_name, items_of, new_set, ready, send

START = dt.datetime(2026, 6, 1, 10, 0, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
ORIGIN = (2.35, 48.85)


@pytest.fixture
def worker(settings: Settings, make_worker: MakeWorker) -> None:
    start_worker(settings, make_worker)


def _trip() -> list[tuple[str, bytes, tuple[float, float], dt.datetime]]:
    """5 pictures 5 m and 1 s apart, a 10-picture stop at 25 m, a 20-minute pause, then 3
    more 5 m apart and a 360 degree one: (name, bytes, lon/lat, time)."""
    shots: list[tuple[str, float, int, bool]] = [(f"a{i}", 5.0 * i, i, False) for i in range(5)]
    shots += [(f"b{i}", 25.0, 5 + i, False) for i in range(10)]
    shots += [(f"c{i}", 30.0 + 5 * i, 1214 + i, False) for i in range(3)]
    shots += [("c3-pano", 45.0, 1217, True)]
    out = []
    for n, (name, metres, second, pano) in enumerate(shots):
        where = along(*ORIGIN, metres)
        when = START + dt.timedelta(seconds=second)
        size = (512, 256) if pano else (320, 240)
        data = photo(*where, when=when, size=size, pano=pano, seed=n)
        out.append((f"{name}.jpg", data, where, when))
    return out


def test_a_trip_becomes_two_sequences(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine
) -> None:
    set_id = new_set(client, admin, "trip", split_time=60, split_distance=100,
                     duplicate_distance=1, duplicate_rotation=30)  # fmt: skip
    trip = _trip()
    for name, data, _, _ in trip:
        send(client, admin, set_id, name, data)
    send(client, admin, set_id, "nogps.jpg", photo(lon=None, lat=None))
    send(client, admin, set_id, "notime.jpg", photo(when=None, seed=99))
    send(client, admin, set_id, "island.jpg", photo(lon=0.0, lat=0.0, seed=98))
    send(client, admin, set_id, "broken.jpg", b"\xff\xd8\xff\xe0 not really a JPEG")
    dup = send(client, admin, set_id, "again.jpg", trip[0][1])  # a0's bytes
    assert dup["status"] == "duplicate" and dup["error"]["code"] == "ingest.Duplicate"
    doc = ready(client, admin, set_id)
    files = by_name(doc)
    monitor = [lk["href"] for lk in doc["links"] if lk.get("title") == "Dispatch of the pictures"]
    assert doc["dispatched"] and client.get(monitor[0], headers=admin).json()["status"] == (
        "successful"
    )
    results = client.get(f"{monitor[0]}/results", headers=admin).json()
    assert sorted(len(s["items"]) for s in results["sequences"]) == [4, 6]
    assert doc["counts"] == {"received": 0, "processing": 0, "ready": 10, "rejected": 13,
                             "duplicate": 1}, doc["counts"]  # fmt: skip
    codes = {n: f.get("error", {}).get("code") for n, f in files.items()}
    assert codes["nogps.jpg"] == "picture.NoPosition"
    assert codes["notime.jpg"] == "picture.NoCaptureTime"
    assert codes["island.jpg"] == "picture.InvalidCoordinates"
    assert codes["broken.jpg"] == "picture.Unreadable"
    # The stop: the first of the ten is kept, the nine others are capture duplicates.
    assert files["b0.jpg"]["status"] == "ready"
    assert {n for n, c in codes.items() if c == "picture.CaptureDuplicate"} == {
        f"b{i}.jpg" for i in range(1, 10)
    }
    items = {i["id"]: i for i in items_of(client, admin, "trip")}
    sequences: dict[str, list[Any]] = {}
    for item in items.values():
        sequences.setdefault(item["properties"]["terracat:sequence"], []).append(item)
    runs = sorted(
        [[i["id"] for i in sorted(s, key=lambda i: i["properties"]["terracat:sequence_rank"])]
         for s in sequences.values()], key=len, reverse=True,
    )  # fmt: skip
    assert runs == [["a0", "a1", "a2", "a3", "a4", "b0"], ["c0", "c1", "c2", "c3-pano"]]
    for run in runs:
        for rank, item_id in enumerate(run):
            links = {lk["rel"]: lk["href"] for lk in items[item_id]["links"]}
            prev_href = links.get("prev", "").rsplit("/", 1)[-1] or None
            next_href = links.get("next", "").rsplit("/", 1)[-1] or None
            assert prev_href == (run[rank - 1] if rank else None)
            assert next_href == (run[rank + 1] if rank + 1 < len(run) else None)
            assert links.get("prev", "http").startswith("http")
    by_id = {name.removesuffix(".jpg"): (where, when) for name, _, where, when in trip}
    a0 = items["a0"]
    assert a0["geometry"]["coordinates"] == pytest.approx(list(by_id["a0"][0]), abs=1e-7)
    got = dt.datetime.fromisoformat(a0["properties"]["datetime"].replace("Z", "+00:00"))
    assert got == by_id["a0"][1] and a0["properties"]["datetime"].endswith(".250000Z")
    local = dt.datetime.fromisoformat(a0["properties"]["terracat:datetime_local"])
    assert local == by_id["a0"][1] and local.utcoffset() == dt.timedelta(hours=2)
    assert a0["properties"]["view:azimuth"] == 90
    assert a0["properties"]["pers:interior_orientation"]["camera_model"] == "T-1"
    assert items["c3-pano"]["properties"]["terracat:picture_type"] == "equirectangular"
    with sync_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT ST_AsText(geom) AS wkt, picture_count, item_ids FROM picture_sequences "
            "WHERE collection_id = 'trip' ORDER BY picture_count DESC"
        )).mappings().all()  # fmt: skip
    assert [r["item_ids"] for r in rows] == runs
    line = shapely.from_wkt(rows[0]["wkt"])
    want = shapely.LineString([by_id[i][0] for i in runs[0]])
    assert shapely.equals_exact(line, want, tolerance=1e-7)


def test_options_change_the_cut(client: TestClient, admin: dict[str, str], worker: None) -> None:
    """No time split (a day), duplicates only within 0.1 m facing within 5 degrees, sorted by
    file name descending: one sequence, in reverse, the stop still de-duplicated."""
    set_id = new_set(client, admin, "trip2", split_time=86400, duplicate_distance=0.1,
                     duplicate_rotation=5, sort_method="filename-desc")  # fmt: skip
    trip = _trip()
    for name, data, _, _ in trip:
        send(client, admin, set_id, name, data)
    doc = ready(client, admin, set_id)
    assert doc["counts"]["ready"] == 10 and doc["counts"]["rejected"] == 9
    assert doc["sort_method"] == "filename-desc" and doc["split_time"] == 86400
    (sequence,) = {i["properties"]["terracat:sequence"] for i in items_of(client, admin, "trip2")}
    ranked = sorted(items_of(client, admin, "trip2"),
                    key=lambda i: i["properties"]["terracat:sequence_rank"])  # fmt: skip
    names = [i["id"] for i in ranked]
    assert names == sorted(names, reverse=True) and sequence


def test_sending_a_picture_again_replaces_it(
    client: TestClient, admin: dict[str, str], worker: None
) -> None:
    set_id = new_set(client, admin, "again")
    first = send(client, admin, set_id, "p.jpg", photo(heading=10, seed=1))
    send(client, admin, set_id, "q.jpg", photo(*along(*ORIGIN, 50), heading=10, seed=2))
    # Once the first was read (it waits for the dispatch), its new version replaces it.
    wait_for(client, admin, first["job"]["id"], "successful")
    second = send(client, admin, set_id, "p.jpg", photo(heading=200, seed=3))
    doc = ready(client, admin, set_id)
    assert [f["id"] for f in doc["files"] if f["filename"] == "p.jpg"] == [second["id"]]
    assert doc["counts"]["ready"] == 2 and len(doc["files"]) == 2
    found = {i["id"]: i for i in items_of(client, admin, "again")}
    assert found["p"]["properties"]["view:azimuth"] == 200


def test_a_raster_in_the_set_ends_last(
    client: TestClient, admin: dict[str, str], worker: None, tmp_path: Path
) -> None:
    """The set's last job is a raster's: its end queues the pictures' dispatch all the same."""
    set_id = new_set(client, admin, "mixed")
    send(client, admin, set_id, "p.jpg", photo(seed=5))
    tif = rasters.float_tif(tmp_path, size=64)
    send(client, admin, set_id, "scene.tif", tif.read_bytes())
    doc = ready(client, admin, set_id)
    assert doc["counts"]["ready"] == 2, doc["files"]
    assert {i["id"] for i in items_of(client, admin, "mixed")} == {"p", "scene"}


def test_options_are_checked(client: TestClient, admin: dict[str, str]) -> None:
    new_set(client, admin, "checked")
    for bad in ({"sort_method": "random"}, {"duplicate_rotation": 200}, {"split_time": -1},
                {"visibility": "friends"}):  # fmt: skip
        r = client.post("/upload_sets", json={"collection": "checked", **bad}, headers=admin)
        assert r.status_code == 400, (bad, r.text)
    # Pictures are as visible as their collection: asking for fewer readers is refused.
    r = client.post("/upload_sets", json={"collection": "checked", "visibility": "private"},
                    headers=admin)  # fmt: skip
    assert r.status_code == 400 and "public" in r.json()["description"]
    r = client.put("/collections/checked/rights", json={"visibility": "private"}, headers=admin)
    assert r.is_success, r.text
    for asked in ("private", "accounts", "public"):
        r = client.post("/upload_sets", json={"collection": "checked", "visibility": asked},
                        headers=admin)  # fmt: skip
        assert r.status_code == 201 and r.json()["visibility"] == asked


def test_deleting_a_set_removes_its_waiting_pictures(
    client: TestClient, admin: dict[str, str], worker: None, settings: Settings
) -> None:
    set_id = new_set(client, admin, "dropped")
    record = send(client, admin, set_id, "w.jpg", photo(seed=11))
    wait_for(client, admin, record["job"]["id"], "successful")
    folder = Path(settings.ingest.data_dir) / "assets" / "dropped" / "w"
    (copy,) = folder.iterdir()  # the folder of this copy of the picture (its file id)
    assert copy.name == record["id"].replace("-", "")[:12]
    assert {p.name for p in copy.iterdir()} == {"original.jpg", "sd.jpg", "thumbnail.jpg"}
    assert client.delete(f"/upload_sets/{set_id}", headers=admin).status_code == 204
    assert not folder.exists() or not any(folder.iterdir())
    assert items_of(client, admin, "dropped") == []


def test_the_set_document_is_one_snapshot(
    client: TestClient, admin: dict[str, str], sync_engine: Engine
) -> None:
    """A dispatch that commits between the reads of the set and of its files must not show
    every picture ready while the set is still undispatched (CI saw it once): a transaction
    that changes both commits just before the files are read, and the document shows it all
    or none of it."""
    set_id = new_set(client, admin, "snap")
    send(client, admin, set_id, "a.jpg", photo(seed=1))
    engine = client.app.state.uploads.engine.sync_engine  # type: ignore[attr-defined]
    fired: list[bool] = []

    def commit_meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if fired or "FROM upload_files" not in statement:
            return
        fired.append(True)
        with sync_engine.begin() as other:
            other.execute(text("UPDATE upload_sets SET title = 'changed' WHERE id = :i"),
                          {"i": set_id})  # fmt: skip
            other.execute(text("UPDATE upload_files SET status = 'ready' WHERE upload_set_id = :i"),
                          {"i": set_id})  # fmt: skip

    event.listen(engine, "before_cursor_execute", commit_meanwhile)
    try:
        doc = client.get(f"/upload_sets/{set_id}", headers=admin).json()
    finally:
        event.remove(engine, "before_cursor_execute", commit_meanwhile)
    assert fired
    assert (doc["title"], doc["files"][0]["status"]) == (None, "received"), doc
    doc = client.get(f"/upload_sets/{set_id}", headers=admin).json()
    assert (doc["title"], doc["files"][0]["status"]) == ("changed", "ready"), doc
