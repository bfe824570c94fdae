"""Per-item (time slice) tiles of a datacube collection: 307 to the collection's tiles.

A datacube collection's items are its time slices (one per time, made at ingest), whose assets
point into the store, which the item tiler (COGs) cannot read. Their tile and TileJSON routes
send the client (MapLibre, GDAL, curl -L follow) to the same tile of the collection at that
slice's ``datetime`` with ``datetime_match=exact``, keeping the other query parameters, as a
vector collection's tiles are sent to its feature tiles (``tiles.VectorCollection``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import Path
from starlette.requests import Request

from ..errors import TilerError
from .params import CubeLookup


class CubeItemTilesElsewhere(TilerError):
    """A datacube item's tiles are the collection's at the item's time: 307 there."""

    code = "tiles.DatacubeItem"
    status = 307


def cube_item_redirect(lookup: CubeLookup) -> Callable[..., Awaitable[None]]:
    """A route dependency of the item tile and TileJSON routes (see the module docstring)."""

    async def dependency(
        request: Request,
        collection_id: Annotated[str, Path(description="Collection id")],
        item_id: Annotated[str, Path(description="Item id")],
    ) -> None:
        if await lookup.get(request, collection_id) is None:
            return
        row = await request.app.state.repository.get_item(collection_id, item_id)  # or 404
        when = (row.get("properties") or {}).get("datetime")
        path = request.url.path
        marker = f"/items/{quote(item_id, safe='')}/"
        head, _, tail = path.partition(marker)
        if not tail:
            head, _, tail = path.partition(f"/items/{item_id}/")
        if not tail.startswith("tiles/"):  # {tms}/tilejson.json
            tail = f"tiles/{tail}"
        query = [(k, v) for k, v in request.query_params.multi_items()
                 if k not in ("datetime", "datetime_match")]  # fmt: skip
        if when:
            query += [("datetime", str(when)), ("datetime_match", "exact")]
        moved = request.url.replace(path=f"{head}/{tail}", query=urlencode(query))
        error = CubeItemTilesElsewhere(
            f"item {item_id!r} is a time slice of datacube {collection_id!r}: its tiles are "
            f"the collection's at its datetime ({moved.path})"
        )
        error.headers = {"Location": str(moved)}
        raise error

    return dependency
