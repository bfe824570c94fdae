"""Tileset metadata and TileJSON of vector collections (issue 18): the features' layer with its
typed fields, tile URLs that carry properties/filter, and the conformance classes."""

import mapbox_vector_tile
import pytest
import shapely
from fastapi.testclient import TestClient

from catalog.vector.schema import PropertyType as T
from tests.factories import collection

from .tiles_data import load

PROPS = [("crop", T.STRING), ("yield t", T.NUMBER), ("plots", T.INTEGER),
         ("organic", T.BOOLEAN), ("sown", T.DATE), ("extra", T.JSON)]  # fmt: skip


@pytest.fixture
def roads(client: TestClient, database_url: str) -> None:
    rows = [
        (shapely.LineString([(10 + i, 45), (10.5 + i, 45.5)]), f"c{i}", 1.5 * i, i, i % 2 == 0,
         None, None)
        for i in range(5)
    ]  # fmt: skip
    load(database_url, "roads", PROPS, "LineString", rows)


def test_tilejson_lists_the_features_layer_and_its_typed_fields(
    client: TestClient, roads: None
) -> None:
    r = client.get("/collections/roads/items/tiles/WebMercatorQuad")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["tilejson"] == "3.0.0" and doc["dataType"] == "vector"
    base = "http://testserver/collections/roads/items/tiles/WebMercatorQuad/"
    assert doc["tiles"] == [base + "{z}/{x}/{y}.mvt"]
    [layer] = doc["vector_layers"]
    assert layer["id"] == "roads"
    assert layer["fields"] == {
        "crop": "String", "yield t": "Number", "plots": "Number", "organic": "Boolean",
        "sown": "String", "extra": "String",
    }  # fmt: skip
    assert doc["bounds"] == pytest.approx([10, 45, 14.5, 45.5])
    [ogc_layer] = doc["layers"]
    assert ogc_layer["geometryDimension"] == 1 and ogc_layer["featureType"] == "feature"
    schema = ogc_layer["propertiesSchema"]["properties"]
    assert schema["plots"] == {"type": "integer"}
    assert schema["sown"] == {"type": "string", "format": "date"}
    item = next(link for link in doc["links"] if link["rel"] == "item")
    assert (
        item["href"]
        == base.replace("/items/tiles/WebMercatorQuad/", "/items/tiles/WebMercatorQuad/")
        + "{tileMatrix}/{tileCol}/{tileRow}.mvt"
    )
    # The template works: a tile of the features.
    tile = client.get(doc["tiles"][0].format(z=6, x=33, y=22))
    assert tile.status_code == 200
    features = mapbox_vector_tile.decode(tile.content)["roads"]["features"]
    assert {f["properties"]["crop"] for f in features} >= {"c0"}


def test_tile_urls_carry_properties_and_filter(client: TestClient, roads: None) -> None:
    params = {"properties": "crop", "filter": "plots >= 3"}
    doc = client.get("/collections/roads/items/tiles/WebMercatorQuad", params=params).json()
    [template] = doc["tiles"]
    assert template.endswith(".mvt?properties=crop&filter=plots+%3E%3D+3")
    got = set()
    for x in range(32, 36):
        tile = client.get(template.format(z=6, x=x, y=22))
        if tile.status_code == 200:
            for f in mapbox_vector_tile.decode(tile.content)["roads"]["features"]:
                assert set(f["properties"]) == {"crop"}
                got.add(f["properties"]["crop"])
    assert got == {"c3", "c4"}
    bad = client.get("/collections/roads/items/tiles/WebMercatorQuad",
                     params={"filter": "colour = 1"})  # fmt: skip
    assert bad.status_code == 400 and bad.json()["code"] == "search.UnknownQueryable"


def test_tilesets_of_a_vector_collection_are_its_features_only(
    client: TestClient, roads: None, admin: dict[str, str]
) -> None:
    doc = client.get("/collections/roads/tiles").json()
    kinds = {(t["dataType"], t["tileMatrixSetURI"].rsplit("/", 1)[-1]) for t in doc["tilesets"]}
    assert kinds == {("vector", "WebMercatorQuad"), ("vector", "WorldCRS84Quad")}
    assert all("features" in t["title"] for t in doc["tilesets"])
    crs84 = client.get("/collections/roads/items/tiles/WorldCRS84Quad").json()
    assert crs84["layers"][0]["id"] == "roads" and "tilejson" not in crs84
    # A raster collection keeps its footprints and imagery tilesets.
    client.post("/collections", json=collection("imagery"), headers=admin)
    raster = client.get("/collections/imagery/tiles").json()
    assert {t["dataType"] for t in raster["tilesets"]} == {"vector", "map"}
    fields = client.get("/collections/imagery/items/tiles/WebMercatorQuad").json()
    assert "platform" in fields["vector_layers"][0]["fields"]


def test_conformance_declares_tiles_and_mvt(client: TestClient) -> None:
    classes = set(client.get("/conformance").json()["conformsTo"])
    tiles = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
    assert {tiles + "core", tiles + "mvt", tiles + "tileset"} <= classes


def test_the_mosaic_paths_of_a_vector_collection_lead_to_its_features(
    client: TestClient, roads: None
) -> None:
    r = client.get("/collections/roads/tiles/WebMercatorQuad/6/33/22?properties=crop",
                   follow_redirects=False)  # fmt: skip
    assert r.status_code == 307
    assert r.headers["location"] == (
        "http://testserver/collections/roads/items/tiles/WebMercatorQuad/6/33/22?properties=crop"
    )
    tile = client.get(r.headers["location"])
    features = mapbox_vector_tile.decode(tile.content)["roads"]["features"]
    assert {tuple(f["properties"]) for f in features} == {("crop",)}
    tilejson = client.get("/collections/roads/tiles/WebMercatorQuad/tilejson.json")
    assert tilejson.status_code == 200  # followed
    assert tilejson.json()["vector_layers"][0]["id"] == "roads"
    # TileJSON is of Web Mercator tiles: no redirect to a tileset that would not be one
    r = client.get("/collections/roads/tiles/WorldCRS84Quad/tilejson.json", follow_redirects=False)
    assert r.status_code == 400 and r.json()["code"] == "tiles.TileJSONWebMercatorOnly", r.text
    r = client.get("/collections/roads/tiles/WorldCRS84Quad/1/0/0", follow_redirects=False)
    assert r.status_code == 307


def test_an_empty_vector_collection_has_tiles_a_style_and_a_map(
    client: TestClient, database_url: str
) -> None:
    load(database_url, "empty", [("crop", T.STRING)], "MultiPolygon", [])
    assert client.get("/collections/empty/items/tiles/WebMercatorQuad/0/0/0").status_code == 204
    doc = client.get("/collections/empty/items/tiles/WebMercatorQuad").json()
    assert doc["vector_layers"][0]["fields"] == {"crop": "String"}
    style = client.get("/collections/empty/styles/default").json()
    assert style["zoom"] == 0 and [layer["type"] for layer in style["layers"]] == ["fill", "line"]
    r = client.get("/collections/empty/map", params={"width": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
