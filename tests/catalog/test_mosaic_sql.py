"""catalog/maps/mosaic.py on PostGIS: saved searches, a tile's items, their plan, coverage."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import morecantile
import pytest
from sqlalchemy import Engine, text

from catalog.db.engine import create_engine
from catalog.errors import InvalidFilter, UnknownQueryable
from catalog.maps.mosaic import (
    MosaicRepository,
    SearchBody,
    SearchNotFound,
    canonical_body,
    collection_params,
    search_id,
    search_params,
)
from catalog.maps.tiles import TileBounds
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.search import SearchParams, SortBy
from catalog.stac.serializers import collection_row, item_row
from tests.factories import collection, item

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
async def mosaics(database_url: str, sync_engine: Engine) -> AsyncIterator[MosaicRepository]:
    engine = create_engine(database_url, DatabaseSettings(pool_size=4, max_overflow=0))
    catalog = CatalogRepository(engine)
    await catalog.create_collection(collection_row(collection("c1")))
    await catalog.create_collection(collection_row(collection("c2", bbox=[0.0, 40.0, 5.0, 45.0])))
    yield MosaicRepository(catalog, max_items=50, search_ttl=60.0)
    await engine.dispose()


@pytest.fixture(autouse=True)
def _clean_searches(sync_engine: Engine) -> Iterator[None]:
    yield
    with sync_engine.begin() as conn:
        conn.execute(text("TRUNCATE searches"))


def body(**members: Any) -> SearchBody:
    return SearchBody.model_validate(members)


def mercator_tile(lon: float, lat: float, zoom: int) -> TileBounds:
    tile = WEB_MERCATOR.tile(lon, lat, zoom)
    box = WEB_MERCATOR.xy_bounds(tile)
    return TileBounds(box.left, box.bottom, box.right, box.top, 3857, (tile.z, tile.x, tile.y))


async def write(repo: MosaicRepository, collection_id: str, *items: dict[str, Any]) -> None:
    await repo.catalog.write_items(
        collection_id, [item_row(i, collection_id) for i in items], False
    )


# -- canonical bodies ----------------------------------------------------------------------------
def test_equal_searches_have_one_canonical_body_and_id() -> None:
    text_form = body(collections=["b", "a", "a"], filter="gsd < 10", limit=5, token="x")
    json_form = body(
        collections=["a", "b"],
        filter={"op": "<", "args": [{"property": "gsd"}, 10]},
        **{"filter-lang": "cql2-json"},
    )
    assert (
        canonical_body(text_form)
        == canonical_body(json_form)
        == {
            "collections": ["a", "b"],
            "filter": {"op": "<", "args": [{"property": "gsd"}, 10]},
            "filter-lang": "cql2-json",
        }
    )
    assert search_id(canonical_body(text_form)) == search_id(canonical_body(json_form))
    assert len(search_id(canonical_body(text_form))) == 32
    other = canonical_body(body(collections=["a"], sortby=[{"field": "gsd", "direction": "asc"}]))
    assert search_id(other) != search_id(canonical_body(text_form))
    assert canonical_body(body(ids=[], query={}, **{"filter-lang": "cql2-text"})) == {}


def test_canonical_body_reads_back_as_the_same_search() -> None:
    canonical = canonical_body(
        body(
            collections=["c1"],
            bbox=[0, 40, 5, 45],
            datetime="2021-01-01T00:00:00Z/..",
            query={"gsd": {"lt": 20}},
            sortby=[{"field": "properties.gsd", "direction": "desc"}],
        )
    )
    params = search_params(canonical)
    assert params.collections == ["c1"]
    assert list(params.bbox or []) == [0, 40, 5, 45]
    assert params.datetime == "2021-01-01T00:00:00Z/.."
    assert params.query == {"gsd": {"lt": 20}}
    assert params.sortby == [SortBy("properties.gsd", descending=True)]


def test_a_filter_that_does_not_parse_is_refused() -> None:
    with pytest.raises(InvalidFilter):
        canonical_body(body(filter="gsd <<< 3"))


# -- saved searches ------------------------------------------------------------------------------
async def test_register_twice_gives_one_search(mosaics: MosaicRepository) -> None:
    await write(mosaics, "c1", item("a", gsd=10))
    first, new = await mosaics.register(body(collections=["c1"], filter="gsd = 10"))
    again, new_again = await mosaics.register(
        body(collections=["c1"], filter={"op": "=", "args": [{"property": "gsd"}, 10]})
    )
    assert (new, new_again) == (True, False)
    assert first.id == again.id and first.created == again.created
    stored = await mosaics.get(first.id)
    assert stored.body == first.body and stored.params.filter == first.body["filter"]


async def test_register_compiles_the_search(mosaics: MosaicRepository) -> None:
    with pytest.raises(UnknownQueryable):
        await mosaics.register(body(collections=["c1"], filter="no_such_property = 1"))
    with pytest.raises(InvalidFilter):
        await mosaics.register(body(filter="S_INTERSECTS(geometry, 3)"))


async def test_use_caches_the_search_and_marks_it_used(
    mosaics: MosaicRepository, sync_engine: Engine
) -> None:
    saved, _ = await mosaics.register(body(collections=["c1"]))
    with sync_engine.begin() as conn:
        conn.execute(text("UPDATE searches SET last_used = now() - interval '1 day'"))
    assert (await mosaics.use(saved.id)).body == saved.body
    with sync_engine.begin() as conn:
        age = conn.scalar(text("SELECT now() - last_used < interval '1 hour' FROM searches"))
        assert age is True
        conn.execute(text("DELETE FROM searches"))
    assert (await mosaics.use(saved.id)).id == saved.id  # from the cache
    uncached = MosaicRepository(mosaics.catalog, search_ttl=0)
    with pytest.raises(SearchNotFound) as raised:
        await uncached.use(saved.id)
    assert raised.value.code == "search.NotFound" and raised.value.status == 404
    with pytest.raises(SearchNotFound):
        await mosaics.get("0" * 32)


# -- the items of a tile -------------------------------------------------------------------------
async def test_tile_items_newest_first_capped_and_only_those_meeting_the_tile(
    mosaics: MosaicRepository,
) -> None:
    await write(
        mosaics,
        "c1",
        *(item(f"i{n}", lon=10.0, lat=45.0, when=f"2021-06-0{n}T10:00:00Z") for n in range(1, 6)),
        item("far", lon=-60.0, lat=-20.0, when="2021-07-01T00:00:00Z"),
    )
    await write(mosaics, "c2", item("other", lon=10.0, lat=45.0, when="2021-08-01T00:00:00Z"))
    bounds = mercator_tile(10.2, 45.2, 10)
    found = await mosaics.tile_items(collection_params("c1"), bounds)
    assert [i["id"] for i in found] == ["i5", "i4", "i3", "i2", "i1"]
    first = found[0]
    assert first["collection"] == "c1" and first["bbox"] == [10.0, 45.0, 10.5, 45.5]
    assert first["assets"]["data"]["href"] == "s3://bucket/i5.tif"
    assert first["properties"]["datetime"] == "2021-06-05T10:00:00Z"
    capped = MosaicRepository(mosaics.catalog, max_items=3)
    assert [i["id"] for i in await capped.tile_items(collection_params("c1"), bounds)] == [
        "i5",
        "i4",
        "i3",
    ]
    oldest_first = SearchParams(collections=["c1", "c2"], sortby=[SortBy("datetime")])
    found = await mosaics.tile_items(oldest_first, bounds)
    assert [i["id"] for i in found] == ["i1", "i2", "i3", "i4", "i5", "other"]
    assert await mosaics.tile_items(collection_params("c1"), mercator_tile(100, 10, 10)) == []


async def test_tile_items_of_a_saved_search_apply_its_filter(mosaics: MosaicRepository) -> None:
    await write(
        mosaics,
        "c1",
        item("sharp", when="2021-06-01T00:00:00Z", gsd=10),
        item("blurry", when="2021-06-02T00:00:00Z", gsd=60),
    )
    saved, _ = await mosaics.register(body(collections=["c1"], filter="gsd < 20"))
    found = await mosaics.tile_items(saved.params, mercator_tile(10.2, 45.2, 8))
    assert [i["id"] for i in found] == ["sharp"]


async def test_tile_items_in_other_tile_matrix_sets(mosaics: MosaicRepository) -> None:
    await write(mosaics, "c1", item("a", lon=10.0, lat=45.0))
    crs84 = morecantile.tms.get("WorldCRS84Quad")
    tile = crs84.tile(10.2, 45.2, 8)
    west, south, east, north = crs84.bounds(tile)
    geographic = TileBounds(west, south, east, north, 4326)
    assert [i["id"] for i in await mosaics.tile_items(collection_params("c1"), geographic)] == ["a"]
    # A projected tile without z/x/y (not WebMercatorQuad): made with ST_MakeEnvelope.
    box = WEB_MERCATOR.xy_bounds(WEB_MERCATOR.tile(10.2, 45.2, 9))
    projected = TileBounds(box.left, box.bottom, box.right, box.top, 3857)
    assert [i["id"] for i in await mosaics.tile_items(collection_params("c1"), projected)] == ["a"]


def _index_names(plan: Any) -> set[str]:
    names = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            names.add(plan["Index Name"])
        for value in plan.values():
            names |= _index_names(value)
    elif isinstance(plan, list):
        for value in plan:
            names |= _index_names(value)
    return names


def _limits(plan: Any) -> list[int]:
    found = []
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Limit":
            found.append(int(plan["Plan Rows"]))
        for value in plan.values():
            found += _limits(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _limits(value)
    return found


async def test_tile_item_lookup_uses_the_spatial_index(
    mosaics: MosaicRepository, sync_engine: Engine
) -> None:
    with sync_engine.begin() as conn:
        # 40,000 small footprints on a world grid, a year of dates: one tile meets a few.
        conn.execute(
            text(
                "INSERT INTO items (collection_id, id, geometry, datetime, end_datetime, "
                "properties, content) "
                "SELECT 'c1', 'g' || g, ST_MakeEnvelope(lon, lat, lon + 0.05, lat + 0.05, 4326), "
                "t, t, jsonb_build_object('gsd', g % 30), '{}' FROM ("
                "SELECT g, (g % 400) * 0.8 - 160 AS lon, (g / 400) * 1.2 - 60 AS lat, "
                "timestamptz '2021-01-01' + (g % 365) * interval '1 day' AS t "
                "FROM generate_series(0, 39999) g) grid"
            )
        )
        conn.execute(
            text("INSERT INTO queryables VALUES ('c1', 'gsd', 'number') ON CONFLICT DO NOTHING")
        )
        conn.execute(text("ANALYZE items"))
    bounds = mercator_tile(0.02, 0.02, 12)
    plan = await mosaics.explain_tile_items(collection_params("c1"), bounds)
    assert "items_geometry_idx" in _index_names(plan), plan
    assert _limits(plan) and _limits(plan)[0] <= mosaics.max_items
    saved, _ = await mosaics.register(body(collections=["c1"], filter="gsd < 10"))
    plan = await mosaics.explain_tile_items(saved.params, bounds)
    assert "items_geometry_idx" in _index_names(plan), plan
    found = await mosaics.tile_items(collection_params("c1"), mercator_tile(0.02, 0.02, 8))
    assert 0 < len(found) <= mosaics.max_items
    dates = [i["properties"] for i in found]
    assert dates  # newest first is checked above; here only that the grid is found


# -- coverage ------------------------------------------------------------------------------------
async def test_coverage_of_a_collection_and_of_a_search(mosaics: MosaicRepository) -> None:
    await write(
        mosaics,
        "c2",
        item("a", lon=1.0, lat=41.0, gsd=10, **{"proj:shape": [512, 256]}),
        item("b", lon=3.0, lat=43.0, gsd=30, **{"proj:shape": [100, 100]}),
    )
    found = await mosaics.collection_coverage("c2")
    assert found.bounds == (1.0, 41.0, 3.5, 43.5)  # the collection's extent: its items'
    assert found.finest_gsd == 10 and found.largest_size == 5120 and found.items == 2
    saved, _ = await mosaics.register(body(collections=["c2"], ids=["b"]))
    only_b = await mosaics.coverage(saved.params)
    assert only_b.bounds == (3.0, 43.0, 3.5, 43.5)  # the items' extent
    assert (only_b.finest_gsd, only_b.largest_size, only_b.items) == (30, 3000, 1)
    empty = await mosaics.coverage(SearchParams(collections=["c1"]))
    assert empty == type(empty)(None, None, None, 0)
