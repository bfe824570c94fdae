"""The one rights table: every operation of the API and the rule that guards it.

``server/auth.py`` applies the rule of the route a request reached, before the route runs.
An operation missing here is refused to everyone but admins (``ADMIN``), and
``tests/server/test_policy.py`` fails for it: a new router is never public by accident.

What a rule checks before the route; what the route itself must still do:

- ``PUBLIC``: nothing. No data of any collection comes out.
- ``LISTED``: nothing; the route filters what it returns by the caller's readable
  collections (``request.state.readable``), in its SQL (search, collection lists, queryables,
  mosaics of saved searches).
- ``READ``: the collection in the path is readable, else 404 exactly like a missing one.
- ``ASSET``: as ``READ``, or the link carries a valid signature for exactly this asset
  (catalog/accounts/signing.py): a tampered, foreign or expired one is 403
  (``asset.InvalidSignature``, ``asset.SignatureExpired``). Stored asset downloads only.
- ``WRITE``: readable (else 404), and the caller has ``write`` on it (else 403).
- ``MANAGE``: readable (else 404), and the caller has ``admin`` on it (else 403).
- ``CREATE``: a signed-in caller whose token has the ``write`` scope (new collections,
  uploads, jobs, saved searches); the route checks ``write`` on the collection it writes into.
- ``SIGNED_IN``: any valid token (the caller's own account and tokens).
- ``OWNED``: a signed-in caller; the route answers 404 unless the row (upload set, tus upload,
  job, export, saved search) is the caller's or the caller is an admin.
- ``ADMIN``: an admin account with the ``admin`` scope.
"""

from enum import StrEnum


class Rule(StrEnum):
    """What an operation needs (see the module docstring)."""

    PUBLIC = "public"
    LISTED = "listed"
    READ = "read"
    ASSET = "asset"
    WRITE = "write"
    MANAGE = "manage"
    CREATE = "create"
    SIGNED_IN = "signed-in"
    OWNED = "owned"
    ADMIN = "admin"


def _each(rule: Rule, *operations: str) -> dict[str, Rule]:
    return dict.fromkeys(operations, rule)


_ITEM_MAPS = (
    "getItemInfo", "getItemInfoGeoJSON", "getItemAssets", "getItemAssetsStatistics",
    "getItemStatistics", "postItemStatisticsForGeoJSON", "getItemTileSetList", "getItemTileSet",
    "getItemTileWithScale", "getItemTileWithScaleAndFormat", "getItemTileWithFormat",
    "getItemTile", "getItemTileJSON", "getItemDataForPoint", "getItemPreviewWithSizeAndFormat",
    "getItemPreviewWithFormat", "getItemPreview", "getItemDataForBoundingBoxWithSizesAndFormat",
    "getItemDataForBoundingBoxWithFormat", "postItemDataForGeoJSONWithSizesAndFormat",
    "postItemDataForGeoJSONWithFormat", "postItemDataForGeoJSON", "getItemWMTS",
)  # fmt: skip
_COLLECTION_MAPS = (
    "getCollectionTileSetsList", "getCollectionVectorTileSet", "getCollectionMapTileSet",
    "getCollectionVectorTile", "getCollectionVectorTileByFormat",
    "getCollectionMosaicTileWithScaleAndFormat", "getCollectionMosaicTileWithScale",
    "getCollectionMosaicTileWithFormat", "getCollectionMosaicTile", "getCollectionMosaicTileJSON",
    "getCollectionMap", "getCollectionMosaicWMTS",
)  # fmt: skip
_SEARCH_MAPS = (
    "getSearchMosaicTileWithScaleAndFormat", "getSearchMosaicTileWithScale",
    "getSearchMosaicTileWithFormat", "getSearchMosaicTile", "getSearchMosaicTileJSON",
)  # fmt: skip

POLICY: dict[str, Rule] = {
    **_each(
        Rule.PUBLIC,
        "getLandingPage",
        "getConformanceDeclaration",
        "getTileMatrixSetsList",
        "getTileMatrixSet",
        "getProcesses",
        "getProcessDescription",
        "getPing",
        "getHealth",
        "tusOptions",
        "tusOptionsBare",  # tus at /uploads, without the slash (not in the document)
        "tusUploadOptions",
        "generateToken",
        "login",
        "getViewer",
        "getViewerConfig",
        "getViewerAsset",
    ),  # fmt: skip
    **_each(
        Rule.LISTED,
        "getItemSearch",
        "postItemSearch",
        "getCollections",
        "getQueryables",
        "getSortables",
        "getCollectionsSortables",
        *_SEARCH_MAPS,
    ),  # fmt: skip
    **_each(
        Rule.READ,
        "getFeature",
        "getFeatures",
        "describeCollection",
        "getCollectionQueryables",
        "getCollectionSortables",
        "getCollectionFacets",
        "getCollectionAggregate",
        "getCollectionStyles",
        "getCollectionStyle",
        "getCollectionCapabilities",
        *_ITEM_MAPS,
        *_COLLECTION_MAPS,
    ),  # fmt: skip
    **_each(Rule.ASSET, "getItemAsset", "headItemAsset", "getItemAssetFile", "headItemAssetFile"),
    **_each(
        Rule.WRITE,
        "putFeature",
        "patchFeature",
        "deleteFeature",
        "postFeature",
        "postBulkItems",
        "putCollection",
        "patchCollection",
    ),  # fmt: skip
    **_each(
        Rule.MANAGE,
        "deleteCollection",
        "getCollectionRights",
        "putCollectionRights",
        "putCollectionGrant",
        "deleteCollectionGrant",
        "putCollectionStyle",
        "deleteCollectionStyle",
    ),  # fmt: skip
    **_each(
        Rule.CREATE,
        "postCollection",
        "createUploadSet",
        "tusCreate",
        "tusCreateBare",
        "registerSearch",
        "execute",
    ),  # fmt: skip
    **_each(
        Rule.SIGNED_IN,
        "getMyAccount",
        "getMyTokens",
        "createMyToken",
        "revokeMyToken",
        "claimToken",
    ),  # fmt: skip
    **_each(
        Rule.OWNED,
        "getUploadSet",
        "deleteUploadSet",
        "completeUploadSet",
        "addUploadFile",
        "getUploadFile",
        "tusHead",
        "tusPatch",
        "tusTerminate",
        "getJobs",
        "getStatus",
        "dismiss",
        "getResult",
        "restartJob",
        "getJobLog",
        "getExportArchive",
        "headExportArchive",
        "getSearch",
    ),  # fmt: skip
    **_each(
        Rule.ADMIN,
        "getAccounts",
        "createAccount",
        "getAccount",
        "patchAccount",
        "getAccountTokens",
        "createAccountToken",
        "revokeAccountToken",
    ),  # fmt: skip
}


def rule_of(operation_id: str | None) -> Rule:
    """The rule of an operation; ``ADMIN`` for one the table does not name."""
    return POLICY.get(operation_id or "", Rule.ADMIN)
