"""Which database to use: ``DATABASE_URL`` or the embedded private cluster."""

import logging

from catalog.db.cluster import LocalCluster
from catalog.settings import DatabaseSettings

logger = logging.getLogger("terracat")


def embedded_cluster(settings: DatabaseSettings) -> LocalCluster:
    """The embedded cluster described by ``settings``."""
    return LocalCluster(settings.data_dir, settings.embedded_port)


def resolve_url(settings: DatabaseSettings) -> str:
    """The database URL; starts the embedded cluster (idempotently) when none is configured."""
    if settings.url:
        return settings.url
    cluster = embedded_cluster(settings)
    cluster.start()
    url = cluster.ensure_database(settings.embedded_database)
    logger.info("embedded PostGIS cluster in %s on port %d", cluster.root, cluster.port)
    return url
