"""OGC API - Tiles metadata: tile matrix sets, tileset lists and tileset metadata (ogc/tiles.py)."""

from typing import Any

import mapbox_vector_tile
import morecantile
import pytest
from fastapi.testclient import TestClient

from tests.factories import collection, item

CONF = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
TMS_CONF = "http://www.opengis.net/spec/tms/2.0/conf/"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
MVT = "application/vnd.mapbox-vector-tile"
BASE = "http://testserver/"
OFFERED = ["WebMercatorQuad", "WorldCRS84Quad"]


def links(doc: dict[str, Any], rel: str) -> list[dict[str, Any]]:
    return [link for link in doc["links"] if link["rel"] == rel]


def link(doc: dict[str, Any], rel: str) -> dict[str, Any]:
    found = links(doc, rel)
    assert len(found) == 1, (rel, doc["links"])
    return found[0]


def fill(template: str, tile: morecantile.Tile) -> str:
    """What an OGC client does with a templated tile link: substitute by name."""
    return (
        template.replace("{tileMatrix}", str(tile.z))
        .replace("{tileRow}", str(tile.y))
        .replace("{tileCol}", str(tile.x))
    )


def relative(href: str) -> str:
    assert href.startswith(BASE), href
    return "/" + href.removeprefix(BASE)


@pytest.fixture
def seeded(client: TestClient, admin: dict[str, str]) -> TestClient:
    doc = collection("c1", title="Scenes", bbox=[5.0, 40.0, 15.0, 50.0])
    assert client.post("/collections", json=doc, headers=admin).status_code == 201
    r = client.post("/collections/c1/items", json=item("a", 10.0, 46.0, size=0.5), headers=admin)
    assert r.status_code == 201, r.text
    return client


# -- tile matrix sets ---------------------------------------------------------------------------
def test_tile_matrix_sets_list(client: TestClient) -> None:
    r = client.get("/tileMatrixSets")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert link(doc, "self")["href"] == BASE + "tileMatrixSets"
    listed = {t["id"]: t for t in doc["tileMatrixSets"]}
    assert list(listed) == OFFERED
    web = listed["WebMercatorQuad"]
    assert web["uri"] == "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
    assert web["crs"] == "http://www.opengis.net/def/crs/EPSG/0/3857"
    assert web["title"]
    for entry in listed.values():
        definition = client.get(relative(link(entry, "self")["href"]))
        assert definition.status_code == 200 and definition.json()["id"] == entry["id"]
        assert link(entry, REL + "tiling-scheme")["href"] == link(entry, "self")["href"]


@pytest.mark.parametrize("tms_id", OFFERED)
def test_tile_matrix_set_definition(client: TestClient, tms_id: str) -> None:
    doc = client.get(f"/tileMatrixSets/{tms_id}").json()
    expected = morecantile.tms.get(tms_id)
    assert doc["id"] == tms_id and doc["uri"] == expected.uri
    assert doc["crs"] == str(expected.crs.root)
    assert len(doc["tileMatrices"]) == expected.maxzoom - expected.minzoom + 1
    first = doc["tileMatrices"][0]
    assert {"id", "scaleDenominator", "cellSize", "pointOfOrigin", "tileWidth", "tileHeight",
            "matrixWidth", "matrixHeight"} <= set(first)  # fmt: skip
    assert morecantile.TileMatrixSet.model_validate(doc).id == tms_id  # round-trips


@pytest.mark.parametrize("tms_id", OFFERED)
def test_tile_matrix_set_definition_also_speaks_tms_1(client: TestClient, tms_id: str) -> None:
    """GDAL before 3.7 parses TMS 1.0 JSON only: the tilesets link a definition with the 1.0
    names next to 2.0's; the plain one keeps them out, as morecantile refuses them."""
    plain = client.get(f"/tileMatrixSets/{tms_id}").json()
    assert not {"identifier", "supportedCRS"} & set(plain)
    doc = client.get(f"/tileMatrixSets/{tms_id}", params={"compat": "tms1"}).json()
    assert {k: v for k, v in doc.items() if k not in ("identifier", "supportedCRS")} == {
        **plain, "tileMatrices": doc["tileMatrices"]}  # fmt: skip
    expected = morecantile.tms.get(tms_id)
    assert doc["identifier"] == tms_id and doc["supportedCRS"] == doc["crs"]
    box = expected.xy_bbox
    assert doc["boundingBox"]["lowerLeft"] == [box.left, box.bottom]
    assert doc["boundingBox"]["upperRight"] == [box.right, box.top]
    for matrix in doc["tileMatrices"]:
        assert matrix["identifier"] == matrix["id"]
        assert matrix["topLeftCorner"] == matrix["pointOfOrigin"]
    assert client.get(f"/tileMatrixSets/{tms_id}", params={"compat": "tms9"}).status_code == 400


def test_unknown_tile_matrix_set(client: TestClient) -> None:
    for path in ("/tileMatrixSets/NoSuchQuad", "/tileMatrixSets/GNOSISGlobalGrid"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["code"] == "tiles.UnknownTileMatrixSet"


# -- tileset list -------------------------------------------------------------------------------
def test_collection_tilesets_list(seeded: TestClient) -> None:
    r = seeded.get("/collections/c1/tiles")
    assert r.status_code == 200
    doc = r.json()
    assert link(doc, "self")["href"] == BASE + "collections/c1/tiles"
    assert link(doc, "collection")["href"] == BASE + "collections/c1"
    kinds = [(t["dataType"], relative(link(t, "self")["href"])) for t in doc["tilesets"]]
    assert kinds == [
        ("vector", "/collections/c1/items/tiles/WebMercatorQuad"),
        ("vector", "/collections/c1/items/tiles/WorldCRS84Quad"),
        ("map", "/collections/c1/tiles/WebMercatorQuad"),
        ("map", "/collections/c1/tiles/WorldCRS84Quad"),
    ]
    for tileset in doc["tilesets"]:
        # /req/tilesets-list/tileset-links: dataType, crs, self, tiling-scheme, tileMatrixSetURI
        scheme = link(tileset, REL + "tiling-scheme")["href"]
        tms_id = scheme.removesuffix("?compat=tms1").rsplit("/", 1)[1]
        tms = morecantile.tms.get(tms_id)
        assert tileset["crs"] == str(tms.crs.root)
        assert tileset["tileMatrixSetURI"] == tms.uri
        assert tileset["title"].startswith("Scenes: ")
        full = seeded.get(relative(link(tileset, "self")["href"]))
        assert full.status_code == 200
        assert full.json()["dataType"] == tileset["dataType"]
        assert seeded.get(relative(link(tileset, REL + "tiling-scheme")["href"])).status_code == 200


def test_tilesets_of_unknown_collection(client: TestClient) -> None:
    for path in (
        "/collections/nope/tiles",
        "/collections/nope/tiles/WebMercatorQuad",
        "/collections/nope/items/tiles/WebMercatorQuad",
    ):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["code"] == "catalog.NotFound", path


def test_tileset_in_unknown_tile_matrix_set(seeded: TestClient) -> None:
    for path in ("/collections/c1/tiles/NoSuchQuad", "/collections/c1/items/tiles/NoSuchQuad"):
        r = seeded.get(path)
        assert r.status_code == 404 and r.json()["code"] == "tiles.UnknownTileMatrixSet"


# -- tileset metadata ---------------------------------------------------------------------------
@pytest.mark.parametrize("tms_id", OFFERED)
def test_vector_tileset_template_gives_the_tile(seeded: TestClient, tms_id: str) -> None:
    doc = seeded.get(f"/collections/c1/items/tiles/{tms_id}").json()
    tms = morecantile.tms.get(tms_id)
    assert doc["dataType"] == "vector" and doc["crs"] == str(tms.crs.root)
    assert doc["tileMatrixSetURI"] == tms.uri
    assert doc["description"] == "Test collection c1"
    assert link(doc, "self")["href"] == f"{BASE}collections/c1/items/tiles/{tms_id}"
    assert link(doc, REL + "tiling-scheme")["href"] == (
        f"{BASE}tileMatrixSets/{tms_id}?compat=tms1"
    )
    assert link(doc, "collection")["href"] == f"{BASE}collections/c1"
    template = link(doc, "item")
    assert template["templated"] is True and template["type"] == MVT
    assert template["href"] == (
        f"{BASE}collections/c1/items/tiles/{tms_id}/{{tileMatrix}}/{{tileCol}}/{{tileRow}}.mvt"
    )
    assert doc["boundingBox"] == {  # the collection's extent: its one item's
        "lowerLeft": [10.0, 46.0],
        "upperRight": [10.5, 46.5],
        "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    }
    assert doc["mediaTypes"] == [MVT]
    (layer,) = doc["layers"]
    assert layer["id"] == "c1" and layer["dataType"] == "vector"
    assert {"id", "collection", "datetime", "gsd"} <= set(layer["propertiesSchema"]["properties"])

    tile = tms.tile(10.2, 46.2, 7)
    assert tile.x != tile.y  # so that a row/column mix-up cannot pass
    r = seeded.get(relative(fill(template["href"], tile)))
    assert r.status_code == 200 and r.headers["content-type"] == MVT
    layers = mapbox_vector_tile.decode(r.content)
    assert [f["properties"]["id"] for f in layers["c1"]["features"]] == ["a"]


def test_web_mercator_tileset_is_also_tilejson(seeded: TestClient) -> None:
    """MapLibre can take the tileset URL as a vector source ``url``."""
    doc = seeded.get("/collections/c1/items/tiles/WebMercatorQuad").json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"] == [
        f"{BASE}collections/c1/items/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.mvt"
    ]
    assert (doc["minzoom"], doc["maxzoom"]) == (0, 24)
    assert doc["bounds"] == [10.0, 46.0, 10.5, 46.5]  # the item's, not the declared extent
    (layer,) = doc["vector_layers"]
    assert layer["id"] == "c1"
    assert layer["fields"]["datetime"] == "String" and layer["fields"]["gsd"] == "Number"
    tile = morecantile.tms.get("WebMercatorQuad").tile(10.2, 46.2, 9)
    href = doc["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y)
    assert seeded.get(relative(href)).status_code == 200
    # TileJSON bounds cannot cross the antimeridian or reach the poles.
    assert "tilejson" not in seeded.get("/collections/c1/items/tiles/WorldCRS84Quad").json()


def test_tilejson_bounds_of_odd_extents(client: TestClient, admin: dict[str, str]) -> None:
    doc = collection("wide", bbox=[170.0, -90.0, -170.0, 10.0])
    assert client.post("/collections", json=doc, headers=admin).status_code == 201
    tileset = client.get("/collections/wide/items/tiles/WebMercatorQuad").json()
    assert tileset["bounds"] == [-180.0, -85.0511287798, 180.0, 10.0]
    assert tileset["boundingBox"]["lowerLeft"] == [170.0, -90.0]


@pytest.mark.parametrize("tms_id", OFFERED)
def test_map_tileset_points_at_the_raster_tiles(seeded: TestClient, tms_id: str) -> None:
    doc = seeded.get(f"/collections/c1/tiles/{tms_id}").json()
    assert doc["dataType"] == "map" and "layers" not in doc
    assert link(doc, "self")["href"] == f"{BASE}collections/c1/tiles/{tms_id}"
    tiles = f"{BASE}collections/c1/tiles/{tms_id}/{{tileMatrix}}/{{tileCol}}/{{tileRow}}"
    templates = {lk.get("type"): lk["href"] for lk in links(doc, "item")}
    assert templates == {"image/png": tiles + ".png", "image/jpeg": tiles + ".jpg", None: tiles}
    assert all(lk["templated"] is True for lk in links(doc, "item"))
    assert doc["mediaTypes"] == ["image/png", "image/jpeg"]
    # the items give no gsd: every zoom, each matrix whole
    tms = morecantile.tms.get(tms_id)
    limits = doc["tileMatrixSetLimits"]
    assert [lim["tileMatrix"] for lim in limits] == [str(z) for z in range(tms.maxzoom + 1)]
    for lim in limits:
        matrix = tms.matrix(int(lim["tileMatrix"]))
        assert (lim["minTileCol"], lim["maxTileCol"]) == (0, matrix.matrixWidth - 1)
        assert (lim["minTileRow"], lim["maxTileRow"]) == (0, matrix.matrixHeight - 1)
    assert "tileMatrixSetLimits" not in seeded.get(f"/collections/c1/items/tiles/{tms_id}").json()


def test_links_follow_the_proxy(seeded: TestClient, proxied: TestClient) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "maps.example.org",
               "X-Forwarded-Prefix": "/stac"}  # fmt: skip
    for path in ("/tileMatrixSets", "/collections/c1/tiles", "/collections/c1/tiles/WorldCRS84Quad",
                 "/collections/c1/items/tiles/WebMercatorQuad"):  # fmt: skip
        doc = proxied.get(path, headers=headers).json()
        hrefs = [lk["href"] for lk in doc["links"]] + doc.get("tiles", [])
        for nested in doc.get("tilesets", []) + doc.get("tileMatrixSets", []):
            hrefs += [lk["href"] for lk in nested["links"]]
        assert hrefs and all(h.startswith("https://maps.example.org/stac/") for h in hrefs), hrefs


# -- landing page, conformance, OpenAPI ---------------------------------------------------------
def test_landing_page_links_the_tiling_schemes(client: TestClient) -> None:
    landing = client.get("/").json()
    tiling = link(landing, REL + "tiling-schemes")
    assert tiling["href"] == BASE + "tileMatrixSets" and tiling["type"] == "application/json"


def test_conformance(client: TestClient) -> None:
    conforms = set(client.get("/conformance").json()["conformsTo"])
    declared = {CONF + c for c in ("core", "tileset", "tilesets-list", "mvt", "geodata-tilesets")}
    declared |= {TMS_CONF + c for c in ("tilematrixset", "json-tilematrixset", "tilesetmetadata",
                                        "json-tilesetmetadata")}  # fmt: skip
    assert declared <= conforms
    # Not true here: an OpenAPI 3.0 document (FastAPI makes 3.1), dataset tilesets, limits.
    for absent in ("oas30", "dataset-tilesets"):
        assert CONF + absent not in conforms
    assert TMS_CONF + "tilematrixsetlimits" not in conforms


def test_collections_link_their_tilesets(client: TestClient, admin: dict[str, str]) -> None:
    assert client.post("/collections", json=collection("linked"), headers=admin).status_code == 201
    for doc in (
        client.get("/collections/linked").json(),
        next(c for c in client.get("/collections").json()["collections"] if c["id"] == "linked"),
    ):
        found = {link["rel"]: link for link in doc["links"]}
        for kind in ("vector", "map"):
            tilesets = found[f"http://www.opengis.net/def/rel/ogc/1.0/tilesets-{kind}"]
            assert tilesets["href"] == "http://testserver/collections/linked/tiles"
            assert client.get(tilesets["href"]).status_code == 200
        # GDAL 3.6 follows a JSON-typed tilesets-vector link even to open a raster, then fails
        assert found[REL + "tilesets-map"]["type"] == "application/json"
        assert "type" not in found[REL + "tilesets-vector"]


def test_openapi_operations(client: TestClient) -> None:
    spec = client.get("/api").json()
    operations = {
        op["operationId"]
        for path, item_ in spec["paths"].items()
        if "tile" in path.lower()
        for op in item_.values()
    }
    assert {
        "getTileMatrixSetsList", "getTileMatrixSet", "getCollectionTileSetsList",
        "getCollectionVectorTileSet", "getCollectionMapTileSet", "getCollectionVectorTile",
        "getCollectionVectorTileByFormat",
    } <= operations  # fmt: skip
