"""Every operation has an explicit, unique camelCase operationId; the parts merge as declared."""

import re
from collections import Counter
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from server.parts import ApiPart, api_routes, name_operations, request_models
from server.settings import Settings
from tests.apps import AppPool

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
