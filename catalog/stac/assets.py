"""Stored assets over HTTP: their links in documents, their download route, and what clients
may write in their place.

The database keeps ``storage:{key}`` as the href of every file this catalogue stored
(catalog/storage/base.py). Documents leaving the API show each such asset as the absolute URL of
``GET|HEAD /collections/{collectionId}/items/{itemId}/assets/{assetKey}`` (``AssetLinks``),
signed (catalog/accounts/signing.py) when anonymous callers may not read its collection. The
route names an asset of an item, never a path: it serves the key the item's row holds, and
only ``storage:`` ones (never a foreign URL).

Clients never write ``storage:`` or ``file:`` hrefs (``stac.ReservedHref``), except as a round
trip: an asset whose href is this same item's own download URL for the same asset name (any
host, signature ignored) keeps the key the database has for it (``restore_stored``).
"""

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from catalog import web
from catalog.accounts.principal import ANONYMOUS
from catalog.accounts.rights import EVERYTHING, Readable
from catalog.accounts.signing import EXPIRY_PARAM, SIGNATURE_PARAM, LinkSigner, asset_path
from catalog.errors import InvalidStac, NotFound
from catalog.storage.base import STORED_SCHEME, Storage, stored_key
from catalog.storage.responses import Download, stored_response

from .repository import CatalogRepository
from .serializers import item_row

_RESERVED = (STORED_SCHEME, "file:")


class ReservedHref(InvalidStac):
    """An asset href with a scheme only the server writes (``storage:``, ``file:``)."""

    code = "stac.ReservedHref"


class AssetNotFound(NotFound):
    """The item has no asset of that name that this catalogue stores."""

    code = "asset.NotFound"


class AssetNotStored(NotFound):
    """The asset exists but its href points elsewhere: this route serves stored files only."""

    code = "asset.NotStored"


# -- links ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AssetLinks:
    """How stored assets appear in the documents of one response: the download route under
    ``base_url``, signed unless ``public`` (what anonymous callers read) has the collection."""

    base_url: str
    signer: LinkSigner | None = None
    public: Readable = EVERYTHING
    expires: int | None = None  # one expiry for the whole response
    # ``public`` as a set: one lookup per asset, however many collections there are
    _public_ids: frozenset[str] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        ids = None if self.public.ids is None else frozenset(self.public.ids)
        object.__setattr__(self, "_public_ids", ids)

    def _signed(self, collection_id: str) -> bool:
        ids = self._public_ids
        return self.signer is not None and ids is not None and collection_id not in ids

    def href(self, collection_id: str, item_id: str, name: str) -> str:
        """The URL of one asset."""
        path = asset_path(collection_id, item_id, name)
        url = self.base_url + path
        if self.signer is not None and self._signed(collection_id):
            url += "?" + self.signer.query(path, self.expires)
        return url

    def rewrite(
        self, collection_id: str, item_id: str, assets: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``assets`` with every stored href replaced by its URL (a new dict, when it changes)."""
        out: dict[str, Any] | None = None
        for name, asset in assets.items():
            if isinstance(asset, dict) and stored_key(asset.get("href")) is not None:
                if out is None:
                    out = dict(assets)
                out[name] = {**asset, "href": self.href(collection_id, item_id, name)}
        return out if out is not None else dict(assets)


async def asset_links(request: Request) -> AssetLinks:
    """The links of this request's documents: one cached lookup of the public collections
    (``AccountRepository.readable`` of the anonymous caller), one expiry for the page."""
    base_url = web.base_url(request)
    signer: LinkSigner | None = getattr(request.app.state, "signer", None)
    accounts = getattr(request.app.state, "accounts", None)
    if signer is None or accounts is None:
        return AssetLinks(base_url)
    public = await accounts.readable(ANONYMOUS)
    return AssetLinks(base_url, signer, public, signer.expiry())


# -- what clients write --------------------------------------------------------------------------
def own_asset_name(href: str, collection_id: str, item_id: str) -> str | None:
    """The asset name of an http(s) URL of this item's download route (any host, any query),
    or None."""
    if "/items/" not in href or "/assets/" not in href:
        return None  # most hrefs (a bucket, another server) are told apart without parsing
    try:
        parts = urlsplit(href)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    segments = parts.path.split("/")
    if len(segments) < 7:
        return None
    collections, c, items, i, assets, name = segments[-6:]
    if (collections, items, assets) != ("collections", "items", "assets"):
        return None
    if unquote(c) != collection_id or unquote(i) != item_id or not name:
        return None
    return unquote(name)


def client_hrefs(item: Any, collection_id: str) -> list[str]:
    """Check the asset hrefs a client sent: ``ReservedHref`` for a ``storage:`` or ``file:``
    one; the names of the assets whose href is this item's own download URL for that name."""
    if not isinstance(item, Mapping):
        return []
    assets, item_id = item.get("assets"), item.get("id")
    if not isinstance(assets, Mapping) or not isinstance(item_id, str):
        return []
    _refuse_reserved(f"item {item_id!r}", assets)
    return [
        name
        for name, asset in assets.items()
        if isinstance(asset, Mapping)
        and isinstance(asset.get("href"), str)
        and own_asset_name(asset["href"], collection_id, item_id) == name
    ]


def client_collection(doc: Any) -> Any:
    """A collection a client wrote, once its assets are checked: ``ReservedHref`` for a
    ``storage:`` or ``file:`` href (a collection stores no files of its own)."""
    if isinstance(doc, Mapping) and isinstance(doc.get("assets"), Mapping):
        _refuse_reserved(f"collection {doc.get('id')!r}", doc["assets"])
    return doc


def _refuse_reserved(what: str, assets: Mapping[str, Any]) -> None:
    for name, asset in assets.items():
        href = asset.get("href") if isinstance(asset, Mapping) else None
        if isinstance(href, str) and href.strip().lower().startswith(_RESERVED):
            raise ReservedHref(
                f"{what}: asset {name!r} has a {href.split(':', 1)[0]}: href, which only this "
                "server writes; link a file by an http(s) URL, or upload it",
                path=f"/assets/{name}/href",
            )


async def restore_stored(
    repository: CatalogRepository,
    collection_id: str,
    rows: Iterable[MutableMapping[str, Any]],
    round_trips: Mapping[str, list[str]],
) -> None:
    """Put back the stored key of each round-tripped asset (``round_trips``: item id -> asset
    names) into the rows to write, from one query; an asset the item does not store keeps its
    URL, without a signature."""
    wanted = {item_id: names for item_id, names in round_trips.items() if names}
    if not wanted:
        return
    stored = await repository.stored_assets(collection_id, list(wanted))
    for row in rows:
        names = wanted.get(row["id"])
        if not names:
            continue
        assets = row["content"]["assets"]
        for name in names:
            key = stored.get(row["id"], {}).get(name)
            href = assets[name]["href"]
            assets[name] = {**assets[name], "href": key if key is not None else _unsigned(href)}
        row.pop("encoded", None)  # its JSON text (bulk loads) is made again from the content


async def client_rows(
    repository: CatalogRepository, collection_id: str, items: list[Any], strict: bool
) -> list[dict[str, Any]]:
    """The rows of items a client wrote (``item_row``): no reserved hrefs, round-tripped asset
    URLs back to the keys they stand for."""
    trips: dict[str, list[str]] = {}
    rows = []
    for item in items:
        names = client_hrefs(item, collection_id)
        row = item_row(item, collection_id, strict)
        trips[row["id"]] = names
        rows.append(row)
    await restore_stored(repository, collection_id, rows, trips)
    return rows


def _unsigned(href: str) -> str:
    parts = urlsplit(href)
    query = "&".join(
        p for p in parts.query.split("&")
        if p and p.split("=", 1)[0] not in (EXPIRY_PARAM, SIGNATURE_PARAM)
    )  # fmt: skip
    return parts._replace(query=query).geturl()


# -- the download route --------------------------------------------------------------------------
def app_storage(request: Request) -> Storage:
    """The storage create_app built (``app.state.storage``)."""
    storage: Storage = request.app.state.storage
    return storage


def _redirects(request: Request) -> bool:
    """Whether stored assets are answered with redirects to the storage's own URLs
    (``TERRACAT_STORAGE_DOWNLOAD=redirect``; streaming when the setting is absent)."""
    settings = getattr(request.app.state, "settings", None)
    storage_settings = getattr(settings, "storage", None)
    return getattr(storage_settings, "download", "stream") == "redirect"


DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file (`Accept-Ranges: bytes`, strong `ETag`, `Last-Modified`)"},
    206: {"description": "One requested byte range (several ranges: the whole file, 200)"},
    304: {"description": "`If-None-Match` (or `If-Modified-Since`) matches the file"},
    307: {"description": "The storage's own presigned URL (object storage set to redirect)"},
    400: {"description": "`asset.InvalidRange`: the Range header is not a bytes range set"},
    403: {"description": "`asset.InvalidSignature` (tampered or another asset's link) or "
                         "`asset.SignatureExpired`"},
    404: {"description": "`catalog.NotFound` (collection or item), `asset.NotFound`, "
                         "`asset.NotStored` (the asset is a link elsewhere)"},
    416: {"description": "`asset.RangeNotSatisfiable`: the range starts past the end; "
                         "`Content-Range: bytes */<size>` gives the size"},
}  # fmt: skip


async def stored_asset(
    repository: CatalogRepository, collection_id: str, item_id: str, asset_key: str
) -> tuple[dict[str, Any], str]:
    """An item's asset and the storage key of its file (an ``assets/`` key); 404 when the
    item or the asset is missing, ``AssetNotStored`` when its file is not stored here."""
    row = await repository.get_item(collection_id, item_id)
    asset = (row["content"].get("assets") or {}).get(asset_key)
    if not isinstance(asset, dict):
        raise AssetNotFound(f"item {item_id!r} has no asset {asset_key!r}")
    key = stored_key(asset.get("href"))
    if key is None or not key.startswith("assets/"):
        raise AssetNotStored(f"asset {asset_key!r} of item {item_id!r} is not stored here")
    return asset, key


def assets_router(storage: Callable[..., Storage] = app_storage) -> APIRouter:
    """``GET``/``HEAD /collections/{collectionId}/items/{itemId}/assets/{assetKey}``.

    Rights come from the rights table (``getItemAsset``: the collection readable, or a valid
    signature for exactly this asset): the route only finds the item's stored key.
    """
    router = APIRouter(tags=["Assets"])

    async def download(
        request: Request,
        collection_id: Annotated[str, Path(alias="collectionId")],
        item_id: Annotated[str, Path(alias="itemId")],
        asset_key: Annotated[str, Path(alias="assetKey", description="The asset's name.")],
        source: Annotated[Storage, Depends(storage)],
    ) -> Response:
        """The bytes of one stored asset (ranges, ETag, conditional requests)."""
        repository: CatalogRepository = request.app.state.repository
        asset, key = await stored_asset(repository, collection_id, item_id, asset_key)
        public = (await request.app.state.accounts.readable(ANONYMOUS)).allows(collection_id)
        cache = "public, max-age=300" if public else "private, max-age=300"
        media_type = asset.get("type") or "application/octet-stream"
        missing = AssetNotFound(f"the file of asset {asset_key!r} is no longer stored")
        return await stored_response(
            request,
            Download(source, key, media_type, key.rsplit("/", 1)[-1], cache,
                     redirect=_redirects(request)),
            missing,
        )  # fmt: skip

    path = "/collections/{collectionId}/items/{itemId}/assets/{assetKey}"
    for method, operation_id in (("GET", "getItemAsset"), ("HEAD", "headItemAsset")):
        router.add_api_route(
            path,
            download,
            methods=[method],
            operation_id=operation_id,
            summary="Download an asset of an item",
            response_class=Response,
            responses=DOWNLOAD_RESPONSES,
        )
    return router
