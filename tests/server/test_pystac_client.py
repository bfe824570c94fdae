"""pystac-client against a live server: conformance, collections, search with every extension.

Expected answers are computed from the documents the catalogue was loaded with, so each check
compares the server with an independent evaluation, across several pages.
"""

import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pystac
import pytest
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from shapely.geometry import box, shape

from tests.server.conftest import LANDSAT, S1, S2, Catalogue, LiveServer, Offline

Doc = dict[str, Any]
PAGE = 5  # small pages, so that every search below spans several
DEFAULT_FIELDS = {"type", "stac_version", "id", "geometry", "bbox", "links", "assets", "properties"}


@pytest.fixture
def stac(live_server: LiveServer, live_catalogue: Catalogue, offline_network: Offline) -> Client:
    """A pystac-client Client on the live server (no network beyond loopback)."""
    return Client.open(live_server.url)


@pytest.fixture
def items(live_catalogue: Catalogue) -> list[Doc]:
    """Every loaded item with its collection."""
    return live_catalogue.all_items()


def select(items: list[Doc], keep: Callable[[Doc], bool]) -> set[str]:
    """Ids of the loaded items for which ``keep(properties)`` holds."""
    return {i["id"] for i in items if keep({**i["properties"], "collection": i["collection"]})}


def paged_ids(search: Any) -> tuple[list[str], int]:
    """All ids of a search in order, and the number of pages it took."""
    ids: list[str] = []
    pages = 0
    for page in search.pages_as_dicts():
        pages += 1
        ids.extend(f["id"] for f in page["features"])
        assert len(page["features"]) <= PAGE
    return ids, pages


def cloud(p: Doc) -> float | None:
    """eo:cloud_cover, or None for radar scenes."""
    value = p.get("eo:cloud_cover")
    return None if value is None else float(value)


# -- landing page and conformance ------------------------------------------------------------
def test_open_checks_conformance_without_warnings(live_server: LiveServer, stac: Client) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opened = Client.open(live_server.url)
        supported = {c for c in ConformanceClasses if opened.conforms_to(c)}
        opened.get_collection(S2)
        list(opened.search(collections=[S2], max_items=1, fields=["id"]).items_as_dicts())
        list(opened.search(collections=[S2], max_items=1, sortby="-datetime").items_as_dicts())
        list(opened.search(max_items=1, query={"gsd": {"eq": 10}}).items_as_dicts())
        list(opened.search(max_items=1, filter="gsd = 10").items_as_dicts())
    assert not [str(w.message) for w in caught]
    # Context is deprecated (numberMatched replaces it); every other class is implemented.
    assert supported == set(ConformanceClasses) - {ConformanceClasses.CONTEXT}
    assert opened.id == "terracat" and opened.title
    assert opened.get_self_href().rstrip("/") == live_server.url


# -- collections -------------------------------------------------------------------------------
def test_get_collections_and_collection(stac: Client, live_catalogue: Catalogue) -> None:
    collections = {c.id: c for c in stac.get_collections()}
    assert set(collections) == {S2, LANDSAT, S1}
    s2 = stac.get_collection(S2)
    assert isinstance(s2, pystac.Collection)
    sent = live_catalogue.collections[S2]
    assert s2.title == sent["title"] and s2.license == sent["license"]
    assert s2.extent.spatial.bboxes == sent["extent"]["spatial"]["bbox"]
    assert s2.summaries.get_list("platform") == ["sentinel-2a", "sentinel-2b"]
    s2.validate()  # pystac's JSON schema check; the schemas come from tests/data


def test_collection_items_page_through_features_endpoint(
    stac: Client, live_catalogue: Catalogue
) -> None:
    landsat = stac.get_collection(LANDSAT)
    got = [i.id for i in landsat.get_items()]
    assert sorted(got) == sorted(i["id"] for i in live_catalogue.items[LANDSAT])
    one = live_catalogue.items[LANDSAT][5]
    item = landsat.get_item(one["id"])
    assert item is not None and item.collection_id == LANDSAT
    assert item.properties["eo:cloud_cover"] == one["properties"]["eo:cloud_cover"]
    assert item.get_self_href().endswith(f"/collections/{LANDSAT}/items/{one['id']}")
    item.validate()


# -- CQL2 filter, paging ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cql2_text_filter_pages(stac: Client, items: list[Doc], method: str) -> None:
    text = "eo:cloud_cover < 50 AND platform IN ('sentinel-2a', 'landsat-9') OR gsd = 20"
    expected = select(
        items,
        lambda p: (
            (
                cloud(p) is not None
                and cloud(p) < 50
                and p["platform"] in ("sentinel-2a", "landsat-9")
            )
            or p["gsd"] == 20
        ),
    )
    search = stac.search(method=method, filter=text, filter_lang="cql2-text", limit=PAGE)
    ids, pages = paged_ids(search)
    assert len(ids) == len(set(ids)), "an item came twice across pages"
    assert set(ids) == expected
    assert pages == -(-len(expected) // PAGE) >= 3
    assert search.matched() == len(expected)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cql2_json_filter_pages(stac: Client, items: list[Doc], method: str) -> None:
    area = box(-10.0, 28.0, 30.0, 60.0)
    cql = {
        "op": "and",
        "args": [
            {"op": "s_intersects", "args": [{"property": "geometry"}, area.__geo_interface__]},
            {"op": ">=", "args": [{"property": "datetime"}, {"timestamp": "2023-02-01T00:00:00Z"}]},
            {"op": "a_contains", "args": [{"property": "instruments"}, ["msi"]]},
            {"op": "not", "args": [{"op": "like", "args": [{"property": "id"}, "%t1%"]}]},
        ],
    }
    expected = {
        i["id"]
        for i in items
        if shape(i["geometry"]).intersects(area)
        and i["properties"]["datetime"] >= "2023-02-01T00:00:00Z"
        and "msi" in i["properties"]["instruments"]
        and "t1" not in i["id"]
    }
    search = stac.search(method=method, filter=cql, filter_lang="cql2-json", limit=PAGE)
    ids, pages = paged_ids(search)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected and pages >= 2


def test_max_items_and_item_collection(stac: Client, items: list[Doc]) -> None:
    expected = select(items, lambda p: p["gsd"] in (10, 30))
    search = stac.search(filter="gsd IN (10, 30)", limit=PAGE, max_items=13)
    collection = search.item_collection()
    got = [i.id for i in collection]
    assert len(got) == 13 == len(set(got)) and set(got) <= expected
    every = [i.id for i in stac.search(filter="gsd IN (10, 30)", limit=PAGE).items()]
    assert len(every) == len(set(every)) and set(every) == expected
    assert every[:13] == got, "max_items cuts the same ordered sequence"


def test_bbox_datetime_and_ids(stac: Client, items: list[Doc]) -> None:
    window = "2022-06-01T00:00:00Z/2022-12-31T23:59:59Z"
    expected = {
        i["id"]
        for i in items
        if box(-125.0, 30.0, -100.0, 45.0).intersects(shape(i["geometry"]))
        and "2022-06-01T00:00:00Z" <= i["properties"]["datetime"] <= "2022-12-31T23:59:59Z"
    }
    search = stac.search(bbox=[-125, 30, -100, 45], datetime=window, limit=2, method="GET")
    assert {i.id for i in search.items()} == expected and len(expected) >= 3
    chosen = sorted(expected)[:3]
    assert {i.id for i in stac.search(ids=chosen).items()} == set(chosen)


# -- sort ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_sortby_cloud_cover_ascending_across_pages(
    stac: Client, items: list[Doc], method: str
) -> None:
    search = stac.search(
        method=method, collections=[S2, LANDSAT], sortby="+eo:cloud_cover", limit=PAGE
    )
    got = list(search.items_as_dicts())
    values = [f["properties"]["eo:cloud_cover"] for f in got]
    assert values == sorted(values)
    assert {f["id"] for f in got} == select(items, lambda p: p["collection"] != S1)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_sortby_descending_and_tie_breaks(stac: Client, items: list[Doc], method: str) -> None:
    sortby = [{"field": "properties.gsd", "direction": "desc"},
              {"field": "properties.datetime", "direction": "asc"}]  # fmt: skip
    got = list(stac.search(method=method, sortby=sortby, limit=PAGE).items_as_dicts())
    keys = [(-f["properties"]["gsd"], f["properties"]["datetime"]) for f in got]
    assert keys == sorted(keys) and len(got) == len(items)
    newest_first = list(
        stac.search(method=method, sortby="-datetime", limit=PAGE, max_items=12).items_as_dicts()
    )
    stamps = [datetime.fromisoformat(f["properties"]["datetime"]) for f in newest_first]
    assert stamps == sorted(stamps, reverse=True)
    assert stamps[0] == max(datetime.fromisoformat(i["properties"]["datetime"]) for i in items)


def test_sortby_missing_values_come_last(stac: Client) -> None:
    for order in ("+eo:cloud_cover", "-eo:cloud_cover"):
        got = list(stac.search(sortby=order, limit=PAGE, method="GET").items_as_dicts())
        missing = ["eo:cloud_cover" not in f["properties"] for f in got]
        assert missing == sorted(missing), order  # False (has a value) before True
        assert sum(missing) == 6


# -- fields ----------------------------------------------------------------------------------
def _features(stac: Client, fields: Any, method: str) -> Iterator[Doc]:
    return stac.search(
        method=method, collections=[S2], fields=fields, limit=PAGE, max_items=8
    ).items_as_dicts()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_fields_include(stac: Client, method: str) -> None:
    for f in _features(stac, ["properties.eo:cloud_cover", "bbox"], method):
        assert set(f["properties"]) == {"eo:cloud_cover"}
        assert "bbox" in f and "assets" not in f and "geometry" not in f
        assert f["id"] and f["type"] == "Feature"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_fields_exclude_from_the_default_set(stac: Client, method: str) -> None:
    """Fields extension rule 4: exclusions with no (or an empty) include start from the
    default set, which is what pystac-client's list form sends in both methods."""
    for f in _features(stac, ["-assets", "-properties.view:sun_elevation"], method):
        assert set(f) == {"type", "stac_version", "id", "geometry", "bbox", "links", "properties"}
        assert set(f["properties"]) == {"datetime"}


def test_fields_exclude_only_keeps_the_rest_in_post(stac: Client) -> None:
    """Rule 3: a POST ``exclude`` without ``include`` removes just those fields."""
    for f in _features(stac, {"exclude": ["assets", "properties.view:sun_elevation"]}, "POST"):
        assert "assets" not in f and "view:sun_elevation" not in f["properties"]
        assert {"datetime", "eo:cloud_cover", "platform", "mgrs:latitude_band"} <= set(
            f["properties"]
        )


def test_empty_fields_give_the_default_set(stac: Client) -> None:
    for fields in ({}, {"include": [], "exclude": []}):
        for f in _features(stac, fields, "POST"):
            assert set(f) == DEFAULT_FIELDS
            assert set(f["properties"]) == {"datetime"}


def test_fields_include_and_exclude_of_the_same_path_includes_it(stac: Client) -> None:
    fields = {"include": ["properties.platform"], "exclude": ["properties.platform"]}
    for f in _features(stac, fields, "POST"):
        assert f["properties"] == {"platform": f["properties"]["platform"]}


# -- query -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_query_extension(stac: Client, items: list[Doc], method: str) -> None:
    query = {
        "eo:cloud_cover": {"gte": 9, "lt": 75},
        "platform": {"startsWith": "sentinel-2"},
        "mgrs:latitude_band": {"in": ["R", "S", "T"]},
    }
    expected = select(
        items,
        lambda p: (
            cloud(p) is not None
            and 9 <= cloud(p) < 75
            and p["platform"].startswith("sentinel-2")
            and p.get("mgrs:latitude_band") in ("R", "S", "T")
        ),
    )
    ids, pages = paged_ids(stac.search(method=method, query=query, limit=PAGE))
    assert sorted(ids) == sorted(expected) and pages >= 2


def test_query_string_form(stac: Client, items: list[Doc]) -> None:
    """pystac-client's ``["prop<value"]`` shorthand becomes the same query object."""
    got = {i.id for i in stac.search(query=["eo:cloud_cover<10", "gsd=30"], limit=PAGE).items()}
    assert got == select(items, lambda p: cloud(p) is not None and cloud(p) < 10 and p["gsd"] == 30)
