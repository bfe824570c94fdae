"""Saved searches: ``POST /searches`` saves an item search, ``GET /searches/{searchId}``
describes it to its saver (catalog/maps/mosaic.py says how ids are made and whose a search is).

Their tiles are tiler/mosaic.py's; this module is the two routes and the document they answer.
"""

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from catalog.accounts.web import owner_id_of, principal_of
from catalog.maps.mosaic import MosaicRepository, SavedSearch, SearchBody, not_registered
from catalog.web import base_url, json_response

TEMPLATE = "{tileMatrix}/{tileCol}/{tileRow}"


def search_document(saved: SavedSearch, base: str, tms_ids: Sequence[str]) -> dict[str, Any]:
    """A saved search with links to itself and to its TileJSON and tiles per TMS."""
    href = f"{base}searches/{saved.id}"
    links: list[dict[str, Any]] = [{"rel": "self", "type": "application/json", "href": href}]
    for tms in tms_ids:
        links.append(
            {
                "rel": "tilejson",
                "type": "application/json",
                "href": f"{href}/tiles/{tms}/tilejson.json",
                "title": f"TileJSON ({tms})",
            }
        )
        links.append(
            {
                "rel": "item",
                "type": "image/png",
                "templated": True,
                "href": f"{href}/tiles/{tms}/{TEMPLATE}",
                "title": f"Map tiles ({tms})",
            }
        )
    return {"id": saved.id, "search": saved.body, "links": links}  # fmt: skip


def searches_router(
    repository: Callable[..., MosaicRepository],
    tms_ids: Sequence[str],
    write_dependencies: Sequence[Any],
) -> APIRouter:
    """``POST /searches`` (behind ``write_dependencies``) and ``GET /searches/{searchId}``."""
    router = APIRouter(tags=["Mosaics"])
    Repo = Annotated[MosaicRepository, Depends(repository)]

    async def register_search(
        request: Request, repo: Repo, body: Annotated[dict[str, Any], Body()]
    ) -> Response:
        """Save an item search (a STAC item-search body); 201 when new, 200 if it was saved."""
        try:
            search = SearchBody.model_validate(body)
        except ValidationError as exc:  # same codes as POST /search (server error table)
            raise RequestValidationError(exc.errors(include_url=False)) from exc
        saved, new = await repo.register(search, owner_id_of(request))
        doc = search_document(saved, base_url(request), tms_ids)
        return json_response(doc, 201 if new else 200, {"Location": doc["links"][0]["href"]})

    async def get_search(
        request: Request,
        search_id: Annotated[str, Path(alias="searchId", description="A saved search id.")],
        repo: Repo,
    ) -> Response:
        """A saved search and its map links; ``search.NotFound`` if unknown or not the caller's."""
        saved = await repo.get(search_id)
        if not principal_of(request).owns(saved.owner_id):
            raise not_registered(search_id)
        return json_response(search_document(saved, base_url(request), tms_ids))

    router.add_api_route(
        "/searches",
        register_search,
        methods=["POST"],
        operation_id="registerSearch",
        summary="Save an item search",
        status_code=201,
        responses={
            201: {"description": "Saved", "content": {"application/json": {}}},
            200: {"description": "Saved before: the same id", "content": {"application/json": {}}},
        },
        dependencies=list(write_dependencies),
        response_class=Response,
    )
    router.add_api_route("/searches/{searchId}", get_search, methods=["GET"],
                         operation_id="getSearch", summary="Describe a saved search",
                         response_class=Response)  # fmt: skip
    return router
