"""Mosaics: the items of a collection or of a saved search under a tile, and saved searches.

A mosaic is an item search drawn as one image: the items it matches that meet a tile, newest
first (or in the search's ``sortby``), at most ``max_items`` of them. A collection's mosaic is
the search ``{"collections": [id]}``; a saved search is any item-search body registered once
(``POST /searches``) and named by the hash of its canonical form. Both compile through the
search's own filter builders (catalog/stac/search.py), so a mosaic matches exactly what ``/search``
returns for the same body. Like catalog/maps/tiles.py, this module knows tiles only as
``TileBounds``: the tiler turns tile matrix sets into bounds.

Rights. A saved search belongs to the account that saved it (``searches.owner_id``); only
its owner (or an admin) may read it back. Its id is content-addressed: the hash of the
canonical body alone for the bootstrap admin (owner None: the ids saved before accounts stay
what they were), and of the owner's id with the body for an account, so two accounts saving
the same body get two searches, each their own, and neither learns of the other's. A search
names items, not rights: every item lookup of a mosaic (tiles, coverage) takes the
``Readable`` collections of whoever renders it and filters by them in its SQL, so a tile never
draws an item of a collection its caller cannot read, whatever the search names. The cache of
saved searches (``use``) holds bodies only, never items, so it serves every caller alike.
"""

import hashlib
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Float, Select, case, cast, func, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.elements import ColumnElement

from catalog.accounts.principal import Principal
from catalog.accounts.rights import EVERYTHING, Readable, readable_clause
from catalog.db.engine import connect
from catalog.db.models import Collection as CollectionRow
from catalog.db.models import Item, Search
from catalog.errors import NotFound, UnknownQueryable
from catalog.maps.tiles import WGS84, TileBounds
from catalog.stac import cql2
from catalog.stac.counts import Explain
from catalog.stac.queryables import Kind, typed_property
from catalog.stac.repository import CatalogRepository, Registry
from catalog.stac.requests import SavedSearchBody, check_filter_crs, post_search_params
from catalog.stac.search import SearchParams, SortKey, order_by, sort_keys, where_clauses

# Members of an item-search body that select or order items; the rest (limit, token, fields,
# filter-crs once checked) do not change a mosaic and are left out of the canonical body.
SEARCH_MEMBERS = (
    "collections", "ids", "bbox", "intersects", "datetime", "filter", "filter-lang", "query",
    "sortby",
)  # fmt: skip
# How many matching items the coverage (bounds, resolutions) of a search is measured on.
COVERAGE_SAMPLE = 10_000
# How many of a collection's newest items are looked at for an asset the tiler reads.
RASTER_SAMPLE = 100


class SearchBody(SavedSearchBody):
    """A search to save: the STAC item-search POST body (``limit``, ``token``, ``fields`` are
    accepted and ignored)."""


class SearchNotFound(NotFound):
    """A saved search id that is not registered (or not the caller's)."""

    code = "search.NotFound"


def not_registered(search_id: str) -> SearchNotFound:
    """The 404 of a missing saved search, and of one the caller may not see: the same words."""
    return SearchNotFound(f"search {search_id!r} is not registered")


@dataclass(frozen=True)
class SavedSearch:
    """A registered search: its id, canonical body and the search it compiles to."""

    id: str
    body: dict[str, Any]
    params: SearchParams
    created: datetime | None = None
    owner_id: UUID | None = None


@dataclass(frozen=True)
class Coverage:
    """Where a mosaic has data and how fine it is, measured on its items.

    ``bounds`` is (west, south, east, north) in EPSG:4326; ``finest_gsd`` the smallest item
    ``gsd`` (metres); ``largest_size`` the ground length (metres) of the longest item side,
    ``gsd`` times the larger of ``proj:shape``. Each is None when no item says.
    """

    bounds: tuple[float, float, float, float] | None
    finest_gsd: float | None
    largest_size: float | None
    items: int


# -- canonical bodies --------------------------------------------------------------------------
def canonical_body(body: SearchBody) -> dict[str, Any]:
    """The search ``body`` in one canonical form: equal searches get equal bodies.

    Empty members are dropped, ``collections`` and ``ids`` sorted without repeats, and a CQL2
    filter (text or JSON) rewritten as canonical CQL2-JSON.
    """
    check_filter_crs(body.filter_crs)
    dumped = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    canonical: dict[str, Any] = {}
    for name in SEARCH_MEMBERS:
        value = dumped.get(name)
        if value in (None, "", [], {}):
            continue
        if name in ("collections", "ids"):
            value = sorted(set(value))
        canonical[name] = value
    if "filter" in canonical:
        parsed = cql2.parse(canonical["filter"], canonical.get("filter-lang"))
        if parsed is True:
            del canonical["filter"]
            canonical.pop("filter-lang", None)
        elif isinstance(parsed, dict):
            canonical["filter"], canonical["filter-lang"] = parsed, "cql2-json"
    else:
        canonical.pop("filter-lang", None)
    return canonical


def search_id(canonical: Mapping[str, Any], owner_id: UUID | None = None) -> str:
    """The id of a canonical search body saved by ``owner_id``: 32 hex digits of a SHA-256.

    Without an owner (the bootstrap admin) the hash of the body alone, as before accounts;
    with one, of the owner and the body, so each account's searches are its own rows.
    """
    named: Mapping[str, Any] = canonical
    if owner_id is not None:
        named = {"owner": str(owner_id), "search": canonical}
    return hashlib.sha256(orjson.dumps(named, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def search_params(canonical: Mapping[str, Any]) -> SearchParams:
    """The search a canonical body stands for (read as ``POST /search`` reads a body)."""
    return post_search_params(SearchBody.model_validate(canonical), canonical, limit=1)


def collection_params(collection_id: str) -> SearchParams:
    """The search whose mosaic is a collection's: all its items."""
    return SearchParams(collections=[collection_id])


# -- SQL ---------------------------------------------------------------------------------------
def tile_area(bounds: TileBounds) -> ColumnElement[Any]:
    """The tile as an EPSG:4326 polygon, to meet the indexed item footprints."""
    if bounds.zxy is not None:
        envelope = func.ST_TileEnvelope(*bounds.zxy)
    else:
        envelope = func.ST_MakeEnvelope(
            bounds.xmin, bounds.ymin, bounds.xmax, bounds.ymax, bounds.srid
        )
    if bounds.srid == WGS84:
        return envelope
    if bounds.zxy is None:
        # A straight tile edge may be a curve in lon/lat (not in Web Mercator): densify first.
        envelope = func.ST_Segmentize(envelope, max(bounds.width, bounds.height) / 16)
    return func.ST_Transform(envelope, WGS84)


def _number_at(path: tuple[str, int]) -> ColumnElement[Any]:
    value = Item.properties.op("#>")(literal_column(f"'{{{path[0]},{path[1]}}}'"))
    return case((func.jsonb_typeof(value) == "number", cast(value, Float(precision=53))))


def _row_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the item reader needs of an item (its footprint comes from ``bbox`` and proj:*)."""
    item: dict[str, Any] = {
        "type": "Feature",
        "id": row["id"],
        "collection": row["collection_id"],
        "properties": row["properties"],
        "assets": row["assets"] or {},
    }
    if row["bbox"] is not None:
        item["bbox"] = row["bbox"]
    return item


def _readable(readable: Readable) -> list[ColumnElement[bool]]:
    """The clause keeping items of ``readable`` collections (none when every one is)."""
    clause = readable.column_filter(Item.collection_id)
    return [] if clause is None else [clause]


class MosaicRepository:
    """Saved searches and the item lookups of mosaic tiles, on the catalogue's engine.

    ``max_items`` caps the items of one tile; ``search_ttl`` is how long a saved search read
    for tiles is reused (a map view asks for many tiles of one search at once).
    """

    def __init__(
        self,
        catalog: CatalogRepository,
        max_items: int = 50,
        search_ttl: float = 10.0,
        cache_size: int = 1024,
    ) -> None:
        self.catalog = catalog
        self.max_items = max_items
        self.search_ttl = search_ttl
        self.cache_size = cache_size
        self._searches: dict[str, tuple[float, SavedSearch]] = {}

    # -- saved searches --------------------------------------------------------------------
    async def register(
        self, body: SearchBody, owner_id: UUID | None = None
    ) -> tuple[SavedSearch, bool]:
        """Save a search of ``owner_id`` (validated by compiling it); whether it was new."""
        canonical = canonical_body(body)
        params = search_params(canonical)
        await self._compile(params)
        sid = search_id(canonical, owner_id)
        async with connect(self.catalog.engine, write=True) as conn:
            created = await conn.scalar(
                insert(Search)
                .values(id=sid, body=canonical, owner_id=owner_id)
                .on_conflict_do_nothing(index_elements=[Search.id])
                .returning(Search.created)
            )
            new = created is not None
            if not new:
                created = await conn.scalar(select(Search.created).where(Search.id == sid))
        return SavedSearch(sid, canonical, params, created, owner_id), new

    async def get(self, search_id: str) -> SavedSearch:
        """A saved search, read now; SearchNotFound."""
        async with connect(self.catalog.engine) as conn:
            row = (
                await conn.execute(
                    select(Search.body, Search.created, Search.owner_id).where(
                        Search.id == search_id
                    )
                )
            ).first()
        if row is None:
            raise not_registered(search_id)
        return SavedSearch(search_id, row.body, search_params(row.body), row.created, row.owner_id)

    async def use(self, search_id: str) -> SavedSearch:
        """A saved search for rendering: cached for ``search_ttl``, marking it used."""
        now = time.monotonic()
        cached = self._searches.get(search_id)
        if cached is not None and now - cached[0] < self.search_ttl:
            return cached[1]
        async with connect(self.catalog.engine, write=True) as conn:
            row = (
                await conn.execute(
                    update(Search)
                    .where(Search.id == search_id)
                    .values(last_used=func.now())
                    .returning(Search.body, Search.created, Search.owner_id)
                )
            ).first()
        if row is None:
            self._searches.pop(search_id, None)
            raise not_registered(search_id)
        saved = SavedSearch(search_id, row.body, search_params(row.body), row.created, row.owner_id)
        if len(self._searches) >= self.cache_size:
            self._searches.clear()
        self._searches[search_id] = (now, saved)
        return saved

    # -- tiles -----------------------------------------------------------------------------
    async def _compile(
        self, params: SearchParams
    ) -> tuple[list[ColumnElement[bool]], list[SortKey]]:
        registry: Registry = await self.catalog.registry(params.collections)
        try:
            return where_clauses(params, registry), sort_keys(params.sortby, registry)
        except UnknownQueryable:
            # The registry may be a few seconds stale: look again before refusing the name.
            registry = await self.catalog.registry(params.collections, fresh=True)
            return where_clauses(params, registry), sort_keys(params.sortby, registry)

    async def _tile_query(
        self, params: SearchParams, bounds: TileBounds, limit: int | None, readable: Readable
    ) -> Any:
        clauses, keys = await self._compile(params)
        return (
            select(
                Item.collection_id,
                Item.id,
                Item.properties,
                Item.content["bbox"].label("bbox"),
                Item.content["assets"].label("assets"),
            )
            .where(
                *clauses, *_readable(readable), func.ST_Intersects(Item.geometry, tile_area(bounds))
            )
            .order_by(*order_by(keys))
            .limit(limit or self.max_items)
        )

    async def tile_items(
        self,
        params: SearchParams,
        bounds: TileBounds,
        limit: int | None = None,
        readable: Readable = EVERYTHING,
    ) -> list[dict[str, Any]]:
        """The items of ``params`` in ``readable`` collections meeting the tile, in mosaic
        order, at most ``max_items``."""
        query = await self._tile_query(params, bounds, limit, readable)
        async with connect(self.catalog.engine) as conn:
            rows = (await conn.execute(query)).all()
        return [_row_item(r._asdict()) for r in rows]

    async def explain_tile_items(
        self, params: SearchParams, bounds: TileBounds, readable: Readable = EVERYTHING
    ) -> Any:
        """The planner's plan (EXPLAIN FORMAT JSON) of :meth:`tile_items`."""
        query = await self._tile_query(params, bounds, None, readable)
        async with connect(self.catalog.engine) as conn:
            plan = await conn.scalar(Explain(query))
        return orjson.loads(plan) if isinstance(plan, str | bytes) else plan

    # -- coverage --------------------------------------------------------------------------
    async def coverage(self, params: SearchParams, readable: Readable = EVERYTHING) -> Coverage:
        """Bounds and resolutions of (up to ``COVERAGE_SAMPLE`` of) the items of ``params`` in
        ``readable`` collections."""
        clauses, _ = await self._compile(params)
        clauses = [*clauses, *_readable(readable)]
        gsd = typed_property("gsd", Kind.NUMBER)
        longest = func.greatest(_number_at(("proj:shape", 0)), _number_at(("proj:shape", 1)))
        sample = (
            select(Item.geometry.label("geometry"), gsd.label("gsd"), longest.label("longest"))
            .where(*clauses)
            .limit(COVERAGE_SAMPLE)
            .subquery("sample")
        )
        extent = func.ST_Extent(sample.c.geometry)
        query = select(
            func.ST_XMin(extent).label("west"),
            func.ST_YMin(extent).label("south"),
            func.ST_XMax(extent).label("east"),
            func.ST_YMax(extent).label("north"),
            func.min(sample.c.gsd).label("finest"),
            func.max(sample.c.gsd * sample.c.longest).label("largest"),
            func.count().label("items"),
        )
        async with connect(self.catalog.engine) as conn:
            row = (await conn.execute(query)).one()
        bounds = None
        if row.west is not None:
            bounds = (float(row.west), float(row.south), float(row.east), float(row.north))
        return Coverage(
            bounds,
            float(row.finest) if row.finest is not None else None,
            float(row.largest) if row.largest is not None else None,
            int(row.items),
        )

    async def collection_coverage(self, collection_id: str) -> Coverage:
        """The coverage of a collection's mosaic, bounded by the collection's extent (its
        items', kept by the database; the declared one while it has none).

        NotFound if there is no such collection.
        """
        collection = await self.catalog.get_collection(collection_id)
        found = await self.coverage(collection_params(collection_id))
        extent = overall_extent(collection["content"])
        return Coverage(extent or found.bounds, found.finest_gsd, found.largest_size, found.items)

    async def collections_with_rasters(
        self, ids: Sequence[str], media_types: Collection[str]
    ) -> set[str]:
        """Which of ``ids`` have an asset of ``media_types`` (bare, lower case) among their
        ``RASTER_SAMPLE`` newest items: a bounded look, one indexed query per collection."""
        found = set()
        async with connect(self.catalog.engine) as conn:
            for collection_id in dict.fromkeys(ids):
                newest = (
                    select(Item.content["assets"].label("assets"))
                    .where(Item.collection_id == collection_id)
                    .order_by(Item.datetime.desc())
                    .limit(RASTER_SAMPLE)
                    .subquery("newest")
                )
                asset = func.jsonb_each(newest.c.assets).table_valued("value").lateral("asset")
                media = func.lower(
                    func.trim(func.split_part(asset.c.value.op("->>")("type"), ";", 1))
                )
                query: Select[Any] = (
                    select(literal_column("1"))
                    .select_from(newest.join(asset, true()))
                    .where(media.in_(sorted(media_types)))
                    .limit(1)
                )
                if await conn.scalar(query) is not None:
                    found.add(collection_id)
        return found

    async def readable_ids(self, principal: Principal) -> list[str]:
        """The ids of the collections ``principal`` reads now, listed even when that is every
        one (a job rendering later for a principal must not reach collections made since)."""
        ids = CollectionRow.id
        query = select(ids).where(readable_clause(principal)).order_by(ids)
        async with connect(self.catalog.engine) as conn:
            return list((await conn.scalars(query)).all())

    async def collection_exists(self, collection_id: str) -> None:
        """NotFound unless the collection exists."""
        async with connect(self.catalog.engine) as conn:
            await self.catalog.collection_exists(conn, collection_id)


def overall_extent(content: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """A collection's overall spatial extent (west, south, east, north), if it has one."""
    try:
        box = content["extent"]["spatial"]["bbox"][0]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(box, list) or len(box) not in (4, 6):
        return None
    if not all(isinstance(v, int | float) for v in box):
        return None
    half = len(box) // 2
    return float(box[0]), float(box[1]), float(box[half]), float(box[half + 1])
