"""The processes this server offers: the API lists and queues them, the workers run them."""

from catalog.jobs.queue import Process
from catalog.pictures.dispatch import DispatchProcess
from catalog.pictures.repository import PictureRepository
from catalog.stac.repository import CatalogRepository
from catalog.storage.base import Storage
from catalog.uploads.ingest import IngestProcess
from catalog.uploads.repository import UploadRepository
from tiler.export import export_processes

from .settings import Settings


def build_processes(
    settings: Settings, catalog: CatalogRepository, uploads: UploadRepository, storage: Storage
) -> dict[str, Process]:
    """Every process this server offers, by id (the API and the workers share this list);
    ``storage`` is the process's (``build_storage``)."""
    processes: list[Process] = [
        IngestProcess(
            uploads,
            catalog,
            settings.ingest,
            storage,
            settings.catalog.validate_extensions,
            settings.auth.default_quota_bytes,
        ),
        DispatchProcess(
            uploads,
            PictureRepository(uploads.engine, uploads.jobs),
            catalog,
            storage,
            settings.catalog.validate_extensions,
        ),
        *export_processes(catalog, storage, settings.tiler, settings.export, settings.mosaic),
    ]
    return {p.description.id: p for p in processes}
