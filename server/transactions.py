"""Transaction routes whose bodies reach our own STAC checks unparsed.

stac-fastapi's TransactionExtension parses bodies with stac-pydantic first. Its models differ
from our checks in ways users feel: an item without ``links`` (which the server generates
anyway) is refused, a PATCH of a collection's ``links`` list fails (typed as an object), and a
bad item gets a wall of union errors ("ItemCollection.type: ..."). Here the routes take the
JSON as it is and catalog.stac.serializers says precisely what is wrong. Routes, status codes and
conformance classes stay those of the extension.
"""

from typing import Annotated, Any

import attr
from fastapi import APIRouter, Body, FastAPI
from fastapi.responses import JSONResponse
from stac_fastapi.api.models import CollectionUri, EmptyRequest, ItemUri
from stac_fastapi.api.routes import create_async_endpoint
from stac_fastapi.extensions import BulkTransactionExtension, TransactionExtension

from catalog.stac.bulk import BulkItems, BulkResultModel

from .middleware import OrjsonRoute

_ITEM_DOC = "A STAC Item, or a FeatureCollection of Items (https://stacspec.org)."
_COLLECTION_DOC = "A STAC Collection."
_PATCH_DOC = (
    "A JSON merge patch (RFC 7396; application/merge-patch+json or application/json) or a "
    "JSON patch (RFC 6902; application/json-patch+json)."
)


@attr.s
class ItemBody(CollectionUri):
    """POST /collections/{collection_id}/items."""

    item: Annotated[dict[str, Any], Body(description=_ITEM_DOC)] = attr.ib(default=None)


@attr.s
class ItemReplaceBody(ItemUri):
    """PUT /collections/{collection_id}/items/{item_id}."""

    item: Annotated[dict[str, Any], Body(description=_ITEM_DOC)] = attr.ib(default=None)


@attr.s
class ItemPatchBody(ItemUri):
    """PATCH /collections/{collection_id}/items/{item_id}."""

    patch: Annotated[dict[str, Any] | list[Any], Body(description=_PATCH_DOC)] = attr.ib(
        default=None
    )


@attr.s
class CollectionBody(EmptyRequest):
    """POST /collections."""

    collection: Annotated[dict[str, Any], Body(description=_COLLECTION_DOC)] = attr.ib(default=None)


@attr.s
class CollectionReplaceBody(CollectionUri):
    """PUT /collections/{collection_id}."""

    collection: Annotated[dict[str, Any], Body(description=_COLLECTION_DOC)] = attr.ib(default=None)


@attr.s
class CollectionPatchBody(CollectionUri):
    """PATCH /collections/{collection_id}."""

    patch: Annotated[dict[str, Any] | list[Any], Body(description=_PATCH_DOC)] = attr.ib(
        default=None
    )


@attr.s
class BulkItemsBody(CollectionUri):
    """POST /collections/{collection_id}/bulk_items."""

    items: Annotated[
        BulkItems, Body(description="Items by id, insert or upsert, all or nothing or not.")
    ] = attr.ib(default=None)


@attr.s
class RawBodyTransactionExtension(TransactionExtension):
    """The transaction extension with bodies checked by the catalogue, not stac-pydantic."""

    def _route(
        self, name: str, path: str, method: str, endpoint: Any, model: Any, status: int
    ) -> None:
        # A replace or patch answers the document instead with Prefer: return=representation.
        prefer: dict[int | str, dict[str, Any]] = {
            200: {"description": "The stored document (Prefer: return=representation)"}
        }
        self.router.add_api_route(
            name=name,
            path=path,
            methods=[method],
            status_code=status,
            responses=prefer if method in ("PUT", "PATCH") else None,
            response_class=self.response_class,
            endpoint=create_async_endpoint(endpoint, model),
            dependencies=self.route_dependencies,
            route_class_override=OrjsonRoute,  # the body is parsed once, by orjson
        )

    def register_create_item(self) -> None:
        """POST /collections/{collection_id}/items."""
        self._route("Create Item", "/collections/{collection_id}/items", "POST",
                    self.client.create_item, ItemBody, 201)  # fmt: skip

    def register_update_item(self) -> None:
        """PUT /collections/{collection_id}/items/{item_id}."""
        self._route("Update Item", "/collections/{collection_id}/items/{item_id}", "PUT",
                    self.client.update_item, ItemReplaceBody, 204)  # fmt: skip

    def register_patch_item(self) -> None:
        """PATCH /collections/{collection_id}/items/{item_id}."""
        self._route("Patch Item", "/collections/{collection_id}/items/{item_id}", "PATCH",
                    self.client.patch_item, ItemPatchBody, 204)  # fmt: skip

    def register_delete_item(self) -> None:
        """DELETE /collections/{collection_id}/items/{item_id}: 204, no body (idempotent)."""
        self._route("Delete Item", "/collections/{collection_id}/items/{item_id}", "DELETE",
                    self.client.delete_item, ItemUri, 204)  # fmt: skip

    def register_create_collection(self) -> None:
        """POST /collections."""
        self._route("Create Collection", "/collections", "POST",
                    self.client.create_collection, CollectionBody, 201)  # fmt: skip

    def register_update_collection(self) -> None:
        """PUT /collections/{collection_id}."""
        self._route("Update Collection", "/collections/{collection_id}", "PUT",
                    self.client.update_collection, CollectionReplaceBody, 204)  # fmt: skip

    def register_patch_collection(self) -> None:
        """PATCH /collections/{collection_id}."""
        self._route("Patch Collection", "/collections/{collection_id}", "PATCH",
                    self.client.patch_collection, CollectionPatchBody, 204)  # fmt: skip

    def register_delete_collection(self) -> None:
        """DELETE /collections/{collection_id}: 204, no body (idempotent)."""
        self._route("Delete Collection", "/collections/{collection_id}", "DELETE",
                    self.client.delete_collection, CollectionUri, 204)  # fmt: skip


@attr.s
class PathBulkTransactionExtension(BulkTransactionExtension):
    """The bulk extension with its ``collection_id`` declared as a path parameter.

    stac-fastapi 7 builds the route's request model from the body alone, so the OpenAPI document
    used a path parameter it never declared: client generators and fuzzers could not call it.
    """

    def register(self, app: FastAPI) -> None:
        """Add POST /collections/{collection_id}/bulk_items."""
        router = APIRouter(prefix=app.state.router_prefix, route_class=OrjsonRoute)
        router.add_api_route(
            name="Bulk Create Item",
            path="/collections/{collection_id}/bulk_items",
            response_model=BulkResultModel if self.enable_response_models else None,
            response_class=JSONResponse,
            methods=["POST"],
            endpoint=create_async_endpoint(self.client.bulk_item_insert, BulkItemsBody),
            dependencies=self.route_dependencies,
        )
        app.include_router(router, tags=["Bulk Transaction Extension"])
