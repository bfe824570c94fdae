"""The OpenAPI document: valid, operations named in camelCase, answers true to their schemas."""

import re
from collections import Counter
from typing import Any

import jsonschema
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from server.parts import ApiPart, api_routes, name_operations, request_models
from server.settings import Settings
from tests.apps import AppPool
from tests.factories import collection, item

CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@pytest.fixture
def app(apps: AppPool, settings: Settings) -> FastAPI:
    """The suite's app for the default test settings (create_app connects nothing)."""
    return apps.app(settings)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(method.upper(), path, op.get("operationId"))
            for path, item in spec["paths"].items()
            for method, op in item.items() if isinstance(op, dict)]  # fmt: skip


def _generated(name: str, path: str, method: str) -> str:
    """FastAPI's own operation id (fastapi.utils.generate_unique_id) for a route."""
    return re.sub(r"\W", "_", f"{name}{path}") + f"_{method.lower()}"


def test_every_operation_id_is_explicit_unique_camel_case(app: FastAPI) -> None:
    operations = _operations(app.openapi())
    assert len(operations) > 80
    ids = [op_id for _, _, op_id in operations]
    not_camel = [(m, p, i) for m, p, i in operations if not i or not CAMEL_CASE.match(i)]
    assert not not_camel
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    routes = list(api_routes(app.routes))
    generated = {_generated(r.name, path, m) for path, r in routes for m in r.methods}
    assert generated.isdisjoint(ids)
    # the routes left out of the schema (tus without its slash) are named too
    assert all(route.operation_id for _, route in routes)


@pytest.mark.parametrize(
    ("method", "path", "operation_id"),
    [
        ("GET", "/", "getLandingPage"),
        ("GET", "/conformance", "getConformanceDeclaration"),
        ("GET", "/collections", "getCollections"),
        ("GET", "/collections/{collection_id}/items", "getFeatures"),
        ("POST", "/search", "postItemSearch"),
        ("POST", "/collections/{collection_id}/items", "postFeature"),
        # named before the parts: clients may use these, they stay
        ("POST", "/processes/{processID}/execution", "execute"),
        ("GET", "/jobs/{jobID}/results", "getResult"),
        ("GET", "/tileMatrixSets", "getTileMatrixSetsList"),
        ("GET", "/collections/{collectionId}/items/tiles/{tileMatrixSetId}/{z}/{x}/{y}.mvt",
         "getCollectionVectorTile"),
        ("GET", "/exports/{jobID}.{extension}", "getExportArchive"),
        ("GET", "/collections/{collection_id}/items/{item_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}",
         "getItemTile"),
        ("GET", "/collections/{collectionId}/tiles/{tileMatrixSetId}/tilejson.json",
         "getCollectionMosaicTileJSON"),
        ("POST", "/searches", "registerSearch"),
        ("POST", "/upload_sets", "createUploadSet"),
        ("PATCH", "/uploads/{upload_id}", "tusPatch"),
    ],
)  # fmt: skip
def test_operation_ids_clients_rely_on(
    app: FastAPI, method: str, path: str, operation_id: str
) -> None:
    assert (method, path, operation_id) in _operations(app.openapi())


def test_a_name_for_a_route_that_does_not_exist_fails() -> None:
    app = FastAPI()
    router = APIRouter()
    router.add_api_route("/things", lambda: {}, methods=["GET"])
    app.include_router(router, prefix="/v1")
    part = ApiPart(name="things", operation_ids={"GET /v1/things": "getThings"})
    name_operations(app, [part])
    route = next(r for _, r in api_routes(app.routes) if isinstance(r, APIRoute))
    assert route.operation_id == "getThings"
    assert app.openapi()["paths"]["/v1/things"]["get"]["operationId"] == "getThings"
    with pytest.raises(ValueError, match="GET /things"):
        name_operations(app, [ApiPart(name="typo", operation_ids={"GET /things": "getThings"})])


def test_two_parts_may_not_set_the_same_request_model() -> None:
    one = ApiPart(name="one", request_models={"items_get_request_model": dict})
    other = ApiPart(name="other", request_models={"items_get_request_model": list})
    assert request_models([one]) == {"items_get_request_model": dict}
    with pytest.raises(ValueError, match="other is the second"):
        request_models([one, other])


def test_the_document_is_valid_openapi(app: FastAPI) -> None:
    """Checked by openapi-spec-validator: also that every path parameter is declared."""
    validate(app.openapi())


def test_every_operation_declares_the_bearer_scheme(app: FastAPI) -> None:
    """The rights dependency reads ``Authorization: Bearer``: every operation says so, and
    the scheme is declared once (server/auth.py's HTTPBearer)."""
    doc = app.openapi()
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    without = [(m, p, i) for m, p, i in _operations(doc)
               if {"bearer": []} not in doc["paths"][p][m.lower()].get("security", [])]  # fmt: skip
    assert without == []


def _answer_schema(doc: dict[str, Any], method: str, path: str) -> jsonschema.Draft202012Validator:
    media = doc["paths"][path][method]["responses"]["200"]["content"]
    schema = next(m["schema"] for m in media.values() if "schema" in m)
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


@pytest.mark.parametrize(
    ("method", "path", "url", "body"),
    [
        ("get", "/search", "/search?fields=id,properties.gsd", None),
        ("get", "/search", "/search?fields=-geometry,-properties", None),
        ("post", "/search", "/search", {"fields": {"include": ["id"]}}),
        ("get", "/collections/{collection_id}/items", "/collections/c1/items?fields=id", None),
        ("get", "/collections", "/collections?fields=id", None),
        ("get", "/collections", "/collections?fields=-description,-extent", None),
    ],
)  # fmt: skip
def test_answers_cut_by_fields_match_their_schema(
    client: TestClient,
    admin: dict[str, str],
    app: FastAPI,
    method: str,
    path: str,
    url: str,
    body: dict[str, Any] | None,
) -> None:
    """The fields extension drops members the STAC schemas require: the document says so."""
    assert client.post("/collections", json=collection("c1"), headers=admin).status_code == 201
    doc = item("i1", lon=10, lat=20, when="2021-01-01T00:00:00Z", gsd=10)
    assert client.post("/collections/c1/items", json=doc, headers=admin).status_code == 201
    answer = client.request(method.upper(), url, json=body)
    assert answer.status_code == 200, answer.text
    members = answer.json().get("features") or answer.json().get("collections")
    assert members and "description" not in members[0] and "geometry" not in members[0]
    errors = [e.message for e in _answer_schema(app.openapi(), method, path).iter_errors(
        answer.json())]  # fmt: skip
    assert errors == []


def _declared(doc: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    responses = doc["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, (method, path, status, sorted(responses))
    return dict(responses[str(status)])


# Answers schemathesis found undeclared (issue 13): each must be in the document, its body
# true to the declared schema. (method, url, operation path, token, body, expected status)
TUS = {"Tus-Resumable": "1.0.0"}
ANSWERS: list[tuple[str, str, str, bool, Any, int]] = [
    ("POST", "/collections", "/collections", False, None, 401),
    ("DELETE", "/collections/c1", "/collections/{collection_id}", False, None, 401),
    ("GET", "/jobs", "/jobs", False, None, 401),
    ("GET", "/collections/nope", "/collections/{collection_id}", False, None, 404),
    ("GET", "/collections/c1/items/nope", "/collections/{collection_id}/items/{item_id}",
     False, None, 404),
    ("GET", "/search?bbox=1", "/search", False, None, 400),
    ("GET", "/collections?limit=0", "/collections", False, None, 400),
    ("POST", "/upload_sets", "/upload_sets", True, {"collection": "nope"}, 404),
    ("POST", "/uploads/", "/uploads/", True, None, 412),
    ("DELETE", "/uploads/abc", "/uploads/{upload_id}", True, None, 412),
    ("DELETE", "/collections/c1/items/i1", "/collections/{collection_id}/items/{item_id}",
     True, None, 204),
    ("DELETE", "/collections/c1", "/collections/{collection_id}", True, None, 204),
    ("POST", "/searches", "/searches", True, {"collections": ["c1"]}, 201),
    ("GET", "/collections/c1/tiles/WebMercatorQuad/0/0/0",
     "/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{x}/{y}", False, None, 204),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "path", "token", "body", "status"), ANSWERS)
def test_answers_are_declared(
    client: TestClient,
    admin: dict[str, str],
    app: FastAPI,
    method: str,
    url: str,
    path: str,
    token: bool,
    body: Any,
    status: int,
) -> None:
    assert client.post("/collections", json=collection("c1"), headers=admin).status_code == 201
    doc = item("i1", lon=10, lat=20, when="2021-01-01T00:00:00Z")
    assert client.post("/collections/c1/items", json=doc, headers=admin).status_code == 201
    answer = client.request(method, url, json=body, headers=admin if token else {})
    assert answer.status_code == status, answer.text
    declared = _declared(app.openapi(), method, path, status)
    if not answer.content:
        return
    media = declared["content"][answer.headers["content-type"]]
    schema = {**media.get("schema", {}), "components": app.openapi()["components"]}
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(answer.json())]
    assert errors == []


def test_a_second_registration_of_a_search_answers_200_as_declared(
    client: TestClient, admin: dict[str, str], app: FastAPI
) -> None:
    for status in (201, 200):
        answer = client.post("/searches", json={"collections": ["c1"]}, headers=admin)
        assert answer.status_code == status
        _declared(app.openapi(), "POST", "/searches", status)


def test_head_answers_declare_no_body(
    client: TestClient, admin: dict[str, str], app: FastAPI
) -> None:
    answer = client.head("/uploads/abc", headers={**admin, **TUS})
    assert answer.status_code == 404 and not answer.content
    assert "content" not in _declared(app.openapi(), "HEAD", "/uploads/{upload_id}", 404)
    assert all(
        "content" not in r
        for r in app.openapi()["paths"]["/uploads/{upload_id}"]["head"]["responses"].values()
    )
