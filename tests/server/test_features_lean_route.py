"""Plain feature pages of vector collections take a lean route (ogc/feature_route.py): the same
answers as the documented items route, the same rights, and every other request still served
by the documented route."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from catalog.vector.features import FeatureReader
from catalog.vector.schema import Layer
from ogc.feature_route import _LeanFeatures, lean_params
from tests.factories import collection, item
from tests.server.vector_fields import COLLECTION, load

ITEMS = f"/collections/{COLLECTION}/items"

# Plain requests: every parameter the lean route takes, alone and together, valid or not
# (bad values are refused by the same code either way).
PLAIN = [
    "",
    "limit=7",
    "limit=0",
    "limit=100000",
    "offset=5&limit=3",
    "bbox=2.0,48.5,2.1,48.56",
    "bbox=2.0,48.5,2.1",
    "bbox=nonsense",
    "bbox=48.5,2.0,48.56,2.1&bbox-crs=http://www.opengis.net/def/crs/EPSG/0/4326",
    "bbox=2.0,48.5,2.1,48.56&sortby=-area ha,+plots&limit=4",
    "sortby=crop,-sown",
    "sortby=unknown",
    "sortby=",
    "datetime=2024-03-10T00:00:00Z/2024-04-01T00:00:00Z&sortby=sown",
    "datetime=not-a-time",
    "filter=plots > 4 AND farmer = 'Ana'",
    "filter=plots >",
    'filter={"op": "=", "args": [{"property": "plots"}, 4]}&filter-lang=cql2-json',
    "filter=S_INTERSECTS(geometry, POINT(2.005 48.505))&filter-crs=http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    "crs=http://www.opengis.net/def/crs/EPSG/0/3857&limit=2",
    "crs=EPSG:9999",
    "properties=crop,plots&skipGeometry=true&limit=3",
    "properties=nope",
    "skipGeometry=false&f=geojson&limit=2",
    "f=json&limit=2",
    "token=garbage",
]  # fmt: skip


@pytest.fixture
def layer(database_url: str) -> Layer:
    return load(database_url)


def _documented(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request from now on to the documented route: no layer is ever kept."""
    monkeypatch.setattr(FeatureReader, "kept", lambda self, collection_id: False)


def _answer(client: TestClient, query: str, **headers: str) -> tuple[int, Any]:
    r = client.get(f"{ITEMS}?{query}", headers=headers)
    body = r.json()
    if r.status_code == 200:
        body.pop("timeStamp")
    return r.status_code, body


def test_the_lean_route_answers_as_the_documented_route(
    client: TestClient, layer: Layer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get(ITEMS).status_code == 200  # the layer is kept from now on
    lean = {query: _answer(client, query) for query in PLAIN}
    _documented(monkeypatch)
    for query in PLAIN:
        assert _answer(client, query) == lean[query], query
    assert sum(status == 200 for status, _ in lean.values()) >= 15  # not only refusals


def test_only_plain_pages_take_the_lean_route(
    client: TestClient, layer: Layer, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []
    lean = _LeanFeatures.__call__

    async def counted(self: _LeanFeatures, scope: Any, receive: Any, send: Any) -> None:
        served.append(scope["query_string"].decode())
        await lean(self, scope, receive, send)

    monkeypatch.setattr(_LeanFeatures, "__call__", counted)
    assert client.get(ITEMS).status_code == 200
    assert served == []  # not kept yet: the documented route read the layer
    plain = "bbox=2.0,48.5,2.1,48.56&sortby=-plots&limit=3"
    r = client.get(f"{ITEMS}?{plain}")
    assert r.status_code == 200 and len(r.json()["features"]) == 3
    assert served == [plain]
    for other in ("limit=2&limit=3", "limit=03", "facetby=crop", "f=html", "skipGeometry=1"):
        assert client.get(f"{ITEMS}?{other}").status_code == 200, other
    assert client.get("/collections/nowhere/items?limit=1").status_code == 404
    assert served == [plain]


def test_private_collections_stay_private_on_the_lean_route(
    client: TestClient, layer: Layer, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    r = client.put(f"/collections/{COLLECTION}/rights", json={"visibility": "private"},
                   headers=admin)  # fmt: skip
    assert r.status_code in (200, 204), r.text
    assert client.get(ITEMS, headers=admin).status_code == 200  # kept from now on
    lean = (_answer(client, "limit=2"), _answer(client, "limit=2", **admin))
    assert lean[0][0] == 404 and lean[0][1]["code"] == "catalog.NotFound"
    assert lean[1][0] == 200 and lean[1][1]["numberReturned"] == 2
    _documented(monkeypatch)
    assert (_answer(client, "limit=2"), _answer(client, "limit=2", **admin)) == lean


def test_a_collection_that_is_no_longer_vector_is_answered_by_the_documented_route(
    client: TestClient, layer: Layer, admin: dict[str, str]
) -> None:
    assert client.get(ITEMS).status_code == 200  # kept as a vector collection
    assert client.delete(f"/collections/{COLLECTION}", headers=admin).status_code == 204
    assert client.get(ITEMS, params={"limit": 2}).status_code == 404
    assert client.get(ITEMS).status_code == 404
    # the same id again, now a collection of STAC items
    r = client.post("/collections", json=collection(COLLECTION), headers=admin)
    assert r.status_code == 201, r.text
    r = client.post(ITEMS, json=item("scene", lon=2.05, lat=48.52) | {"collection": COLLECTION},
                    headers=admin)  # fmt: skip
    assert r.status_code in (200, 201), r.text
    r = client.get(ITEMS, params={"limit": 2})
    assert r.status_code == 200, r.text
    assert [f["id"] for f in r.json()["features"]] == ["scene"]
    assert r.json()["features"][0]["stac_version"]


def test_lean_parameters_are_the_items_models() -> None:
    assert lean_params(b"") == {"filter_lang": "cql2-text"}
    assert lean_params(b"sortby=-a,%2Bb&limit=10&skipGeometry=true&bbox-crs=x") == {
        "filter_lang": "cql2-text", "sortby": ["-a", "+b"], "limit": 10,
        "skip_geometry": True, "bbox_crs": "x",
    }  # fmt: skip
    assert lean_params(b"filter=a%3D1&filter-lang=cql2-json&filter-crs=c") == {
        "filter_lang": "cql2-json", "filter_expr": "a=1", "filter_crs": "c",
    }  # fmt: skip
    for other in (b"limit=-1", b"limit=1e3", b"offset=", b"f=html", b"query=x", b"a=1&a=1"):
        assert lean_params(other) is None, other
