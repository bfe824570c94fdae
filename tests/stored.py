"""Items of ingested files, written the way the ingest job writes them.

``ingest_file`` returns an item whose assets are ``storage:`` hrefs; the HTTP API refuses such
hrefs from clients (``stac.ReservedHref``), so tests store these items through the catalogue
repository directly, as the job does, on their own short-lived engine.
"""

import asyncio
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from catalog.db.engine import create_engine
from catalog.ingest.pipeline import IngestRequest, file_digest, ingest_file
from catalog.settings import DatabaseSettings, IngestSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import item_row
from catalog.storage.local import LocalStorage


def store_items(database_url: str, items: Iterable[dict[str, Any]]) -> None:
    """Insert items (each naming its ``collection``) into the catalogue at ``database_url``."""
    by_collection: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        collection_id = item["collection"]
        by_collection.setdefault(collection_id, []).append(item_row(item, collection_id))

    async def write() -> None:
        engine = create_engine(database_url, DatabaseSettings())
        try:
            repository = CatalogRepository(engine)
            for collection_id, rows in by_collection.items():
                await repository.write_items(collection_id, rows, upsert=False)
        finally:
            await engine.dispose()

    # a thread of its own: the caller's thread may run an event loop (Playwright's sync API)
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, write()).result()


def store_item(database_url: str, item: dict[str, Any]) -> None:
    """Insert one item (naming its ``collection``)."""
    store_items(database_url, [item])


MAY_1 = datetime(2024, 5, 1, tzinfo=UTC)


def ingest_local(
    source: Path,
    collection_id: str,
    item_id: str,
    data_dir: Path,
    settings: IngestSettings | None = None,
    when: datetime | None = MAY_1,
) -> dict[str, Any]:
    """The item the ingest job makes of ``source``, its files published to the local folder
    ``data_dir`` (not stored in the catalogue: ``store_item`` does that)."""
    sha256, size = file_digest(source)
    request = IngestRequest(
        source=source, collection_id=collection_id, item_id=item_id, sha256=sha256, size=size,
        filename=source.name, datetime_value=when, upload_time=datetime.now(UTC),
    )  # fmt: skip
    return ingest_file(
        request, LocalStorage(data_dir), settings or IngestSettings(data_dir=data_dir)
    )
