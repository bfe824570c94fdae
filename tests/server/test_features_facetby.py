"""facetby on the items of a vector collection: the facets of the very selection the page is of."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.server.test_vector_facets import terms
from tests.server.vector_stats_data import Feature, in_bbox, load, make_features

COUNT = 1500


@pytest.fixture
def fields(database_url: str, client: TestClient) -> Iterator[list[Feature]]:
    """The collection ``fields`` with COUNT seeded features."""
    features = make_features(COUNT, seed=7)
    load(database_url, "fields", features)
    yield features


def test_facets_come_with_the_page_for_its_whole_selection(
    client: TestClient, fields: list[Feature]
) -> None:
    bbox = (-2.0, 44.0, 4.0, 48.0)
    params = {"bbox": ",".join(map(str, bbox)), "filter": "parcels >= 3", "limit": 7,
              "facetby": "crop,organic", "facet_limit": 4}  # fmt: skip
    r = client.get("/collections/fields/items", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    chosen = [f for f in in_bbox(fields, bbox) if (f["parcels"] or 0) >= 3]
    assert len(body["features"]) == 7
    assert body["numberMatched"] == len(chosen)
    assert body["facets"]["crop"] == terms(chosen, "crop", 4)
    assert body["facets"]["organic"] == terms(chosen, "organic", 4)
    # the next page counts the same selection
    follow = next(link["href"] for link in body["links"] if link["rel"] == "next")
    page2 = client.get(follow.removeprefix("http://testserver")).json()
    assert page2["facets"] == body["facets"]
    assert {f["id"] for f in page2["features"]}.isdisjoint(f["id"] for f in body["features"])


def test_limit_zero_gives_the_facets_alone(client: TestClient, fields: list[Feature]) -> None:
    r = client.get("/collections/fields/items", params={"limit": 0, "facetby": "crop"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["features"] == [] and body["numberReturned"] == 0
    assert body["numberMatched"] == COUNT
    assert body["facets"]["crop"] == terms(fields, "crop", 10)
    assert not any(link["rel"] == "next" for link in body["links"])


def test_facet_errors_and_limit_zero_without_facets(
    client: TestClient, fields: list[Feature]
) -> None:
    r = client.get("/collections/fields/items", params={"facetby": "nope"})
    assert r.status_code == 400 and r.json()["code"] == "features.InvalidFacet", r.text
    assert "crop" in r.json()["description"]
    r = client.get("/collections/fields/items", params={"limit": 0})
    assert r.status_code == 400, r.text
    assert client.get("/collections/fields/items", params={"facetby": "crop"}).json()["facets"]
