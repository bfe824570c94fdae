"""Items and collections link their maps: ``tilejson``, ``xyz``, ``wmts`` (tiler/links.py).

Over collection ``maps`` (real COG items ``rgb`` and ``rgbn``, or ``rgb`` alone): every link is
absolute, and
fetched it gives a working TileJSON, a PNG tile with pixels, WMTS capabilities naming the
link's layer. Documents the tiler cannot draw get none.
"""

import xml.etree.ElementTree as ET
from typing import Any

import morecantile
from fastapi.testclient import TestClient

from tests.factories import collection, item
from tests.tiler.conftest import COLLECTION, decode

BASE = "http://testserver"
WMTS = {"wmts": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
TMS = morecantile.tms.get("WebMercatorQuad")


def map_links(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = [link for link in doc["links"] if link["rel"] in ("tilejson", "xyz", "wmts")]
    by_rel = {link["rel"]: link for link in found}
    assert len(by_rel) == len(found), found  # one of each
    return by_rel


def get(client: TestClient, href: str, **params: Any) -> Any:
    assert href.startswith(BASE + "/"), href
    r = client.get(href.removeprefix(BASE), params=params)
    assert r.status_code == 200, (href, r.text)
    return r


def tile_over(bbox: list[float], zoom: int = 14) -> morecantile.Tile:
    return TMS.tile((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2, zoom)


def check_map_links(client: TestClient, doc: dict[str, Any], bbox: list[float]) -> None:
    """The three links of ``doc`` work as a client follows them."""
    links = map_links(doc)
    assert set(links) == {"tilejson", "xyz", "wmts"}
    assert links["tilejson"]["type"] == "application/json"
    assert links["xyz"]["type"] == links["wmts"]["type"] == "image/png"
    tilejson = get(client, links["tilejson"]["href"]).json()
    assert tilejson["tilejson"] == "3.0.0" and tilejson["tiles"][0].startswith(BASE + "/")
    tile = tile_over(bbox)
    href = links["xyz"]["href"].format(z=tile.z, x=tile.x, y=tile.y)
    r = get(client, href)
    pixels = decode(r.content)
    assert r.headers["content-type"] == "image/png" and pixels.shape[1:] == (256, 256)
    assert (pixels[-1] == 255).any()  # the data is there
    root = ET.fromstring(get(client, links["wmts"]["href"]).content)
    layers = [e.text for e in root.iterfind("wmts:Contents/wmts:Layer/ows:Identifier", WMTS)]
    assert links["wmts"]["wmts:layer"] in layers, layers


def test_an_item_links_its_maps(maps: TestClient, maps_rgb: dict[str, Any]) -> None:
    doc = maps.get(f"/collections/{COLLECTION}/items/rgb").json()
    check_map_links(maps, doc, doc["bbox"])
    assert map_links(doc)["xyz"]["href"] == (
        f"{BASE}/collections/maps/items/rgb/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
    )


def test_pages_and_searches_link_the_maps_of_their_items(maps: TestClient) -> None:
    for path in (f"/collections/{COLLECTION}/items", "/search"):
        features = maps.get(path).json()["features"]
        assert {f["id"] for f in features} == {"rgb", "rgbn"}
        for feature in features:
            assert set(map_links(feature)) == {"tilejson", "xyz", "wmts"}


def test_a_collection_links_its_mosaic(client: TestClient, rgb_item: dict[str, Any]) -> None:
    doc = client.get(f"/collections/{COLLECTION}").json()
    check_map_links(client, doc, rgb_item["bbox"])
    assert map_links(doc)["wmts"]["href"] == f"{BASE}/collections/maps/WMTSCapabilities.xml"
    listed = client.get("/collections").json()["collections"]
    assert [map_links(c) for c in listed] == [map_links(doc)]


def test_links_name_the_asset_when_none_is_drawn_by_default(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert client.post("/collections", json=collection("odd"), headers=admin).status_code == 201
    doc = item("visual-only")
    doc["assets"] = {"visual": {"href": "s3://b/v.tif", "type": "image/tiff; profile=cog",
                                "roles": ["visual"]}}  # fmt: skip
    assert client.post("/collections/odd/items", json=doc, headers=admin).status_code == 201
    links = map_links(client.get("/collections/odd/items/visual-only").json())
    assert links["xyz"]["href"].endswith("{z}/{x}/{y}.png?assets=visual")
    assert "assets=visual" in links["tilejson"]["href"]
    assert links["wmts"]["href"].endswith("/WMTSCapabilities.xml?assets=visual")


def test_documents_without_a_raster_the_tiler_reads_have_no_map_links(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert client.post("/collections", json=collection("pics"), headers=admin).status_code == 201
    assert client.post("/collections", json=collection("empty"), headers=admin).status_code == 201
    doc = item("photo")
    doc["assets"] = {"thumbnail": {"href": "s3://b/p.png", "type": "image/png"},
                     "meta": {"href": "s3://b/p.xml"}}  # fmt: skip
    # a link another tiler left: not ours to keep, and no map of ours replaces it here
    doc["links"].append({"rel": "xyz", "href": "https://elsewhere.example/{z}/{x}/{y}.png"})
    assert client.post("/collections/pics/items", json=doc, headers=admin).status_code == 201
    stored = client.get("/collections/pics/items/photo").json()
    assert [lk["href"] for lk in stored["links"] if lk["rel"] == "xyz"] == [
        "https://elsewhere.example/{z}/{x}/{y}.png"
    ]
    assert "tilejson" not in {lk["rel"] for lk in stored["links"]}
    for collection_id in ("pics", "empty"):
        assert map_links(client.get(f"/collections/{collection_id}").json()) == {}


def test_our_links_replace_those_another_tiler_left(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert client.post("/collections", json=collection("c"), headers=admin).status_code == 201
    doc = item("i")  # a GeoTIFF asset named data
    doc["links"].append({"rel": "tilejson", "href": "https://titiler.example/tilejson.json"})
    assert client.post("/collections/c/items", json=doc, headers=admin).status_code == 201
    links = map_links(client.get("/collections/c/items/i").json())
    assert links["tilejson"]["href"].startswith(f"{BASE}/collections/c/items/i/")
