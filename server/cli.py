"""The ``terracat`` command: serve, worker, ingest, collections, accounts, tokens, migrate,
db."""

import argparse
import asyncio
import copy
import logging
import os
import signal
import subprocess
import sys
from functools import partial
from typing import Any

from catalog.db.cluster import ClusterError
from catalog.db.engine import migrate
from catalog.jobs.lifetime import die_with_parent

from .database import embedded_cluster, resolve_url
from .settings import ApiSettings, Settings

# Loggers the commands quiet. stac_fastapi.types.core builds default ApiSettings at import and
# warns that title, description and version are unset; create_app sets ours, so the warning
# only misleads. httpx logs one line per request.
QUIET = {"stac_fastapi.types.config": logging.ERROR, "httpx": logging.WARNING}


def uvicorn_log_config(api: ApiSettings) -> dict[str, Any]:
    """uvicorn's logging, with our quiet loggers and the access log filter (applied before
    the app is imported)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for name, level in QUIET.items():
        config["loggers"][name] = {"level": logging.getLevelName(level)}
    config.setdefault("filters", {})["access"] = {
        "()": "server.logs.AccessLogFilter",
        "mode": api.access_log,
        "every": api.access_log_sample,
    }
    config["handlers"]["access"]["filters"] = ["access"]
    return config


def browsable_root(host: str, port: int, root_path: str) -> str:
    """The API root a browser on this machine opens: a wildcard address is where the server
    listens, not a URL (``0.0.0.0`` -> ``127.0.0.1``, ``::`` -> ``[::1]``)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}{root_path.rstrip('/')}"


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    cluster = None if settings.db.url else embedded_cluster(settings.db)
    started_here = cluster is not None and not cluster.running()
    url = resolve_url(settings.db)
    migrate(url)
    _first_start(url, settings)
    # Workers build their settings from the environment: hand them the resolved database.
    os.environ["DATABASE_URL"] = url
    host, port = args.host or settings.api.host, args.port or settings.api.port
    root = browsable_root(host, port, settings.api.root_path)
    print(f"Terracat STAC API: {root}/", flush=True)
    print(f"  Viewer:          {root}/viewer/  (open it in a browser)", flush=True)
    print(f"  OpenAPI docs:    {root}/api.html", flush=True)
    print(f"  Search:          {root}/search", flush=True)
    if cluster is not None:
        print(f"  Database:        embedded PostGIS in {cluster.root} (port {cluster.port})")
    if not settings.api.admin_token and not settings.api.allow_anonymous_writes:
        print("  Writes:          disabled (set TERRACAT_API_ADMIN_TOKEN to enable)", flush=True)
    worker = None
    if args.workers_jobs > 0:
        # One command runs everything: job workers next to the API, stopped with it.
        # uvicorn re-raises SIGTERM after its shutdown, so a ``finally`` here may never run:
        # the kernel tells the worker (SIGTERM: it stops gracefully) when we are gone.
        worker = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "worker", "--concurrency",
             str(args.workers_jobs)],
            env={**os.environ, "DATABASE_URL": url},
            preexec_fn=partial(die_with_parent, os.getpid(), signal.SIGTERM),
        )  # fmt: skip
        print(f"  Job worker:      pid {worker.pid}", flush=True)
    try:
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            # The app decides which peers' forwarding headers count (server/proxies.py):
            # uvicorn's own handling would rewrite the peer address the app checks.
            proxy_headers=False,
            log_level=args.log_level,
            log_config=uvicorn_log_config(settings.api),
            access_log=settings.api.access_log != "off",
        )
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        if started_here and cluster is not None:
            cluster.stop()
    return 0


def _first_start(url: str, settings: Settings) -> None:
    """Without an enabled admin account, make ``admin`` and show its token, this once."""
    from .accounts import first_start

    token = first_start(url, settings)
    if token is None:
        return
    rule = "=" * 78
    print(f"{rule}\nFirst start: made the admin account. Its API token, shown only this once "
          f"(keep it\nsecret; use it as 'Authorization: Bearer <token>' or $TERRACAT_TOKEN):\n\n"
          f"    {token}\n\n"
          f"Make more accounts and tokens with 'terracat accounts add' and "
          f"'terracat tokens create'.\n{rule}", flush=True)  # fmt: skip


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from .worker import run_worker

    if args.concurrency:
        settings.jobs.concurrency = args.concurrency
    url = resolve_url(settings.db)
    asyncio.run(run_worker(settings, url))
    return 0


def _server_and_token(args: argparse.Namespace, settings: Settings) -> tuple[str, str | None]:
    """The API root and token of a client command: options, else environment and settings."""
    api = settings.api
    server = args.server or f"http://{api.host}:{api.port}{api.root_path}"
    token = args.token or os.environ.get("TERRACAT_TOKEN")
    if token is None and api.admin_token is not None:
        token = api.admin_token.get_secret_value()
    return server, token


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from .api_client import ClientError, NewCollection
    from .ingest_client import IngestOptions, IngestTimeout, ingest

    server, token = _server_and_token(args, settings)
    create = None
    if args.create:
        title = args.collection_title or args.title  # `--create --title T` titles both
        create = NewCollection(args.collection, title, args.description, args.license)
    options = IngestOptions(collection=args.collection, wait=not args.no_wait,
                            datetime=args.datetime, title=args.title, quiet=args.quiet,
                            timeout_s=args.timeout or None, create=create)  # fmt: skip
    try:
        return ingest(args.sources, server, token, options)
    except IngestTimeout as exc:
        print(f"terracat ingest: {exc}", file=sys.stderr)
        return 3
    except ClientError as exc:
        print(f"terracat ingest: {exc}", file=sys.stderr)
        return 2


def _collections(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from .api_client import ClientError, client, collections_command

    server, token = _server_and_token(args, settings)
    options = {k: v for k, v in vars(args).items() if k not in ("server", "token")}
    try:
        with client(server, token) as http:
            return collections_command(args.action, http, options)
    except ClientError as exc:
        print(f"terracat collections {args.action}: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"terracat collections {args.action}: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2


def _accounts_or_tokens(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from .accounts_client import accounts_command, tokens_command
    from .api_client import ClientError, client

    command = accounts_command if args.command == "accounts" else tokens_command
    server, token = _server_and_token(args, settings)
    options = {k: v for k, v in vars(args).items() if k not in ("server", "token")}
    try:
        with client(server, token) as http:
            return command(args.action, http, options)
    except (ClientError, httpx.HTTPError) as exc:
        print(f"terracat {args.command} {args.action}: {exc}", file=sys.stderr)
        return 2


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


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="API root URL (default: this machine's settings)")
    parser.add_argument("--token", help="API token (default: $TERRACAT_TOKEN, else "
                        "$TERRACAT_API_ADMIN_TOKEN)")  # fmt: skip


def _ingest_parser(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="upload files or URLs into a collection")
    ingest.add_argument("sources", nargs="+", metavar="FILE_OR_URL")
    ingest.add_argument("--collection", required=True)
    _client_options(ingest)
    ingest.add_argument("--no-wait", action="store_true", help="do not follow the jobs")
    ingest.add_argument("--datetime", help="RFC 3339 datetime for every item")
    ingest.add_argument("--title", help="title of the upload set (and of a collection --create "
                        "makes, unless --collection-title)")  # fmt: skip
    ingest.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    ingest.add_argument(
        "--timeout", type=float, default=3600,
        help="seconds to wait for the files to finish (0: no limit); exit code 3 after it",
    )  # fmt: skip
    create = ingest.add_argument_group("creating the collection")
    create.add_argument("--create", action="store_true",
                        help="create the collection if it does not exist")  # fmt: skip
    create.add_argument("--collection-title", help="its title (default: --title, else its id)")
    create.add_argument("--description", help="its description")
    create.add_argument("--license", help="its license: an SPDX id or 'other' (default)")


def _collections_parser(sub: Any) -> None:
    collections = sub.add_parser("collections", help="list, create or delete collections")
    actions = collections.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every collection: id and title")
    create = actions.add_parser("create", help="create an empty collection")
    create.add_argument("id")
    create.add_argument("--title", help="default: the id")
    create.add_argument("--description", help="default: 'Collection <id>'")
    create.add_argument("--license", help="an SPDX id, or 'other' (default)")
    create.add_argument("--exist-ok", action="store_true",
                        help="succeed when the collection exists already")  # fmt: skip
    delete = actions.add_parser("delete", help="delete a collection and all its items")
    delete.add_argument("id")
    delete.add_argument("--missing-ok", action="store_true",
                        help="succeed when the collection does not exist")  # fmt: skip
    for parser in (listing, create, delete):
        _client_options(parser)


def _accounts_parser(sub: Any) -> None:
    accounts = sub.add_parser("accounts", help="add, list or disable accounts (admins)")
    actions = accounts.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create an account and its first token")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "user"], default="user")
    add.add_argument("--email")
    add.add_argument("--quota", type=int, metavar="BYTES", help="default: the server's")
    listing = actions.add_parser("list", help="every account: name, role, state, id, email")
    disable = actions.add_parser("disable", help="disable an account: its tokens stop working")
    disable.add_argument("account", metavar="NAME_OR_ID")
    for parser in (add, listing, disable):
        _client_options(parser)


def _tokens_parser(sub: Any) -> None:
    tokens = sub.add_parser("tokens", help="make, list or revoke your account's API tokens")
    actions = tokens.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token; prints it once")
    create.add_argument("--description", default="")
    create.add_argument("--scopes", help="comma-separated: read,write,admin (default: yours)")
    create.add_argument("--expires", help="RFC 3339 time it stops working (default: never)")
    listing = actions.add_parser("list", help="your tokens (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke one of your tokens")
    revoke.add_argument("id")
    for parser in (create, listing, revoke):
        _client_options(parser)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``terracat`` console script."""
    parser = argparse.ArgumentParser(prog="terracat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (starts the embedded DB if needed)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--job-workers", dest="workers_jobs", type=int, default=1,
        help="jobs run at once by the worker started alongside (0: start no worker)",
    )  # fmt: skip
    worker = sub.add_parser("worker", help="run jobs (any number, on any machine)")
    worker.add_argument("--concurrency", type=int, help="jobs at once (TERRACAT_JOBS_CONCURRENCY)")
    _ingest_parser(sub)
    _collections_parser(sub)
    _accounts_parser(sub)
    _tokens_parser(sub)
    sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    db = sub.add_parser("db", help="manage the embedded PostGIS cluster")
    db.add_argument("action", choices=["start", "stop", "status", "url"])
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(level)
    settings = Settings()
    try:
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "worker":
            return _worker(args, settings)
        if args.command == "ingest":
            return _ingest(args, settings)
        if args.command == "collections":
            return _collections(args, settings)
        if args.command in ("accounts", "tokens"):
            return _accounts_or_tokens(args, settings)
        if args.command == "migrate":
            migrate(resolve_url(settings.db))
            return 0
        return _db(args, settings)
    except ClusterError as exc:
        print(f"terracat: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
