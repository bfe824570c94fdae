"""Session fixtures: a real PostGIS migrated by Alembic, isolated per test by truncation.

The server is a throwaway private cluster started for the session. With ``DATABASE_URL`` set,
fresh databases are created on that server instead (and dropped afterwards): never the
database in the URL itself, so a developer's data is never touched.
"""

import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, create_engine, make_url, text

from catalog.db.cluster import LocalCluster, free_port
from catalog.db.engine import migrate, sync_url
from tests.schedule import (  # noqa: F401 (hooks: modules longest first, tests/schedule.py)
    pytest_collection_modifyitems,
    pytest_runtest_logreport,
    pytest_sessionfinish,
)

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from catalog.settings import JobSettings, StorageSettings
    from server.settings import Settings
    from tests.apps import AppPool
    from tests.workers import MakeWorker, Processes

TABLES = (
    "job_log", "upload_files", "upload_sets", "tus_uploads", "jobs", "searches", "queryables",
    "items", "vector_layers", "collections", "collection_grants", "api_tokens", "accounts",
)  # fmt: skip
# TRUNCATE fires no row trigger: the feature tables of vector collections are dropped here.
_DROP_FEATURE_TABLES = """
DO $$ DECLARE t text; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'features' LOOP
    EXECUTE format('DROP TABLE features.%I', t);
  END LOOP;
END $$
"""


class Databases:
    """Creates migrated databases on the session's PostgreSQL server."""

    def __init__(self, admin_url: str, url_for: Callable[[str], str], suffix: str) -> None:
        self.admin_url = admin_url
        self._url_for = url_for
        self.suffix = suffix
        self.created: list[str] = []
        self._template: str | None = None

    def create(self, name: str) -> str:
        """A new, migrated database; dropped at the end of the session.

        The first is migrated by Alembic; the others are copies of it (CREATE DATABASE ...
        TEMPLATE), which spares a migration each.
        """
        template = self._template or self._migrated(f"terracat_template_{self.suffix}")
        self._template = template
        self._create(name, template)
        return self._url_for(name)

    def _migrated(self, name: str) -> str:
        self._create(name, None)
        url = self._url_for(name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        migrate(url)
        return name

    def _create(self, name: str, template: str | None) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(create)
        self.created.append(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@pytest.fixture(scope="session", autouse=True)
def _job_children_preload() -> None:
    """Job children start with the suite's process modules imported, as a ``terracat worker``'s
    do with its processes': the fork server is one per process, started by its first worker.

    Every module the server's processes name (``child_modules`` too): a first worker offering
    fewer (tests/catalog/test_worker.py's, the export tests') would otherwise leave each later
    ingest child to import the datacube libraries anew, ~0.7 s of CPU per picture or file.
    """
    from catalog.jobs.worker import preload
    from catalog.pictures.dispatch import DispatchProcess
    from catalog.uploads.ingest import IngestProcess
    from tiler.export import ExportProcess

    modules = ["tiler.export", "tests.catalog.processes"]
    for process in (IngestProcess, DispatchProcess, ExportProcess):
        modules += [process.__module__, *process.child_modules]
    preload(modules)


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    """The session's PostgreSQL server: a private cluster, or the server in DATABASE_URL."""
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        admin = make_url(sync_url(server_url)).set(drivername="postgresql")
        suffix = secrets.token_hex(4)

        def url_for(name: str) -> str:
            return admin.set(database=name).render_as_string(hide_password=False)

        dbs = Databases(admin.render_as_string(hide_password=False), url_for, suffix)
        try:
            yield dbs
        finally:
            dbs.drop_all()
        return
    folder = Path(tempfile.mkdtemp(prefix="terracat-test-"))
    folder.chmod(0o755)  # the postgres user must reach the data folder inside
    # Nothing of a test session outlives it: durability buys nothing and costs every commit.
    throwaway = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    cluster = LocalCluster(folder / "db", free_port(), throwaway)
    try:
        cluster.start()
        dbs = Databases(cluster.url("postgres"), cluster.url, "local")
        yield dbs
    finally:
        cluster.destroy()
        folder.rmdir()


@pytest.fixture(scope="session")
def database_url(databases: Databases) -> str:
    """URL of a migrated database whose tables are emptied after each test using it."""
    return databases.create(f"terracat_test_{databases.suffix}")


@pytest.fixture(scope="session")
def sync_engine(database_url: str) -> Iterator[Engine]:
    """A synchronous SQLAlchemy engine on the test database."""
    engine = create_engine(sync_url(database_url))
    yield engine
    engine.dispose()


# The tables TRUNCATE ... CASCADE of TABLES empties: those and the tables referencing them.
_REACHED = """
WITH RECURSIVE reached(rel) AS (
  SELECT unnest(CAST(CAST(:tables AS text[]) AS regclass[]))
  UNION SELECT c.conrelid FROM pg_constraint c JOIN reached ON c.confrelid = reached.rel
  WHERE c.contype = 'f'
) SELECT CAST(rel AS oid) FROM reached
"""
# Those of them not as a TRUNCATE leaves a table: written to (rows, or the space of deleted
# or rolled back ones) or analysed since (its planner statistics, which counts estimate from).
_TOUCHED = """
SELECT CAST(CAST(oid AS regclass) AS text) FROM pg_class
WHERE oid = ANY(:reached) AND (pg_relation_size(oid) > 0 OR relpages <> 0 OR reltuples <> -1)
"""


# Sessions of this database idle in a transaction for a while: after a test, only a test
# that failed leaves one (servers and workers of the test suite commit or roll back at once).
_END_LEFT_TRANSACTIONS = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND state_change < now() - interval '2 seconds'
"""


@pytest.fixture(scope="session")
def _reached_tables(sync_engine: Engine) -> list[int]:
    """The oids of the tables ``TRUNCATE TABLES CASCADE`` empties."""
    with sync_engine.connect() as conn:
        return list(conn.execute(text(_REACHED), {"tables": list(TABLES)}).scalars())


@pytest.fixture(autouse=True)
def _clean_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty the catalogue tables after every test that touched the database.

    ``TRUNCATE TABLES CASCADE``, less the tables a TRUNCATE would leave as they are: each one
    truncated gets new files for itself and its indexes, ~25 ms of the server's time after
    every test for tables most tests never write to.
    """
    if "database_url" not in request.fixturenames:
        yield
        return
    engine: Engine = request.getfixturevalue("sync_engine")
    reached: list[int] = request.getfixturevalue("_reached_tables")
    yield
    with engine.begin() as conn:
        # A test that failed mid-transaction may leave a session holding its locks (tasks
        # still running on a connection nobody closes): the TRUNCATE waited for it forever
        # and the whole run hung. Such sessions end here; a lock still held after the
        # timeout fails this teardown instead of hanging.
        conn.execute(text(_END_LEFT_TRANSACTIONS))
        conn.execute(text("SET LOCAL lock_timeout = '20s'"))
        touched = conn.execute(text(_TOUCHED), {"reached": reached}).scalars().all()
        if touched:
            conn.execute(text(f"TRUNCATE {', '.join(touched)} CASCADE"))
        conn.execute(text(_DROP_FEATURE_TABLES))


ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@functools.lru_cache(maxsize=1)
def _settings_of(environment: tuple[tuple[str, str], ...]) -> "Settings":
    """Settings read from the environment, kept while ``environment`` (all of it) is the same."""
    from server.settings import Settings

    return Settings()


def app_settings(database_url: str, data_dir: Path) -> "Settings":
    """App settings on ``database_url`` with the admin token, keeping files in ``data_dir``.

    A deep copy of settings read once per distinct environment: reading them (sixteen
    settings classes, each over the environment) costs ~7 ms of CPU, the copy 0.15 ms, and
    most tests ask for settings.
    """
    from pydantic import SecretStr

    from server.settings import ApiSettings

    settings = _settings_of(tuple(sorted(os.environ.items()))).model_copy(deep=True)
    settings.db.url = database_url
    settings.api = ApiSettings(admin_token=SecretStr(ADMIN_TOKEN))
    settings.ingest.data_dir = data_dir
    return settings


@pytest.fixture(scope="session")
def _shared_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-data")


@pytest.fixture
def data_dir(_shared_data_root: Path) -> Iterator[Path]:
    """The data folder of ``settings``: one for the session, emptied after every test.

    The same folder for every test lets tests share an app (``apps``); what a test leaves in
    it is gone before the next test starts, and the storage's folders are made again.
    Fixtures that write there (workers) depend on it, so they stop before it is emptied.
    """
    from catalog.storage.local import LocalStorage

    folder = _shared_data_root / "data"
    LocalStorage(folder)  # its folders, as an app that shares them made them
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def settings(database_url: str, data_dir: Path) -> "Settings":
    """App settings on the test database with an admin token and the data folder; the test's
    own copy, free to change."""
    return app_settings(database_url, data_dir)


@pytest.fixture(scope="session")
def apps() -> "AppPool":
    """The session's apps, one per distinct settings (see ``tests.apps.AppPool``)."""
    from tests.apps import AppPool

    return AppPool()


@pytest.fixture
def client(settings: "Settings", apps: "AppPool") -> Iterator["TestClient"]:
    """HTTP client on the app for ``settings`` as they are when the test starts (lifespan run
    for this test, real database); the app itself is shared with tests of equal settings."""
    with apps.client(settings) as test_client:
        yield test_client


# A reverse proxy on this machine: the peer the default TERRACAT_API_FORWARDED_ALLOW_IPS trusts.
# TestClient's own peer, "testclient", is no address, so its forwarding headers are dropped.
LOCAL_PROXY = ("127.0.0.1", 50000)


@pytest.fixture
def proxied(client: "TestClient") -> "TestClient":
    """The app of ``client`` (its lifespan, state and data) reached through a local reverse
    proxy, trusted by default: its Forwarded / X-Forwarded-* headers count."""
    from fastapi.testclient import TestClient

    return TestClient(client.app, client=LOCAL_PROXY)


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers that authorize a write."""
    return dict(ADMIN)


@pytest.fixture
def make_worker(database_url: str, data_dir: Path) -> Iterator["MakeWorker"]:
    """Make job workers on the test database, each started by the test; all stopped at its end.

    ``make_worker(processes, job_settings)``: see ``tests.workers.WorkerThread``.
    """
    from tests.workers import WorkerThread

    made: list[WorkerThread] = []

    def make(processes: "Processes", jobs: "JobSettings") -> WorkerThread:
        made.append(WorkerThread(database_url, processes, jobs))
        return made[-1]

    yield make
    for worker in made:
        worker.stop()


class S3Server:
    """An S3-compatible server process (moto) on a loopback port, for the whole session."""

    region = "us-east-1"
    access_key = "terracat-test-key"
    secret_key = "terracat-test-secret"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def make_bucket(self) -> str:
        """A new empty bucket with a unique name."""
        import boto3

        name = f"terracat-{secrets.token_hex(6)}"
        client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )  # fmt: skip
        client.create_bucket(Bucket=name)
        client.close()
        return name

    def settings(self, bucket: str, prefix: str = "") -> "StorageSettings":
        """Storage settings on ``bucket`` of this server: endpoint, path style, credentials."""
        from pydantic import SecretStr

        from catalog.settings import StorageSettings

        return StorageSettings(
            kind="s3", s3_endpoint_url=self.endpoint, s3_region=self.region, s3_bucket=bucket,
            s3_prefix=prefix, s3_path_style=True, s3_access_key_id=SecretStr(self.access_key),
            s3_secret_access_key=SecretStr(self.secret_key),
        )  # fmt: skip


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto in server mode, a separate process started on first use and stopped at the end of
    the session; each test makes its own bucket (``S3Server.make_bucket``)."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
