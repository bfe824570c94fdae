"""The ``pictures_dispatch`` process: a complete upload set's pictures become sequences.

geopic-tag-reader's ``dispatch_pictures`` (Panoramax's own) sorts the set's pictures
(``sort_method``), cuts them where two neighbours are more than ``split_time`` seconds or
``split_distance`` metres apart, and, inside each sequence, drops a picture taken within
``duplicate_distance`` metres of a kept one and facing within ``duplicate_rotation`` degrees of
it. Kept pictures are published as items of the set's collection with their sequence id, rank
and neighbours; dropped ones are rejected as ``picture.CaptureDuplicate`` (still counted as
received files). Every item, file state and sequence line is written in the job's success
transaction.
"""

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.accounts.principal import Principal
from catalog.accounts.repository import AccountRepository
from catalog.errors import InvalidParameter, NotFound
from catalog.jobs.queue import (
    InputDescription,
    JobContext,
    JobRecord,
    OutputDescription,
    Process,
    ProcessDescription,
)
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import item_row
from catalog.storage.base import Storage, item_prefix
from catalog.uploads.repository import UploadRepository, parse_uuid

from .errors import CaptureDuplicate
from .repository import DISPATCH, PictureRepository

# Panoramax's defaults where the set says nothing.
DEFAULTS = {"split_distance": 100.0, "split_time": 60.0, "duplicate_distance": 1.0,
            "duplicate_rotation": 60.0, "sort_method": "time-asc"}  # fmt: skip
OPTIONS = tuple(DEFAULTS)


def options_of(upload_set: dict[str, Any]) -> dict[str, Any]:
    """The set's dispatch options, defaults filled in."""
    return {k: upload_set.get(k) if upload_set.get(k) is not None else v
            for k, v in DEFAULTS.items()}  # fmt: skip


def _geopic(entry: dict[str, Any]) -> Any:
    from geopic_tag_reader.reader import GeoPicTags, TimeBySource
    from geopic_tag_reader.sequence import Picture

    meta = entry["meta"]

    def when(value: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if value else None

    tags = GeoPicTags(
        lat=meta["lat"], lon=meta["lon"], ts=dt.datetime.fromisoformat(meta["datetime"]),
        heading=meta["heading"], type=meta["type"], make=meta["make"], model=meta["model"],
        focal_length=meta["focal_length"], crop=None,
        ts_by_source=TimeBySource(gps=when(meta["gps_datetime"]),
                                  camera=when(meta["camera_datetime"])),
    )  # fmt: skip
    return Picture(entry["filename"], tags)


def cut(entries: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
    """Sequences (lists of file ids in order) and duplicates of ``entries`` (file_id,
    filename, meta), by geopic-tag-reader's dispatch."""
    from geopic_tag_reader.sequence import MergeParams, SortMethod, SplitParams, dispatch_pictures

    pictures = [_geopic(e) for e in entries]
    file_id = {id(p): e["file_id"] for p, e in zip(pictures, entries, strict=True)}
    report = dispatch_pictures(
        list(pictures),
        SortMethod(options["sort_method"]),
        MergeParams(maxDistance=options["duplicate_distance"],
                    maxRotationAngle=int(options["duplicate_rotation"])),
        SplitParams(maxDistance=options["split_distance"], maxTime=options["split_time"]),
    )  # fmt: skip
    return {
        "sequences": [[file_id[id(p)] for p in s.pictures] for s in report.sequences if s.pictures],
        "duplicates": [{"file_id": file_id[id(d.picture)], "of": file_id[id(d.duplicate_of)],
                        "distance": d.distance, "angle": d.angle}
                       for d in report.duplicate_pictures],
    }  # fmt: skip


class DispatchProcess(Process):
    """Cut a complete upload set's pictures into sequences and publish them."""

    description = ProcessDescription(
        id=DISPATCH,
        title="Dispatch the pictures of an upload set",
        description="Sorts the pictures of a complete upload set, cuts them into sequences, "
        "drops capture duplicates and publishes one item per kept picture, with its sequence "
        "id, rank and neighbours. Queued by the server when the set's last picture is read; "
        "may be executed again by the set's owner.",
        keywords=["pictures", "sequences", "Panoramax"],
        inputs={
            "upload_set": InputDescription(
                title="Upload set",
                description="Id of the upload set (see GET /upload_sets/{id}).",
                schema={"type": "string", "format": "uuid"},
            )
        },
        outputs={
            "sequences": OutputDescription(
                title="Sequences",
                description="The sequences made: id and item ids in order.",
                schema={"type": "array", "items": {"type": "object"}},
            )
        },
    )
    child_modules = ("geopic_tag_reader.sequence",)

    def __init__(
        self,
        uploads: UploadRepository,
        pictures: PictureRepository,
        catalog: CatalogRepository,
        storage: Storage,
        validate_extensions: bool = True,
    ) -> None:
        self.uploads = uploads
        self.pictures = pictures
        self.catalog = catalog
        self.storage = storage
        self.validate_extensions = validate_extensions

    def check_inputs(self, inputs: Any) -> dict[str, Any]:
        """One input: the id of an upload set."""
        checked = super().check_inputs(inputs)
        if not isinstance(checked["upload_set"], str):
            raise InvalidParameter("input 'upload_set' must be a string (an upload set id)")
        parse_uuid(checked["upload_set"], "upload set")
        return checked

    async def admit(
        self, inputs: dict[str, Any], caller: Principal, accounts: AccountRepository
    ) -> dict[str, Any]:
        """The set must be the caller's, with ``write`` on its collection still."""
        set_id = str(inputs["upload_set"])
        try:
            owner, collection_id = await self.uploads.set_access(parse_uuid(set_id, "upload set"))
        except NotFound:
            owner, collection_id = None, None
        if collection_id is None or not caller.owns(owner):
            raise InvalidParameter(f"input 'upload_set': upload set {set_id} does not exist",
                                   type="InvalidParameterValue")  # fmt: skip
        await accounts.require(caller, collection_id, "write")
        return inputs

    async def prepare(self, job: JobRecord, cancelled: Callable[[], bool]) -> dict[str, Any]:
        """The set's waiting pictures and its options."""
        set_id = uuid.UUID(job.inputs["upload_set"])
        upload_set, _ = await self.uploads.get_set(set_id)
        entries = [{"file_id": str(p["upload_file_id"]), "filename": p["filename"],
                    "meta": p["meta"]} for p in await self.pictures.pending(set_id)]  # fmt: skip
        return {"pictures": entries, "options": options_of(upload_set)}

    @staticmethod
    def execute(plan: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Child process: sort, cut, find duplicates."""
        ctx.log(f"dispatching {len(plan['pictures'])} pictures with {plan['options']}")
        return cut(plan["pictures"], plan["options"])

    async def commit(
        self, conn: AsyncConnection, job: JobRecord, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Publish the items and sequences; reject the duplicates."""
        set_id = uuid.UUID(job.inputs["upload_set"])
        waiting = await self.pictures.items(conn, set_id)
        made = []
        for file_ids in result["sequences"]:
            present = [f for f in file_ids if f in waiting]
            if present:
                made.append(await self._publish(conn, set_id, [waiting[f] for f in present]))
        for dup in result["duplicates"]:
            if dup["file_id"] not in waiting:
                continue
            of = waiting.get(dup["of"], {}).get("item", {}).get("id", dup["of"])
            angle = f", facing {dup['angle']}° apart" if dup["angle"] is not None else ""
            await self.uploads.set_outcome(
                conn, uuid.UUID(dup["file_id"]), "rejected", CaptureDuplicate.code,
                f"taken {dup['distance']} m from picture {of!r}{angle}: a capture duplicate",
            )  # fmt: skip
        await self.pictures.forget(conn, set_id)
        return {"sequences": made, "duplicates": [d["file_id"] for d in result["duplicates"]]}

    async def _publish(
        self, conn: AsyncConnection, set_id: uuid.UUID, rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        sequence_id = uuid.uuid4()
        collection_id = rows[0]["collection_id"]
        ids = [r["item"]["id"] for r in rows]
        for rank, row in enumerate(rows):
            item = row["item"]
            props = item["properties"]
            props["terracat:sequence"] = str(sequence_id)
            props["terracat:sequence_rank"] = rank + 1
            if rank > 0:
                props["terracat:sequence_prev"] = ids[rank - 1]
            if rank + 1 < len(ids):
                props["terracat:sequence_next"] = ids[rank + 1]
            checked = item_row(item, collection_id, self.validate_extensions)
            await self.catalog.insert_item(conn, collection_id, checked)
        points = [(r["meta"]["lon"], r["meta"]["lat"]) for r in rows]
        coords = ", ".join(f"{x!r} {y!r}" for x, y in points)
        wkt = f"LINESTRING({coords})" if len(points) > 1 else f"POINT({coords})"
        times = [dt.datetime.fromisoformat(r["meta"]["datetime"]) for r in rows]
        await self.pictures.add_sequence(conn, {
            "id": sequence_id, "collection_id": collection_id, "upload_set_id": set_id,
            "wkt": wkt, "start_datetime": min(times), "end_datetime": max(times),
            "picture_count": len(rows), "item_ids": ids,
        })  # fmt: skip
        for row in rows:
            await self.uploads.set_outcome(conn, row["upload_file_id"], "ready", None, None)
        return {"id": str(sequence_id), "collection": collection_id, "items": ids}

    async def after_commit(self, job: JobRecord, outputs: dict[str, Any]) -> None:
        """Remove the files of the dropped duplicates; keep the statistics fresh."""
        await self.catalog.refresh_statistics(sum(len(s["items"]) for s in outputs["sequences"]))
        for file_id in outputs["duplicates"]:
            record = await self.uploads.get_file(uuid.UUID(file_id))
            if record["item_id"]:
                prefix = item_prefix(record["collection_id"], record["item_id"])
                await asyncio.to_thread(self.storage.delete_prefix, prefix)

    async def failed(self, job: JobRecord, code: str, message: str, final: bool) -> None:
        """A final failure frees the set for another dispatch (its next completion)."""
        if final:
            await self.pictures.release(uuid.UUID(job.inputs["upload_set"]))
