"""The STAC API parts: core routes, item search, items, collection search and writes.

stac-fastapi registers the routes and lists the conformance classes of its extensions; each
part says which extensions, the request models they make, and operation ids for the routes
stac-fastapi leaves unnamed (the STAC API and OGC API - Features OpenAPI names).
"""

from typing import Any, cast

import attr
from stac_fastapi.api.models import (
    create_get_request_model,
    create_post_request_model,
    create_request_model,
)
from stac_fastapi.extensions import (
    CollectionSearchExtension,
    CollectionSearchFilterExtension,
    FieldsExtension,
    ItemCollectionFilterExtension,
    OffsetPaginationExtension,
    SearchFilterExtension,
    TokenPaginationExtension,
)
from stac_fastapi.extensions.collection_search.collection_search import (
    CollectionSearchConformanceClasses,
)
from stac_fastapi.extensions.fields import FieldsConformanceClasses
from stac_fastapi.extensions.filter.filter import FilterConformanceClasses
from stac_fastapi.extensions.free_text import FreeTextConformanceClasses, FreeTextExtension
from stac_fastapi.extensions.query import QueryConformanceClasses, QueryExtension
from stac_fastapi.extensions.sort import (
    CollectionSearchSortExtension,
    ItemCollectionSortExtension,
    SearchSortExtension,
)
from stac_fastapi.extensions.sort.sort import SortConformanceClasses
from stac_fastapi.types.config import ApiSettings as StacApiSettings
from stac_fastapi.types.search import APIRequest

from catalog.settings import AccountSettings, CatalogSettings, LimitSettings
from catalog.stac.assets import assets_router
from catalog.stac.client import BulkTransactionsClient, TransactionsClient
from catalog.stac.requests import (
    CollectionsGetRequest,
    FilterPostRequest,
    ItemSearchPostRequest,
    ItemsGetRequest,
    SearchGetRequest,
)
from catalog.stac.schema_clients import FiltersClient, SortablesClient
from ogc.features import FeaturesExtension

from .parts import ApiPart, routers_part
from .settings import ApiSettings
from .transactions import PathBulkTransactionExtension, RawBodyTransactionExtension

# Every CQL2 class our compiler implements (catalog/stac/cql2.py), advertised and tested.
FILTER_CLASSES: list[str] = [
    FilterConformanceClasses.FILTER,
    FilterConformanceClasses.SEARCH,
    FilterConformanceClasses.ITEMS,
    FilterConformanceClasses.CQL2_TEXT,
    FilterConformanceClasses.CQL2_JSON,
    FilterConformanceClasses.BASIC_CQL2,
    FilterConformanceClasses.ADVANCED_COMPARISON_OPERATORS,
    FilterConformanceClasses.BASIC_SPATIAL_FUNCTIONS,
    FilterConformanceClasses.BASIC_SPATIAL_FUNCTIONS_PLUS,
    FilterConformanceClasses.SPATIAL_FUNCTIONS,
    FilterConformanceClasses.TEMPORAL_FUNCTIONS,
    FilterConformanceClasses.ARRAY_FUNCTIONS,
    FilterConformanceClasses.PROPERTY_PROPERTY,
    FilterConformanceClasses.CASE_INSENSITIVE_COMPARISON,
    FilterConformanceClasses.ACCENT_INSENSITIVE_COMPARISON,
]

# Sort v1.1.0 (what stac-fastapi advertises) keeps v1.0.0's sortby and adds sortables; clients
# that only know v1.0.0 (pystac-client 0.9 matches "v1.0.*") look for the v1.0.0 URIs.
SEARCH_SORT_CLASSES = [
    SortConformanceClasses.ITEM_SEARCH_SORT,
    SortConformanceClasses.ITEM_SEARCH_SORTABLES,
    "https://api.stacspec.org/v1.0.0/item-search#sort",
]
ITEMS_SORT_CLASSES = [
    SortConformanceClasses.FEATURES_SORT,
    SortConformanceClasses.FEATURES_SORTABLES,
    "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
]
COLLECTION = "/collections/{collection_id}"
ITEM = COLLECTION + "/items/{item_id}"


@attr.s
class _SearchFilterExtension(SearchFilterExtension):
    """Search filter whose POST body also takes CQL2-text."""

    POST = FilterPostRequest


def stac_api_settings(api: ApiSettings) -> StacApiSettings:
    """stac-fastapi's settings, from ours (response models off: the clients return JSON)."""
    return StacApiSettings(
        stac_fastapi_title=api.title,
        stac_fastapi_description=api.description,
        stac_fastapi_landing_id="terracat",
        stac_fastapi_version="0.1.0",
        enable_response_models=False,
    )


def core_part() -> ApiPart:
    """Names of the routes StacApi itself registers (landing page, conformance, one item...)."""
    return ApiPart(
        name="stac-core",
        operation_ids={
            "GET /": "getLandingPage",
            "GET /conformance": "getConformanceDeclaration",
            f"GET {COLLECTION}": "describeCollection",
            f"GET {ITEM}": "getFeature",
            "GET /_mgmt/ping": "getPing",
            "GET /_mgmt/health": "getHealth",
        },
    )


def search_part() -> ApiPart:
    """Item search (``/search``): query, sort, fields, CQL2 filter and token paging."""
    search: list[Any] = [
        QueryExtension(),
        SearchSortExtension(client=SortablesClient(), conformance_classes=SEARCH_SORT_CLASSES),
        FieldsExtension(),
        _SearchFilterExtension(client=FiltersClient(), conformance_classes=FILTER_CLASSES),
        TokenPaginationExtension(),
    ]
    return ApiPart(
        name="stac-search",
        extensions=search,
        request_models={
            "search_get_request_model": create_get_request_model(
                search, base_model=SearchGetRequest
            ),
            "search_post_request_model": create_post_request_model(
                search, base_model=ItemSearchPostRequest
            ),
        },
        operation_ids={
            "GET /search": "getItemSearch",
            "POST /search": "postItemSearch",
            "GET /queryables": "getQueryables",
            "GET /sortables": "getSortables",
        },
    )


def items_part() -> ApiPart:
    """A collection's items (``/collections/{id}/items``) with the same search extensions."""
    items: list[Any] = [
        QueryExtension(conformance_classes=[QueryConformanceClasses.ITEMS]),
        ItemCollectionSortExtension(
            client=SortablesClient(), conformance_classes=ITEMS_SORT_CLASSES
        ),
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.ITEMS]),
        ItemCollectionFilterExtension(
            client=FiltersClient(),
            conformance_classes=[FilterConformanceClasses.ITEMS, FilterConformanceClasses.FILTER],
        ),
        TokenPaginationExtension(),
        # the parameters vector collections' features take too (ogc/features.py)
        FeaturesExtension(),
    ]
    model = create_request_model(
        "ItemCollectionUri", base_model=ItemsGetRequest, extensions=items, request_type="GET"
    )
    return ApiPart(
        name="stac-items",
        extensions=items,
        request_models={"items_get_request_model": model},
        operation_ids={
            f"GET {COLLECTION}/items": "getFeatures",
            f"GET {COLLECTION}/queryables": "getCollectionQueryables",
            f"GET {COLLECTION}/sortables": "getCollectionSortables",
        },
    )


def assets_part() -> ApiPart:
    """Downloads of stored assets (``.../items/{itemId}/assets/{assetKey}``): GET and HEAD."""
    return routers_part("assets", lambda app: [assets_router()])


def collections_part() -> ApiPart:
    """Collection search on ``/collections``: free text, sort, fields, filter, offset paging."""
    # registered too (the others only shape the request model): it serves /collections-sortables
    sort = CollectionSearchSortExtension(client=SortablesClient())
    parts: list[Any] = [
        FreeTextExtension(conformance_classes=[FreeTextConformanceClasses.COLLECTIONS]),
        sort,
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.COLLECTIONS]),
        CollectionSearchFilterExtension(client=FiltersClient()),
        OffsetPaginationExtension(),
    ]
    collection_search = CollectionSearchExtension(
        # a GET model is an APIRequest dataclass; the factory's return type also allows POST's
        GET=cast(
            type[APIRequest],
            create_request_model(
                "CollectionsGetRequest",
                base_model=CollectionsGetRequest,
                extensions=parts,
                request_type="GET",
            ),
        ),
        conformance_classes=[
            CollectionSearchConformanceClasses.COLLECTIONSEARCH.value,
            CollectionSearchConformanceClasses.BASIS.value,
            *(c for ext in parts for c in ext.conformance_classes),
        ],
    )
    return ApiPart(
        name="stac-collections",
        extensions=[collection_search, sort],
        request_models={"collections_get_request_model": collection_search.GET},
        operation_ids={
            "GET /collections": "getCollections",
            "GET /collections-sortables": "getCollectionsSortables",
        },
    )


def writes_part(
    catalog: CatalogSettings,
    stac_settings: StacApiSettings,
    limits: LimitSettings,
    accounts: AccountSettings,
) -> ApiPart:
    """Transactions and bulk item loads (their rights: server/policy.py); a new collection is
    its creator's, with the configured default visibility."""
    operation_ids = {
        "POST /collections": "postCollection",
        f"PUT {COLLECTION}": "putCollection",
        f"PATCH {COLLECTION}": "patchCollection",
        f"DELETE {COLLECTION}": "deleteCollection",
        f"POST {COLLECTION}/items": "postFeature",
        f"PUT {ITEM}": "putFeature",
        f"PATCH {ITEM}": "patchFeature",
        f"DELETE {ITEM}": "deleteFeature",
        f"POST {COLLECTION}/bulk_items": "postBulkItems",
    }
    return ApiPart(
        name="stac-writes",
        extensions=[
            RawBodyTransactionExtension(
                client=TransactionsClient(
                    settings=catalog, default_visibility=accounts.default_visibility
                ),
                settings=stac_settings,
            ),
            PathBulkTransactionExtension(client=BulkTransactionsClient(settings=catalog)),
        ],
        operation_ids=operation_ids,
        body_limits={
            route: limits.max_write_body_bytes
            for route in operation_ids
            if not route.startswith("DELETE")
        },
    )
