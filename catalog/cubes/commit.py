"""The commit of a datacube's ingest, in the job's success transaction (the worker's process,
which never imports xarray or zarr for it): the items, the collection's fields, the row.

The child's result travels as JSON (``cube_json``); the commit replaces the collection's earlier
cube items by one item per time step, adds the datacube extension fields to the collection and
writes the ``datacubes`` row, so that a cube appears whole or not at all.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.cubes.errors import NotACubeCollection
from catalog.cubes.model import Cube, CubeLayer, CubeOverview, put_cube
from catalog.cubes.stac import with_cube
from catalog.storage.base import stored_key


def cube_json(cube: Cube) -> dict[str, Any]:
    """``cube`` as JSON (the child's result travels as JSON)."""
    return {
        **{k: getattr(cube, k) for k in ("collection_id", "href", "format", "crs", "width",
                                         "height", "x_dim", "y_dim", "time_dim", "band_dim")},
        "transform": list(cube.transform),
        "layers": [vars(layer) for layer in cube.layers],
        "times": [t.isoformat() for t in cube.times],
        "overviews": [vars(o) for o in cube.overviews],
    }  # fmt: skip


def cube_from_json(doc: dict[str, Any]) -> Cube:
    """The ``Cube`` of ``cube_json``."""
    plain = {k: v for k, v in doc.items() if k not in ("layers", "times", "overviews",
                                                       "transform")}  # fmt: skip
    return Cube(
        **plain,
        transform=tuple(doc["transform"]),
        layers=tuple(CubeLayer(**layer) for layer in doc["layers"]),
        times=tuple(datetime.fromisoformat(t) for t in doc["times"]),
        overviews=tuple(CubeOverview(**o) for o in doc["overviews"]),
    )


async def commit_cube(
    conn: AsyncConnection,
    catalog: Any,
    result: dict[str, Any],
    validate_extensions: bool,
) -> dict[str, Any]:
    """In the job's success transaction: the items, the collection's fields, the row.
    Returns the job's outputs (with the prefix of a replaced store, removed after commit)."""
    from catalog.stac.serializers import item_row

    cube = cube_from_json(result["cube"])
    collection_id = cube.collection_id
    previous, old_prefixes = await _check_collection(conn, collection_id)
    if previous is not None:
        await conn.execute(
            text("DELETE FROM items WHERE collection_id = :c "
                 "AND content -> 'assets' -> 'data' ->> 'href' = :href"),
            {"c": collection_id, "href": previous},
        )  # fmt: skip
    for item in result["items"]:
        await catalog.insert_item(conn, collection_id, item_row(item, collection_id,
                                                                 validate_extensions))  # fmt: skip
    content = await conn.scalar(
        text("SELECT content FROM collections WHERE id = :c FOR UPDATE"), {"c": collection_id}
    )
    await conn.execute(
        text("UPDATE collections SET content = CAST(:content AS jsonb), updated = now() "
             "WHERE id = :c"),
        {"c": collection_id, "content": _json(with_cube(dict(content), cube))},
    )  # fmt: skip
    await put_cube(conn, cube)
    new_prefix = (stored_key(cube.href) or "").rsplit("/", 1)[0]
    replaced = sorted(p for p in old_prefixes if p != new_prefix)
    outputs: dict[str, Any] = {
        "collections": [{"id": collection_id, "items": len(result["items"])}],
        "cube": {"collection": collection_id, "items": len(result["items"]),
                 "layers": [layer.name for layer in cube.layers],
                 "overviews": [o.factor for o in cube.overviews]},
    }  # fmt: skip
    if replaced:
        outputs["cube"]["replaced"] = replaced
    return outputs


async def _check_collection(
    conn: AsyncConnection, collection_id: str
) -> tuple[str | None, set[str]]:
    """The href of the collection's cube so far (None: none yet) and the prefixes of the
    files stored for it; NotACubeCollection when it holds vector features, or items without
    being a datacube collection."""
    vector = await conn.scalar(
        text("SELECT 1 FROM vector_layers WHERE collection_id = :c"), {"c": collection_id}
    )
    if vector is not None:
        raise NotACubeCollection(f"{collection_id!r} holds vector features, not a datacube")
    row = (
        await conn.execute(
            text("SELECT href, overviews FROM datacubes WHERE collection_id = :c FOR UPDATE"),
            {"c": collection_id},
        )
    ).first()
    if row is None:
        items = await conn.scalar(
            text("SELECT 1 FROM items WHERE collection_id = :c LIMIT 1"), {"c": collection_id}
        )
        if items is not None:
            raise NotACubeCollection(
                f"{collection_id!r} holds items already: a datacube goes into a collection of "
                "its own"
            )
        return None, set()
    hrefs = [row.href, *(o.get("href") for o in row.overviews)]
    keys = [k for k in map(stored_key, hrefs) if k is not None]
    return row.href, {k.rsplit("/", 1)[0] for k in keys}


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()
