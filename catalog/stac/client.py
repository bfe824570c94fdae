"""stac-fastapi backend clients: parse the request, ask the repository, serialize the answer."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast
from urllib.parse import quote, urlencode

import attr
import jsonpatch
from fastapi import Request
from stac_fastapi.extensions.bulk_transactions.bulk_transactions import (
    AsyncBaseBulkTransactionsClient,
    Items,
)
from stac_fastapi.extensions.transaction.client import AsyncBaseTransactionsClient
from stac_fastapi.types.core import AsyncBaseCoreClient
from stac_fastapi.types.search import BaseSearchPostRequest
from starlette.responses import Response

from catalog import web
from catalog.accounts.web import owner_id_of, readable_of
from catalog.errors import InvalidParameter, InvalidStac
from catalog.settings import CatalogSettings, LimitSettings
from catalog.stac import collection_search
from catalog.stac.assets import asset_links, client_collection, client_rows
from catalog.stac.bulk import load_items
from catalog.stac.fields import apply_fields
from catalog.stac.repository import CatalogRepository, Page
from catalog.stac.requests import (
    FieldSelection,
    get_search_params,
    page_size,
    post_fields,
    post_search_params,
)
from catalog.stac.search import SearchParams, encode_token
from catalog.stac.serializers import collection_document, collection_row, item_document
from catalog.storage import remove_collection_files, remove_item_files
from catalog.vector.errors import VectorCollection
from catalog.vector.repository import VectorRepository
from catalog.vector.transactions import FeatureWriter, feature_id
from catalog.web import json_response

GEOJSON = "application/geo+json"
# The STAC Authentication extension: how to send a token, on the landing page and on every
# collection; links that need one name it in ``auth:refs``.
AUTH_EXTENSION = "https://stac-extensions.github.io/authentication/v1.1.0/schema.json"
AUTH_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`tcat_...`) or a JWT of the configured OpenID Connect "
        "issuer, as 'Authorization: Bearer <token>'. Without one, only public collections "
        "are readable.",
    }
}
# Adds links to the items or collections of a response, before ``fields`` applies: how the
# composition root lets packages after catalog/ link what they serve per document (the
# tiler's maps, tiler/links.py) without catalog/ importing them.
DocumentLinks = Callable[[Request, list[dict[str, Any]]], Awaitable[None]]


class CollectionItems(Protocol):
    """Serves the items routes of collections whose items are not STAC items.

    Vector collections (ogc/features.py): each method answers for a collection it serves and
    returns None for any other, which then gets the STAC items. One route, one operation in
    OpenAPI; its request model declares the parameters of both (docs/api.md).
    """

    async def items(
        self, request: Request, collection_id: str, params: Mapping[str, Any]
    ) -> Response | None:
        """GET /collections/{collection_id}/items, or None."""

    async def item(
        self, request: Request, collection_id: str, item_id: str, params: Mapping[str, Any]
    ) -> Response | None:
        """GET /collections/{collection_id}/items/{item_id}, or None."""


def repository(request: Request) -> CatalogRepository:
    """The repository the app was started with."""
    repo: CatalogRepository = request.app.state.repository
    return repo


# What a link that needs a token carries (``landing_links``: jobs, uploads).
NEEDS_TOKEN: dict[str, Any] = {"auth:refs": ["bearer"]}


def advertise_auth(doc: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer scheme on a landing page or collection document (in place)."""
    extensions = doc.setdefault("stac_extensions", [])
    if AUTH_EXTENSION not in extensions:
        extensions.append(AUTH_EXTENSION)
    doc["auth:schemes"] = AUTH_SCHEMES
    return doc


def _written(request: Request, doc: dict[str, Any], media_type: str) -> Response:
    """204 after a replace or patch; 200 with the document if the client prefers it (RFC 7240)."""
    if "return=representation" in request.headers.get("prefer", ""):
        headers = {"Preference-Applied": "return=representation"}
        return json_response(doc, headers=headers, media_type=media_type)
    return Response(status_code=204)


@attr.s
class CoreClient(AsyncBaseCoreClient):
    """Core STAC API: landing page, collections, items and item search."""

    settings: CatalogSettings = attr.ib(factory=CatalogSettings)
    limits: LimitSettings = attr.ib(factory=LimitSettings)
    # Links the composition root adds to the landing page (other OGC APIs served alongside):
    # dicts with rel, type, title and a path relative to the API root (and ``auth:refs``
    # where the link needs a token).
    landing_links: list[dict[str, Any]] = attr.ib(factory=list)
    # Links every collection document gets, for the APIs served per collection (tilesets):
    # same shape, ``path`` relative to the collection's URL and may be empty.
    collection_links: list[dict[str, str]] = attr.ib(factory=list)
    # Hooks adding links per document (DocumentLinks), to items and to collections.
    item_hooks: list[DocumentLinks] = attr.ib(factory=list)
    collection_hooks: list[DocumentLinks] = attr.ib(factory=list)
    # Asked first by the items routes: collections whose items are not STAC items.
    collection_items: list[CollectionItems] = attr.ib(factory=list)

    def _collection(self, row: Any, base_url: str) -> dict[str, Any]:
        doc = collection_document(row, base_url)
        own = f"{base_url}collections/{quote(str(row['id']), safe='')}"
        for link in self.collection_links:
            extra = {k: v for k, v in link.items() if k != "path"}
            href = own + ("/" + link["path"] if link["path"] else "")
            doc["links"].append({**extra, "href": href})
        return advertise_auth(doc)

    async def landing_page(self, **kwargs: Any) -> Any:
        """GET /: stac-fastapi's landing page plus the links of the other APIs served here."""
        page = await super().landing_page(**kwargs)
        base_url = web.base_url(kwargs["request"])
        for link in self.landing_links:
            extra = {k: v for k, v in link.items() if k != "path"}
            page["links"].append({**extra, "href": base_url + link["path"].lstrip("/")})
        return advertise_auth(cast(dict[str, Any], page))

    def extension_is_enabled(self, extension: str) -> bool:
        """Whether an extension of that class name, or a subclass of it, is enabled.

        stac-fastapi compares exact class names, so our subclassed search filter extension
        would lose the landing page's queryables link.
        """
        return any(extension in {c.__name__ for c in type(e).__mro__} for e in self.extensions)

    # The methods below keep stac-fastapi's signatures: it passes everything, the request
    # included, as keywords. They return Any because stac-fastapi hands a Response through
    # as it is, which its base types (the documents only) do not say.

    # -- collections ------------------------------------------------------------------------
    async def all_collections(self, **kwargs: Any) -> Any:
        """GET /collections, with collection search parameters."""
        request: Request = kwargs["request"]
        base_url = web.base_url(request)
        params = collection_search.CollectionSearch.from_get(kwargs, self.settings, self.limits)
        params.readable = await readable_of(request)
        rows, matched = await collection_search.run(repository(request), params)
        collections = [self._collection(r, base_url) for r in rows]
        await _hooked(self.collection_hooks, request, collections)
        if params.include or params.exclude:
            collections = [apply_fields(c, params.include, params.exclude) for c in collections]
        links = [
            {"rel": "root", "type": "application/json", "href": base_url},
            {"rel": "parent", "type": "application/json", "href": base_url},
            {"rel": "self", "type": "application/json",
             "href": _url(base_url, "collections", request.query_params)},
        ]  # fmt: skip
        if params.offset + len(rows) < matched:
            links.append(_offset_link(base_url, request, "next", params.offset + params.limit))
        if params.offset > 0:
            links.append(
                _offset_link(base_url, request, "prev", max(0, params.offset - params.limit))
            )
        return json_response(
            {
                "collections": collections,
                "links": links,
                "numberMatched": matched,
                "numberReturned": len(collections),
            }
        )

    async def get_collection(self, collection_id: str, **kwargs: Any) -> Any:
        """GET /collections/{collection_id}."""
        request: Request = kwargs["request"]
        row = await repository(request).get_collection(collection_id)
        doc = self._collection(row, web.base_url(request))
        await _hooked(self.collection_hooks, request, [doc])
        return json_response(doc)

    # -- items ------------------------------------------------------------------------------
    async def get_item(self, item_id: str, collection_id: str, **kwargs: Any) -> Any:
        """GET /collections/{collection_id}/items/{item_id}."""
        request: Request = kwargs["request"]
        for other in self.collection_items:
            if (answer := await other.item(request, collection_id, item_id, kwargs)) is not None:
                return answer
        row = await repository(request).get_item(collection_id, item_id)
        doc = item_document(row, web.base_url(request), assets=await asset_links(request))
        await _hooked(self.item_hooks, request, [doc])
        return json_response(doc, media_type=GEOJSON)

    # stac-fastapi types the parameters of these two after its own GET request models; ours
    # (catalog/stac/requests.py) pass bbox, collections and ids on as sent, in **kwargs.
    async def item_collection(  # type: ignore[override]
        self, collection_id: str, **kwargs: Any
    ) -> Any:
        """GET /collections/{collection_id}/items (filter, sort, fields, query, paging)."""
        request: Request = kwargs["request"]
        for other in self.collection_items:
            if (answer := await other.items(request, collection_id, kwargs)) is not None:
                return answer
        await repository(request).get_collection(collection_id)
        kwargs.pop("collections", None)
        params, fields = get_search_params(kwargs, request.query_params, self.settings, self.limits)
        params.collections = [collection_id]
        route = f"collections/{quote(collection_id, safe='')}/items"
        return await self._search(request, params, fields, route, post_body=None)

    async def get_search(self, **kwargs: Any) -> Any:  # type: ignore[override]
        """GET /search."""
        request: Request = kwargs["request"]
        params, fields = get_search_params(kwargs, request.query_params, self.settings, self.limits)
        return await self._search(request, params, fields, "search", post_body=None)

    async def post_search(self, search_request: BaseSearchPostRequest, **kwargs: Any) -> Any:
        """POST /search."""
        request: Request = kwargs["request"]
        body = await web.read_json(request)
        fields = post_fields(body)
        limit = page_size(search_request.limit, self.settings)
        params = post_search_params(search_request, body, limit, self.limits)
        return await self._search(request, params, fields, "search", post_body=body)

    async def _search(
        self,
        request: Request,
        params: SearchParams,
        fields: FieldSelection,
        route: str,
        post_body: dict[str, Any] | None,
    ) -> Response:
        params.readable = await readable_of(request)
        page = await repository(request).search(params)
        base_url = web.base_url(request)
        stored = await asset_links(request) if page.rows else None
        features = [item_document(row, base_url, assets=stored) for row in page.rows]
        await _hooked(self.item_hooks, request, features)
        include, exclude, default_base = fields
        if include or exclude or default_base:
            features = [apply_fields(f, include, exclude, default_base) for f in features]
        links = [{"rel": "root", "type": "application/json", "href": base_url}]
        if post_body is None:
            links.append({"rel": "self", "type": "application/geo+json",
                          "href": _url(base_url, route, request.query_params)})  # fmt: skip
        if route != "search":
            links.append({"rel": "collection", "type": "application/json",
                          "href": base_url + route.rsplit("/", 1)[0]})  # fmt: skip
        for rel, values, backwards in (
            ("next", page.next_values, False),
            ("prev", page.prev_values, True),
        ):
            if values is None:
                continue
            token = encode_token(page.keys, values, backwards)
            links.append(_page_link(base_url, route, request, post_body, rel, token))
        result: dict[str, Any] = {"type": "FeatureCollection", "features": features, "links": links}
        if page.matched is not None:
            result["numberMatched"] = page.matched
        result["numberReturned"] = len(features)
        return json_response(result, media_type=GEOJSON)


async def _hooked(
    hooks: list[DocumentLinks], request: Request, documents: list[dict[str, Any]]
) -> None:
    for hook in hooks:
        await hook(request, documents)


def _url(base_url: str, route: str, query: Mapping[str, str] | None) -> str:
    url = base_url + route
    if query:
        url += "?" + urlencode(list(query.items()))
    return url


def _page_link(
    base_url: str,
    route: str,
    request: Request,
    post_body: dict[str, Any] | None,
    rel: str,
    token: str,
) -> dict[str, Any]:
    if post_body is not None:
        return {
            "rel": rel,
            "type": "application/geo+json",
            "method": "POST",
            "href": base_url + route,
            "body": {**post_body, "token": token},
            "merge": False,
        }
    # A token says where the page starts: it replaces the token or offset this page had.
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("token", "offset")]
    query.append(("token", token))
    return {
        "rel": rel,
        "type": "application/geo+json",
        "method": "GET",
        "href": f"{base_url}{route}?{urlencode(query)}",
    }


def _offset_link(base_url: str, request: Request, rel: str, offset: int) -> dict[str, Any]:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
    query.append(("offset", str(offset)))
    return {
        "rel": rel,
        "type": "application/json",
        "href": f"{base_url}collections?{urlencode(query)}",
    }


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch (a dozen lines; no maintained library implements it alone)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


async def _patched(request: Request, current: dict[str, Any]) -> dict[str, Any]:
    body = await web.read_json(request)
    if isinstance(body, list):
        try:
            return jsonpatch.apply_patch(current, body)  # type: ignore[no-any-return]
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise InvalidStac(f"JSON patch cannot be applied: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidStac("a PATCH body is a JSON merge patch object or a JSON patch array")
    return _merge_patch(current, body)  # type: ignore[no-any-return]


def _rights_changed(request: Request) -> None:
    """Forget this process's cached readable sets: the caller sees its new collection at once
    (other processes within ``AccountSettings.rights_cache_s``)."""
    accounts = getattr(request.app.state, "accounts", None)
    if accounts is not None:
        accounts.rights.clear()


async def _vector(request: Request, collection_id: str) -> bool:
    """Whether the collection holds vector features (its items are those features)."""
    return await VectorRepository(repository(request).engine).layer(collection_id) is not None


def _layer_changed(request: Request, collection_id: str) -> None:
    """Forget this process's cached layer after a write: its extent, and its schema when the
    write added properties, show in the next tile, TileJSON, style or map (other processes
    within ``TileSettings.layer_cache_s``)."""
    cache = getattr(request.app.state, "vector_layers", None)
    if cache is not None:
        cache.forget(collection_id)


async def _create_features(request: Request, collection_id: str, body: Any) -> Response:
    writer = FeatureWriter(repository(request).engine)
    fids = await writer.create(collection_id, body)
    _layer_changed(request, collection_id)
    base = web.base_url(request)
    if isinstance(body, Mapping) and body.get("type") == "FeatureCollection":
        return json_response({"created": len(fids), "ids": fids}, 201)
    doc = await writer.document(collection_id, fids[0], base)
    return json_response(doc, 201, {"Location": doc["links"][0]["href"]}, GEOJSON)


async def _write_feature(
    request: Request, collection_id: str, item_id: str, body: Any, partial: bool
) -> Response:
    """PUT (replace) or PATCH (merge patch) of one feature."""
    writer = FeatureWriter(repository(request).engine)
    fid = feature_id(item_id)
    if partial and isinstance(body, list):  # a JSON patch applies to the feature as served
        current = await writer.document(collection_id, fid, web.base_url(request))
        body, partial = await _patched(request, current), False
    await (writer.patch if partial else writer.replace)(collection_id, fid, body)
    _layer_changed(request, collection_id)
    doc = await writer.document(collection_id, fid, web.base_url(request))
    return _written(request, doc, GEOJSON)


def _same_id(path_id: str, body: Mapping[str, Any], what: str) -> None:
    if body.get("id") != path_id:
        raise InvalidStac(f"{what} id {body.get('id')!r} does not match the URL ({path_id!r})")


@attr.s
class TransactionsClient(AsyncBaseTransactionsClient):
    """Create, replace, patch and delete collections and items."""

    settings: CatalogSettings = attr.ib(factory=CatalogSettings)
    # Visibility of the collections it creates (``AccountSettings.default_visibility``).
    default_visibility: str = attr.ib(default="public")

    async def create_item(self, collection_id: str, item: Any, **kwargs: Any) -> Any:
        """POST /collections/{collection_id}/items: one item or a FeatureCollection (features
        of a vector collection: catalog/vector/transactions.py)."""
        request: Request = kwargs["request"]
        body = await web.read_json(request)
        if await _vector(request, collection_id):
            return await _create_features(request, collection_id, body)
        repo = repository(request)
        strict = self.settings.validate_extensions
        if body.get("type") == "FeatureCollection":
            features = body.get("features", [])
            rows = await client_rows(repo, collection_id, features, strict)
            count = await repo.write_items(collection_id, rows, upsert=False)
            return json_response({"created": count}, 201)
        rows = await client_rows(repo, collection_id, [body], strict)
        await repo.write_items(collection_id, rows, upsert=False)
        doc = item_document({**rows[0], "collection_id": collection_id}, web.base_url(request),
                            assets=await asset_links(request))  # fmt: skip
        return json_response(doc, 201, {"Location": doc["links"][0]["href"]}, GEOJSON)

    async def update_item(self, collection_id: str, item_id: str, item: Any, **kwargs: Any) -> Any:
        """PUT /collections/{collection_id}/items/{item_id}."""
        request: Request = kwargs["request"]
        body = await web.read_json(request)
        if await _vector(request, collection_id):
            return await _write_feature(request, collection_id, item_id, body, partial=False)
        _same_id(item_id, body, "item")
        repo = repository(request)
        strict = self.settings.validate_extensions
        [row] = await client_rows(repo, collection_id, [body], strict)
        await repo.replace_item(collection_id, row)
        doc = item_document({**row, "collection_id": collection_id}, web.base_url(request),
                            assets=await asset_links(request))  # fmt: skip
        return _written(request, doc, "application/geo+json")

    async def patch_item(self, collection_id: str, item_id: str, patch: Any, **kwargs: Any) -> Any:
        """PATCH /collections/{collection_id}/items/{item_id} (merge patch or JSON patch)."""
        request: Request = kwargs["request"]
        if await _vector(request, collection_id):
            body = await web.read_json(request)
            return await _write_feature(request, collection_id, item_id, body, partial=True)
        repo = repository(request)
        base_url = web.base_url(request)
        # The patch applies to the item as clients see it: its stored assets as URLs, which
        # the write turns back into their keys (a round trip).
        links = await asset_links(request)
        current = item_document(await repo.get_item(collection_id, item_id), base_url,
                                assets=links)  # fmt: skip
        updated = await _patched(request, current)
        _same_id(item_id, updated, "item")
        [row] = await client_rows(repo, collection_id, [updated],
                                   self.settings.validate_extensions)  # fmt: skip
        await repo.replace_item(collection_id, row)
        doc = item_document({**row, "collection_id": collection_id}, base_url, assets=links)
        return _written(request, doc, "application/geo+json")

    async def delete_item(self, item_id: str, collection_id: str, **kwargs: Any) -> Any:
        """DELETE /collections/{collection_id}/items/{item_id}.

        Idempotent (RFC 9110): 204 whether or not the item was there; 404 only when the
        collection itself does not exist. The files we stored for it go once it is deleted.
        """
        request: Request = kwargs["request"]
        if await _vector(request, collection_id):
            writer = FeatureWriter(repository(request).engine)
            await writer.delete(collection_id, feature_id(item_id))
            _layer_changed(request, collection_id)
            return Response(status_code=204)
        assets = await repository(request).delete_item(collection_id, item_id)
        storage = getattr(request.app.state, "storage", None)
        if assets and storage is not None:
            await asyncio.to_thread(remove_item_files, storage, collection_id, item_id, assets)
        return Response(status_code=204)

    async def create_collection(self, collection: Any, **kwargs: Any) -> Any:
        """POST /collections."""
        request: Request = kwargs["request"]
        body = client_collection(await web.read_json(request))
        row = collection_row(body, self.settings.validate_extensions)
        # An id that exists is a 409 whether or not the caller may read that collection: that
        # it exists is all it learns, as a create of any taken name would tell.
        await repository(request).create_collection(
            row, owner_id_of(request), self.default_visibility
        )
        _rights_changed(request)
        doc = collection_document(row, web.base_url(request))
        return json_response(doc, 201, {"Location": doc["links"][0]["href"]})

    async def update_collection(self, collection_id: str, collection: Any, **kwargs: Any) -> Any:
        """PUT /collections/{collection_id}."""
        request: Request = kwargs["request"]
        body = await web.read_json(request)
        _same_id(collection_id, body, "collection")
        row = collection_row(client_collection(body), self.settings.validate_extensions)
        stored = await repository(request).update_collection(row)
        return _written(
            request, collection_document(stored, web.base_url(request)), "application/json"
        )

    async def patch_collection(self, collection_id: str, patch: Any, **kwargs: Any) -> Any:
        """PATCH /collections/{collection_id} (merge patch or JSON patch)."""
        request: Request = kwargs["request"]
        repo = repository(request)
        base_url = web.base_url(request)
        stored = await repo.get_collection(collection_id)
        current = collection_document(stored, base_url)
        if stored["declared_extent"] is not None:
            # The patch applies to the collection as the client wrote it: an extent it does
            # not touch stays the declared one, not the items' extent served in its place.
            current["extent"] = stored["declared_extent"]
        updated = await _patched(request, current)
        _same_id(collection_id, updated, "collection")
        row = collection_row(client_collection(updated), self.settings.validate_extensions)
        stored = await repo.update_collection(row)
        return _written(request, collection_document(stored, base_url), "application/json")

    async def delete_collection(self, collection_id: str, **kwargs: Any) -> Any:
        """DELETE /collections/{collection_id} and all its items (idempotent: always 204)."""
        request: Request = kwargs["request"]
        existed = await repository(request).delete_collection(collection_id)
        _rights_changed(request)
        storage = getattr(request.app.state, "storage", None)
        if existed and storage is not None:  # its items' files, once they are deleted
            await asyncio.to_thread(remove_collection_files, storage, collection_id)
        return Response(status_code=204)


@attr.s
class BulkTransactionsClient(AsyncBaseBulkTransactionsClient):
    """POST /collections/{collection_id}/bulk_items: many items, an outcome for each."""

    settings: CatalogSettings = attr.ib(factory=CatalogSettings)

    async def bulk_item_insert(self, items: Items, **kwargs: Any) -> Any:
        """Store the valid items, report each refused one (all or nothing if ``atomic``)."""
        if items is None:  # FastAPI leaves an absent body to the endpoint
            raise InvalidParameter("the request needs a JSON body")
        collection_id = kwargs["collection_id"]
        if await _vector(kwargs["request"], collection_id):
            raise VectorCollection(
                f"collection {collection_id!r} holds vector features, not STAC items: send "
                "features to POST /collections/{id}/items (a Feature or a FeatureCollection), "
                "or upload a file to an upload set"
            )
        result = await load_items(
            repository(kwargs["request"]),
            kwargs["collection_id"],
            items.items,
            upsert=items.method == "upsert",
            atomic=bool(getattr(items, "atomic", False)),
            validate_extensions=self.settings.validate_extensions,
        )
        return result.as_dict()


__all__ = [
    "BulkTransactionsClient",
    "CollectionItems",
    "CoreClient",
    "TransactionsClient",
    "Page",
]
