"""FastAPI dependencies of the item tiler: the item from the path, layer options and limits.

Each one fills one of titiler's factory slots (``path_dependency``, ``layer_dependency``, ...);
none takes a file path or URL from the client.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy
from cachetools import TTLCache
from color_operations import parse_operations
from fastapi import Depends, Path, Query
from rio_tiler.colormap import cmap as default_cmap
from rio_tiler.types import ColorMapType
from starlette.requests import Request
from titiler.core.algorithm import algorithms as default_algorithms
from titiler.core.dependencies import (
    ColorMapParams as TitilerColorMapParams,
)
from titiler.core.dependencies import (
    DefaultDependency,
    HistogramParams,
    StatisticsParams,
    TileParams,
)

from catalog.errors import InvalidParameter, InvalidStac, NotFound
from catalog.stac.serializers import check_id, item_document
from catalog.storage.base import Storage
from catalog.web import base_url

from .crs import safe_crs
from .errors import InvalidColorMap, InvalidLayer, UnsafeCrs
from .readers.pool import DatasetPool
from .readers.shared import GridCache, ReaderResources

# Query parameters titiler parses with CRS.from_user_input (which opens files and URLs).
CRS_PARAMETERS = frozenset({"crs", "dst_crs", "coord_crs", "bbox-crs"})


class ItemParams:
    """Path dependency: the item at ``/collections/{collection_id}/items/{item_id}`` (a dict).

    Read through ``request.app.state.repository`` and kept ``ttl_s`` seconds in a bounded
    cache (a map view asks for dozens of tiles of one item at once), so an edit shows within
    that time. Ids that ``check_id`` refuses, and missing items, are ``catalog.NotFound``.
    """

    def __init__(self, ttl_s: float = 5.0, maxsize: int = 1024) -> None:
        self.cache: TTLCache[tuple[str, str], dict[str, Any]] | None = (
            TTLCache(maxsize=maxsize, ttl=ttl_s) if ttl_s > 0 else None
        )

    async def __call__(
        self,
        request: Request,
        collection_id: Annotated[str, Path(description="Collection id")],
        item_id: Annotated[str, Path(description="Item id")],
    ) -> dict[str, Any]:
        """The item document, from the cache or the repository."""
        try:
            check_id(collection_id, "collection id")
            check_id(item_id, "item id")
        except InvalidStac as exc:
            raise NotFound(
                f"item {item_id[:256]!r} does not exist in collection {collection_id[:256]!r}"
            ) from exc
        key = (collection_id, item_id)
        if self.cache is not None and (cached := self.cache.get(key)) is not None:
            return cached
        row = await request.app.state.repository.get_item(collection_id, item_id)
        item = item_document(row, base_url(request), assets=None)  # read: the stored hrefs
        if self.cache is not None:
            self.cache[key] = item
        return item


@dataclass
class ReaderOptions(DefaultDependency):
    """What ``ItemReader`` needs besides the item: the storage, the size limit, and the app's
    pool of open files and cache of grids (``ReaderResources``; None: the reader's own)."""

    storage: Storage
    max_image_size: int
    datasets: DatasetPool | None = None
    grid_cache: GridCache | None = None

    @classmethod
    def shared(cls, resources: ReaderResources, max_image_size: int) -> "ReaderOptions":
        """The options of readers sharing ``resources``."""
        return cls(
            storage=resources.storage,
            max_image_size=max_image_size,
            datasets=resources.datasets,
            grid_cache=resources.grids,
        )


def reader_params(resources: ReaderResources, max_image_size: int) -> Callable[[], ReaderOptions]:
    """The ``reader_dependency``: the app's reader options (nothing comes from the request)."""
    options = ReaderOptions.shared(resources, max_image_size)

    def dependency() -> ReaderOptions:
        return options

    return dependency


@dataclass
class AssetsQuery(DefaultDependency):
    """``assets`` for /info and /asset_statistics (default: every GeoTIFF asset)."""

    assets: Annotated[
        list[str] | None,
        Query(title="Asset names", description="GeoTIFF assets of the item (default: all)."),
    ] = None


@dataclass
class LayerQuery(DefaultDependency):
    """What to read and stack: assets, band selection, band math (query parameters only)."""

    assets: Annotated[
        list[str] | None,
        Query(
            title="Asset names",
            description="GeoTIFF assets to read and stack (default: `data`, or the assets "
            "with role `data`). Repeat the parameter for several.",
        ),
    ] = None
    expression: Annotated[
        str | None,
        Query(
            title="Band math expression",
            description="rio-tiler band math over the stacked bands, `;` between output "
            "bands. `b1`..`bn` are stack positions; eo:bands names and common names "
            "(`nir`, `red`...) may be used too.",
            examples=["(nir-red)/(nir+red)", "b1/b2;b2+b3"],
        ),
    ] = None
    indexes: Annotated[
        list[int] | None,
        Query(title="Band indexes", alias="bidx", description="Band indexes of each asset."),
    ] = None
    bands: Annotated[
        list[str] | None,
        Query(
            title="Band names",
            description="Bands of each asset by eo:bands name or common name (not with bidx).",
        ),
    ] = None
    asset_as_band: Annotated[
        bool | None,
        Query(description="Name each single-band asset's band by the asset name."),
    ] = None


@dataclass
class TileOptions(DefaultDependency):
    """Tile reading options: titiler's buffer and padding, and the ``@{scale}x`` factor."""

    buffer: float | None = None
    padding: int | None = None
    scale: int | None = None


def ScaledTileParams(  # noqa: N802 - FastAPI dependency named like a class (house style)
    request: Request, tile: Annotated[TileParams, Depends()]
) -> TileOptions:
    """The ``tile_dependency``: titiler's options plus the scale of ``@{scale}x`` routes."""
    raw = str(request.path_params.get("scale", ""))
    # the route validates the value (scale_path); this only reads it
    scale = int(raw) if raw.isdigit() and 0 < len(raw) < 3 else None
    return TileOptions(buffer=tile.buffer, padding=tile.padding, scale=scale)


def scale_path(max_scale: int) -> Callable[[int], int]:
    """A route dependency declaring and validating the ``{scale}`` of ``@{scale}x``."""

    def dependency(
        scale: Annotated[int, Path(ge=1, le=max_scale, description="Tile size multiplier")],
    ) -> int:
        return scale

    return dependency


# Values a colour formula is tried on: the 0-1 range rio-color works in, edges included.
_FORMULA_SAMPLE = numpy.linspace(0.0, 1.0, 12, dtype="float64").reshape(3, 2, 2)


def check_color_formula(formula: str | None) -> None:
    """Refuse a ``color_formula`` that cannot be parsed or fails on data (``gamma r -1``,
    ``sigmoidal rgb 1e308 1e308``): rio-color checks argument ranges only when it runs."""
    if not formula:
        return
    try:
        operations = parse_operations(formula)
        sample = _FORMULA_SAMPLE.copy()
        with numpy.errstate(all="ignore"):
            for operation in operations:
                sample = operation(sample)
    except (ValueError, TypeError, ArithmeticError, AttributeError, IndexError) as exc:
        raise InvalidParameter(f"invalid color_formula: {exc}") from None


async def SafeCrsParams(request: Request) -> None:  # noqa: N802
    """Router dependency: refuse CRS query values other than EPSG/OGC codes and URIs.

    titiler's CRS parameters go through GDAL's user-input parser, which reads files and
    fetches URLs (``dst_crs=http://127.0.0.1/...``); this runs before them.
    """
    for key, value in request.query_params.multi_items():
        if key.lower() in CRS_PARAMETERS or key.lower().endswith("_crs"):
            try:
                safe_crs(value)
            except UnsafeCrs as exc:
                raise UnsafeCrs(f"{key}: {exc.description}") from exc


def SafeColorMapParams(  # noqa: N802
    colormap_name: Annotated[
        # the names known at start-up: an enum in the OpenAPI document (mypy cannot see it)
        Literal[tuple(default_cmap.list())] | None,  # type: ignore[valid-type]
        Query(description="Colormap name"),
    ] = None,
    colormap: Annotated[str | None, Query(description="JSON encoded custom colormap")] = None,
) -> ColorMapType | None:
    """titiler's colormap parameters; a JSON value that is not a colormap is a 400."""
    try:
        found: ColorMapType | None = TitilerColorMapParams(
            colormap_name=colormap_name, colormap=colormap
        )
        return found
    except (ValueError, TypeError, KeyError, IndexError, json.JSONDecodeError) as exc:
        raise InvalidColorMap(f"colormap is not a valid colour map: {exc}") from exc


def AlgorithmParams(  # noqa: N802
    algorithm: Annotated[
        # the names known at start-up: an enum in the OpenAPI document (mypy cannot see it)
        Literal[tuple(default_algorithms.list())] | None,  # type: ignore[valid-type]
        Query(description="Post-processing algorithm (titiler's)"),
    ] = None,
    algorithm_params: Annotated[
        str | None, Query(description="The algorithm's parameters, a JSON object")
    ] = None,
) -> Callable[[Any], Any] | None:
    """The ``process_dependency``: titiler's algorithms, bad parameters or data a 400.

    An algorithm fails on data it was not made for (hillshade on three bands...); that is
    the request's choice, so it is ``tiler.InvalidLayer``.
    """
    make = default_algorithms.dependency
    try:
        algo = make(algorithm=algorithm, algorithm_params=algorithm_params)
    except (TypeError, ValueError) as exc:
        raise InvalidLayer(f"algorithm_params: {exc}") from exc
    if algo is None:
        return None

    def run(image: Any) -> Any:
        try:
            return algo(image)
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as exc:
            raise InvalidLayer(f"algorithm {algorithm!r} cannot process this layer: {exc}") from exc

    return run


def statistics_params(max_bins: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``stats_dependency`` and ``histogram_dependency`` that refuse what numpy would raise on."""

    def stats(params: Annotated[StatisticsParams, Depends()]) -> StatisticsParams:
        if any(not 0 <= p <= 100 for p in params.percentiles or ()):
            raise InvalidParameter("percentiles (p) must be between 0 and 100")
        return params

    def histogram(params: Annotated[HistogramParams, Depends()]) -> HistogramParams:
        bins: Any = params.bins
        if isinstance(bins, int) and not 0 < bins <= max_bins:
            raise InvalidParameter(f"histogram_bins must be between 1 and {max_bins}")
        if isinstance(bins, list) and (
            len(bins) > max_bins + 1 or any(b >= c for b, c in zip(bins, bins[1:], strict=False))
        ):
            raise InvalidParameter(
                f"histogram_bins edges must increase and be at most {max_bins + 1}"
            )
        span: Any = params.range
        if span and not span[0] < span[1]:
            raise InvalidParameter("histogram_range must be min,max with min < max")
        return params

    return stats, histogram
