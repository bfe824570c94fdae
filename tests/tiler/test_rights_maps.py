"""No map route draws or reveals a private collection's data to a caller who cannot read it.

The collections and callers are ``world``'s (tests/tiler/rights.py). Tiles are compared
decoded, pixel by pixel; vector tiles decoded as MVT.
"""

import re
from typing import Any

import mapbox_vector_tile
import numpy as np
import pytest

from catalog.maps.mosaic import SearchBody, canonical_body, search_id
from server.parts import api_routes
from server.policy import POLICY, Rule, rule_of
from tests.tiler.conftest import decode
from tests.tiler.rights import HIDDEN_COLOUR, SECRET, WEB, World


def not_found_like_missing(world: World, path: str, caller: str, method: str = "GET") -> None:
    """``path`` answers ``caller`` 404 with the body a missing collection gets."""
    missing = path.replace(f"/{SECRET}/", "/nothere/")
    headers = world.callers[caller]
    body = {} if method == "POST" else None
    got = world.client.request(method, path, headers=headers, json=body)
    expected = world.client.request(method, missing, headers=headers, json=body)
    assert got.status_code == expected.status_code == 404, (path, caller, got.text)
    assert got.json() == {
        k: v.replace("nothere", SECRET) if isinstance(v, str) else v
        for k, v in expected.json().items()
    }, path


def tile_path(base: str, tile: tuple[int, int, int], suffix: str = ".png") -> str:
    z, x, y = tile
    return f"{base}/{WEB}/{z}/{x}/{y}{suffix}"


# -- item and collection routes ------------------------------------------------------------------
ITEM = f"/collections/{SECRET}/items/hidden"


@pytest.mark.parametrize("caller", ["anonymous", "stranger"])
def test_item_maps_of_a_private_collection_are_404_like_a_missing_one(
    world: World, caller: str
) -> None:
    for path in (tile_path(f"{ITEM}/tiles", world.tile), f"{ITEM}/info",
                 f"{ITEM}/preview.png", f"{ITEM}/{WEB}/tilejson.json"):  # fmt: skip
        not_found_like_missing(world, path, caller)


@pytest.mark.parametrize("caller", ["reader", "admin"])
def test_item_maps_of_a_private_collection_for_those_who_read_it(world: World, caller: str) -> None:
    tile = world.get(tile_path(f"{ITEM}/tiles", world.tile), caller)
    assert tile.status_code == 200, tile.text
    pixels = decode(tile.content)
    drawn = pixels[3] > 0
    assert drawn.any()
    assert all((pixels[band][drawn] == v).all() for band, v in enumerate(HIDDEN_COLOUR))
    for path in (f"{ITEM}/info", f"{ITEM}/preview.png", f"{ITEM}/{WEB}/tilejson.json"):
        assert world.get(path, caller).status_code == 200, path


def test_every_read_route_hides_a_private_collection_like_a_missing_one(world: World) -> None:
    """Each route whose rule is READ, with either spelling of the collection in its path."""
    values = {"item_id": "hidden", "tileMatrixSetId": WEB, "z": "11", "x": "1", "y": "1",
              "scale": "2", "format": "png"}  # fmt: skip
    names: set[str] = set()
    checked: set[str] = set()
    for template, route in api_routes(world.client.app.routes):  # type: ignore[attr-defined]
        if rule_of(route.operation_id) is not Rule.READ:
            continue
        params = {**values, "collection_id": SECRET, "collectionId": SECRET}
        names |= {"collection_id", "collectionId"} & set(re.findall(r"{(\w+)", template))
        path = template.format_map(_Default(params))
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                for caller in ("anonymous", "stranger"):
                    not_found_like_missing(world, path, caller, method)
                checked.add(str(route.operation_id))
    assert names == {"collection_id", "collectionId"}
    assert checked == {op for op, rule in POLICY.items() if rule is Rule.READ}


class _Default(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "x"


def test_collection_mosaic_and_vector_tiles_of_a_private_collection(world: World) -> None:
    mosaic = tile_path(f"/collections/{SECRET}/tiles", world.tile)
    vector = tile_path(f"/collections/{SECRET}/items/tiles", world.tile, ".mvt")
    for caller in ("anonymous", "stranger"):
        not_found_like_missing(world, mosaic, caller)
        not_found_like_missing(world, vector, caller)
    assert world.get(mosaic, "reader").status_code == 200
    r = world.get(vector, "reader")
    assert r.status_code == 200
    assert ids_in(r.content) == {"hidden"}


def ids_in(content: bytes) -> set[str]:
    """The item ids of every layer of a vector tile."""
    layers = mapbox_vector_tile.decode(content)
    return {str(f["properties"]["id"]) for layer in layers.values() for f in layer["features"]}


def test_a_public_vector_tile_never_holds_a_private_item(world: World) -> None:
    for caller in world.callers:
        r = world.get(tile_path("/collections/maps/items/tiles", world.tile, ".mvt"), caller)
        assert r.status_code == 200
        assert ids_in(r.content) == {"rgb"}


# -- saved-search mosaics ------------------------------------------------------------------------
def register(world: World, caller: str, body: dict[str, Any]) -> str:
    r = world.client.post("/searches", json=body, headers=world.callers[caller])
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def test_a_search_mosaic_draws_only_what_its_caller_reads(world: World) -> None:
    both = register(world, "admin", {"collections": ["maps", SECRET]})
    public = decode(
        world.get(tile_path("/collections/maps/tiles", world.tile), "anonymous").content
    )
    assert (public[3] > 0).any()
    for caller in ("anonymous", "stranger"):
        r = world.get(tile_path(f"/searches/{both}/tiles", world.tile), caller)
        assert r.status_code == 200, r.text
        assert np.array_equal(decode(r.content), public), caller
    for caller in ("reader", "admin"):
        pixels = decode(world.get(tile_path(f"/searches/{both}/tiles", world.tile), caller).content)
        hidden = np.all([pixels[b] == v for b, v in enumerate(HIDDEN_COLOUR)], axis=0)
        hidden &= pixels[3] > 0
        assert hidden.any(), caller
        # beside the public item, where it has no pixels, the private one is drawn
        assert (hidden & (public[3] == 0)).any()
        assert not np.array_equal(pixels, public)


def test_a_search_naming_only_a_private_collection_draws_nothing_for_others(
    world: World,
) -> None:
    only = register(world, "reader", {"collections": [SECRET]})
    path = tile_path(f"/searches/{only}/tiles", world.tile)
    assert world.get(path, "reader").status_code == 200
    for caller in ("anonymous", "stranger"):
        assert world.get(path, caller).status_code == 204
    # TileJSON bounds come from the caller's items: none, so not the private item's
    tilejson = f"/searches/{only}/tiles/{WEB}/tilejson.json"
    mine = world.get(tilejson, "reader").json()["bounds"]
    theirs = world.get(tilejson, "stranger").json()["bounds"]
    assert mine != theirs and theirs == [-180.0, -85.0511287798066, 180.0, 85.0511287798066]


def test_the_search_cache_never_serves_private_items_to_others(world: World) -> None:
    both = register(world, "admin", {"collections": ["maps", SECRET]})
    path = tile_path(f"/searches/{both}/tiles", world.tile)
    first = world.get(path, "reader").content  # the search is cached now
    assert not np.array_equal(decode(world.get(path, "stranger").content), decode(first))


def test_the_item_cache_never_serves_a_private_item_to_others(world: World) -> None:
    path = tile_path(f"{ITEM}/tiles", world.tile)
    assert world.get(path, "reader").status_code == 200  # the item is in the cache now
    for caller in ("anonymous", "stranger"):
        not_found_like_missing(world, path, caller)


# -- saved searches belong to their savers -------------------------------------------------------
def test_a_saved_search_is_its_savers_alone(world: World) -> None:
    body = {"collections": ["maps"], "datetime": "2020-01-01T00:00:00Z/.."}
    theirs, mine = register(world, "stranger", body), register(world, "reader", body)
    assert theirs != mine  # the same body, two searches
    assert register(world, "reader", body) == mine  # and still content-addressed
    # the bootstrap admin's ids are the body's hash, as before accounts
    assert register(world, "admin", body) == search_id(canonical_body(SearchBody(**body)))
    unknown = world.get("/searches/0123456789abcdef0123456789abcdef", "reader")
    assert unknown.status_code == 404
    r = world.get(f"/searches/{theirs}", "reader")
    assert r.status_code == 404
    assert r.json() == {**unknown.json(), "description": unknown.json()["description"].replace(
        "0123456789abcdef0123456789abcdef", theirs)}  # fmt: skip
    assert world.get(f"/searches/{theirs}", "stranger").json()["search"] == body
    assert world.get(f"/searches/{theirs}", "admin").status_code == 200
    assert world.get(f"/searches/{theirs}", "anonymous").status_code == 401


# -- shared caches -------------------------------------------------------------------------------
def test_tiles_fetched_with_a_token_are_private_to_shared_caches(world: World) -> None:
    paths = (tile_path(f"{ITEM}/tiles", world.tile),
             tile_path(f"/collections/{SECRET}/tiles", world.tile),
             tile_path(f"/collections/{SECRET}/items/tiles", world.tile, ".mvt"))  # fmt: skip
    for path in paths:
        r = world.get(path, "reader")
        assert r.status_code == 200, path
        assert "public" not in r.headers["cache-control"]
        assert r.headers["cache-control"].startswith("private"), path
        assert "authorization" in r.headers["vary"].lower()
    public = world.get(tile_path("/collections/maps/tiles", world.tile), "anonymous")
    assert public.headers["cache-control"] == "public, max-age=60"
    assert "authorization" in public.headers["vary"].lower()
