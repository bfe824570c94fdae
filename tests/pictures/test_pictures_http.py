"""Pictures through the real HTTP stack: a live uvicorn, a real ``terracat worker`` process,
multipart and tus; web copies fetched by their hrefs; pystac-client finds the pictures."""

import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pystac
import pytest
from PIL import Image
from pystac_client import Client
from tusclient import client as tus_client

from server.ingest_client import Sha256Uploader
from tests.factories import collection
from tests.server.ingest_stack import Stack, Workers, live_stack, running_workers, settled

from .photos import along, photo

GPS_IFD = 0x8825
START = dt.datetime(2026, 6, 1, 8, 0, 0, 500000, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def stack(databases: Any) -> Iterator[Stack]:
    with live_stack(databases, "pictures") as running:
        yield running


@pytest.fixture(scope="module")
def workers(stack: Stack) -> Iterator[Workers]:
    with running_workers(stack) as running:
        yield running


def _image(http: httpx.Client, href: str) -> Image.Image:
    assert href.startswith("http"), href
    r = http.get(href, follow_redirects=True)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.status_code
    image = Image.open(io.BytesIO(r.content))
    image.load()
    return image


@pytest.fixture(scope="module")
def published(stack: Stack, workers: Workers) -> dict[str, Any]:
    """Three pictures (multipart and tus) of one set, published: their items by id."""
    shots = {
        "turned.jpg": photo(size=(800, 600), orientation=6, when=START, seed=1),
        "pano.jpg": photo(*along(2.35, 48.85, 10), size=(1024, 512), pano=True,
                          when=START + dt.timedelta(seconds=2), seed=2),
        "plain.jpg": photo(*along(2.35, 48.85, 20), when=START + dt.timedelta(seconds=4), seed=3),
    }  # fmt: skip
    with stack.http() as http:
        http.post("/collections", json=collection("street")).raise_for_status()
        r = http.post("/upload_sets", json={"collection": "street", "expected_files": 3})
        set_id = r.json()["id"]
        for name in ("turned.jpg", "pano.jpg"):
            files = {"file": (name, shots[name])}
            assert http.post(f"/upload_sets/{set_id}/files", files=files).status_code == 201
        tus = tus_client.TusClient(stack.url + "uploads/", headers=stack.server.auth)
        Sha256Uploader(file_stream=io.BytesIO(shots["plain.jpg"]), client=tus, chunk_size=8192,
                       metadata={"filename": "plain.jpg", "upload_set": set_id},
                       upload_checksum=True).upload()  # fmt: skip
        # expected_files reached: no completion needed.
        doc = settled(http, set_id)
        assert doc["counts"]["ready"] == 3, doc["files"]
        r = http.get("/collections/street/items?limit=10")
        return {i["id"]: i for i in r.json()["features"]} | {"_shots": shots}


def test_web_copies_turned_and_without_tags(stack: Stack, published: dict[str, Any]) -> None:
    assets = published["turned"]["assets"]
    assert set(assets) == {"original", "sd", "thumbnail"}
    with stack.http() as http:
        thumb, sd = _image(http, assets["thumbnail"]["href"]), _image(http, assets["sd"]["href"])
        original = http.get(assets["original"]["href"], follow_redirects=True).content
    # EXIF orientation 6 (turn 90 degrees clockwise): 800 x 600 is shown 600 x 800, and the
    # red top-left corner of the stored pixels is the top-right one of the shown picture.
    assert thumb.size == (375, 500) and sd.size == (600, 800)
    for image in (thumb, sd):
        r, g, b = image.convert("RGB").getpixel((image.width - 3, 2))  # type: ignore[misc]
        assert r > 200 and g < 60 and b < 60
        r, g, b = image.convert("RGB").getpixel((2, 2))  # type: ignore[misc]
        assert r < 60
        exif = image.getexif()
        assert len(exif) == 0 and not exif.get_ifd(GPS_IFD)
        assert b"SN-12345" not in image.info.get("exif", b"")
    assert original == published["_shots"]["turned.jpg"]  # the original, tags and all
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)


def test_a_360_picture_has_tiles(stack: Stack, published: dict[str, Any]) -> None:
    pano = published["pano"]
    tiles = pano["properties"]["terracat:tiles"]
    assert (tiles["cols"], tiles["rows"]) == (8, 4)
    names = {n for n in pano["assets"] if n.startswith("tile_")}
    assert names == {f"tile_{c}_{r}" for c in range(8) for r in range(4)}
    with stack.http() as http:
        tile = _image(http, pano["assets"]["tile_7_3"]["href"])
    assert tile.size == (1024 // 8, 512 // 4) and len(tile.getexif()) == 0


def test_items_link_their_neighbours(stack: Stack, published: dict[str, Any]) -> None:
    ranks = {i: published[i]["properties"]["terracat:sequence_rank"]
             for i in ("turned", "pano", "plain")}  # fmt: skip
    assert ranks == {"turned": 1, "pano": 2, "plain": 3}
    links = {lk["rel"]: lk["href"] for lk in published["pano"]["links"]}
    again = pystac.Item.from_dict(published["pano"]).to_dict(transform_hrefs=False)
    assert again["properties"] == published["pano"]["properties"]
    assert again["assets"] == published["pano"]["assets"]
    assert pystac.Item.from_dict(again).to_dict(transform_hrefs=False) == again
    with stack.http() as http:
        assert http.get(links["prev"]).json()["id"] == "turned"
        assert http.get(links["next"]).json()["id"] == "plain"


def test_pystac_client_finds_pictures_by_bbox_and_datetime(
    stack: Stack, published: dict[str, Any]
) -> None:
    client = Client.open(stack.url, headers=stack.server.auth)
    lon10, _ = along(2.35, 48.85, 10)
    west_half = client.search(collections=["street"], bbox=[2.3499, 48.8499, lon10 + 1e-6, 48.8501])
    assert {i.id for i in west_half.items()} == {"turned", "pano"}
    late = START + dt.timedelta(seconds=1)
    found = client.search(collections=["street"], datetime=[late, START + dt.timedelta(hours=1)])
    assert {i.id for i in found.items()} == {"pano", "plain"}
    item = next(client.search(ids=["plain"], collections=["street"]).items())
    assert item.datetime == START + dt.timedelta(seconds=4)
    assert item.geometry is not None and item.geometry["type"] == "Point"
