"""The ``terracat`` command: serve, migrate, db start|stop|status|url."""

import argparse
import logging
import os
import sys

from catalog.cluster import ClusterError
from catalog.db import migrate

from .database import embedded_cluster, resolve_url
from .settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    cluster = None if settings.db.url else embedded_cluster(settings.db)
    started_here = cluster is not None and not cluster.running()
    url = resolve_url(settings.db)
    migrate(url)
    # Workers build their settings from the environment: hand them the resolved database.
    os.environ["DATABASE_URL"] = url
    host, port = args.host or settings.api.host, args.port or settings.api.port
    root = f"http://{host}:{port}{settings.api.root_path}"
    print(f"Terracat STAC API: {root}/", flush=True)
    print(f"  OpenAPI docs:    {root}/api.html", flush=True)
    print(f"  Search:          {root}/search", flush=True)
    if cluster is not None:
        print(f"  Database:        embedded PostGIS in {cluster.root} (port {cluster.port})")
    if not settings.api.admin_token and not settings.api.allow_anonymous_writes:
        print("  Writes:          disabled (set TERRACAT_API_ADMIN_TOKEN to enable)", flush=True)
    try:
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            proxy_headers=settings.api.trust_proxy_headers,
            forwarded_allow_ips="*" if settings.api.trust_proxy_headers else None,
            log_level=args.log_level,
        )
    finally:
        if started_here and cluster is not None:
            cluster.stop()
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    cluster = embedded_cluster(settings.db)
    if args.action == "start":
        url = resolve_url(settings.db.model_copy(update={"url": None}))
        migrate(url)
        print(f"embedded PostGIS running in {cluster.root} on 127.0.0.1:{cluster.port}")
    elif args.action == "stop":
        cluster.stop()
        print("embedded PostGIS stopped")
    elif args.action == "status":
        running = cluster.running()
        print(f"embedded PostGIS in {cluster.root}: {'running' if running else 'stopped'}")
        return 0 if running else 3
    elif args.action == "url":
        print(cluster.url(settings.db.embedded_database))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``terracat`` console script."""
    parser = argparse.ArgumentParser(prog="terracat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (starts the embedded DB if needed)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    db = sub.add_parser("db", help="manage the embedded PostGIS cluster")
    db.add_argument("action", choices=["start", "stop", "status", "url"])
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    try:
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "migrate":
            migrate(resolve_url(settings.db))
            return 0
        return _db(args, settings)
    except ClusterError as exc:
        print(f"terracat: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
