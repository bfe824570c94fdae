"""Both stacks on one private PostgreSQL cluster: Terracat and stac-fastapi-pgstac under uvicorn.

pypgstac pins ``cachetools<6.1`` while our lock pins ``cachetools==8.0.1`` (rio-tiler), so
pypgstac cannot live in the project venv. It runs from its own venv (``var/pypgstac-venv``,
made on first use); stac-fastapi-pgstac itself installs cleanly into the project venv.
titiler-pgstac (the tile benchmark's peer) pins ``titiler-core<2.4`` while our lock pins
2.4.0, so it too gets a venv of its own (``var/titiler-pgstac-venv``).
"""

import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

from catalog.db.cluster import LocalCluster, free_port

from .report import package_versions

ROOT = Path(__file__).resolve().parent.parent
PYPGSTAC_VERSION = "0.10.0"
TITILER_PGSTAC_VERSION = "3.2.0"
# Address-space cap per server process: a runaway worker fails alone instead of OOM-killing
# the machine (a worker grew to 23 GB once during development; workers normally use < 0.5 GB).
SERVER_MEMORY_LIMIT = 4 << 30
UVICORN_FLAGS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--log-level",
    "warning",
    "--no-access-log",
]

# Same memory settings for both databases (they share the cluster). Defaults otherwise.
CLUSTER_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "12GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "4GB",
}


def pypgstac_bin() -> Path:
    """The ``pypgstac`` command, installing it into ``var/pypgstac-venv`` if needed."""
    found = shutil.which("pypgstac", path=str(Path(sys.executable).parent))
    if found:
        return Path(found)
    venv = ROOT / "var" / "pypgstac-venv"
    command = venv / "bin" / "pypgstac"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"pypgstac[psycopg]=={PYPGSTAC_VERSION}"],
            check=True,
        )
    return command


def peer_python(name: str, version: str, *requirements: str) -> Path:
    """The Python of ``var/<name>-venv``, with ``requirements`` installed when the venv is
    missing or was made for another ``version`` of the peer (peers pin their own FastAPI,
    starlette or cachetools ranges, so none goes into the project venv)."""
    venv = ROOT / "var" / f"{name}-venv"
    python = venv / "bin" / "python"
    ready = venv / ".installed"
    if not ready.exists() or ready.read_text().strip() != version:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *requirements], check=True)
        ready.write_text(version + "\n")
    return python


def titiler_pgstac_python() -> Path:
    """The Python of ``var/titiler-pgstac-venv``, made with titiler-pgstac and uvicorn if needed."""
    return peer_python(
        "titiler-pgstac",
        TITILER_PGSTAC_VERSION,
        f"titiler.pgstac[psycopg-binary]=={TITILER_PGSTAC_VERSION}",
        "uvicorn[standard]",
    )


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SERVER_MEMORY_LIMIT, SERVER_MEMORY_LIMIT))


@dataclass
class Server:
    """A uvicorn process serving one stack."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        """Base URL with trailing slash."""
        return f"http://127.0.0.1:{self.port}/"

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the landing page answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Terminate the uvicorn master (it stops its workers)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Stacks:
    """The cluster, both databases and both servers."""

    workers: int = 2
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="terracat-bench-")))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    cluster: LocalCluster | None = None
    terracat_url: str = ""
    pgstac_url: str = ""
    servers: dict[str, Server] = field(default_factory=dict)

    # -- database ---------------------------------------------------------------------------
    def start_cluster(self, pgstac: bool = True) -> None:
        """Start the private cluster, tune its memory, create and migrate both databases.

        ``pgstac=False``: the Terracat database only (no pgstac schema, no pypgstac venv).
        """
        self.tmp.chmod(0o755)
        self.cluster = LocalCluster(self.tmp / "pg", free_port())
        self.cluster.start()
        with psycopg.connect(self.cluster.url("postgres"), autocommit=True) as conn:
            for name, value in CLUSTER_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        self.cluster.stop()
        self.cluster.start()
        self.terracat_url = self.cluster.ensure_database("terracat")
        if not pgstac:
            from catalog.db.engine import migrate

            migrate(self.terracat_url)
            return
        self.pgstac_url = self.cluster.ensure_database("pgstac")
        with psycopg.connect(self.pgstac_url, autocommit=True) as conn:
            for ext in ("btree_gist", "unaccent"):
                conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
        from catalog.db.engine import migrate

        migrate(self.terracat_url)
        self.pypgstac("migrate")

    def pypgstac(self, *args: str) -> float:
        """Run a pypgstac command against the pgstac database; return its wall time."""
        started = time.perf_counter()
        result = subprocess.run(
            [str(pypgstac_bin()), *args, "--dsn", self.pgstac_url],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pypgstac {' '.join(args)} failed: {result.stderr[-3000:]}")
        return time.perf_counter() - started

    def postmaster_pid(self) -> int:
        """The process id of the cluster's postmaster (its processes are the database's)."""
        if self.cluster is None:
            raise RuntimeError("the cluster is not running")
        return int((self.cluster.pgdata / "postmaster.pid").read_text().split()[0])

    def analyze(self) -> None:
        """VACUUM ANALYZE both databases (fresh statistics and visibility maps)."""
        for url in (self.terracat_url, self.pgstac_url):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")

    # -- servers ----------------------------------------------------------------------------
    def _spawn(
        self,
        name: str,
        target: list[str],
        env: dict[str, str],
        python: Path | None = None,
        workers: int | None = None,
    ) -> Server:
        port = free_port()
        log = self.tmp / f"{name}.log"
        cmd = [
            str(python or sys.executable),
            "-m",
            "uvicorn",
            *target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers or self.workers),
            *UVICORN_FLAGS,
        ]
        process = subprocess.Popen(
            cmd,
            cwd=ROOT,
            preexec_fn=_limit_memory,
            env={**os.environ, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        server = Server(name, port, process, log)
        self.servers[name] = server
        return server

    def start_servers(self) -> None:
        """Start Terracat and stac-fastapi-pgstac with the same uvicorn options."""
        parts = urlsplit(self.pgstac_url)
        self._spawn(
            "terracat",
            ["--factory", "server.app:create_app"],
            {"DATABASE_URL": self.terracat_url, "TERRACAT_API_ADMIN_TOKEN": self.token},
        )
        self._spawn(
            "pgstac",
            ["--factory", "stac_fastapi.pgstac.app:create_app"],
            {
                "PGHOST": parts.hostname or "127.0.0.1",
                "PGPORT": str(parts.port),
                "PGUSER": parts.username or "",
                "PGPASSWORD": self.cluster.password if self.cluster else "",
                "PGDATABASE": "pgstac",
                "ENABLE_TRANSACTIONS_EXTENSIONS": "false",
            },
        )
        for server in self.servers.values():
            server.wait()

    def start_terracat(self, env: dict[str, str] | None = None) -> Server:
        """Start Terracat alone (``env`` added to its environment); wait until it answers."""
        server = self._spawn(
            "terracat",
            ["--factory", "server.app:create_app"],
            {
                "DATABASE_URL": self.terracat_url,
                "TERRACAT_API_ADMIN_TOKEN": self.token,
                **(env or {}),
            },
        )
        server.wait()
        return server

    def start_titiler_pgstac(self, env: dict[str, str] | None = None) -> Server:
        """Start titiler-pgstac from its venv on the pgstac database; wait until it answers."""
        server = self._spawn(
            "titiler-pgstac",
            ["titiler.pgstac.main:app"],
            {"DATABASE_URL": self.pgstac_url, **(env or {})},
            python=titiler_pgstac_python(),
        )
        server.wait()
        return server

    def start_worker(self, env: dict[str, str] | None = None) -> Server:
        """Start a ``terracat worker`` process on the Terracat database (not waited for)."""
        log = self.tmp / "worker.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "worker"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": self.terracat_url, **(env or {})},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        server = Server("worker", 0, process, log)
        self.servers["worker"] = server
        return server

    def close(self) -> None:
        """Stop both servers and destroy the cluster and the temp folder."""
        for server in self.servers.values():
            server.stop()
        if self.cluster is not None:
            self.cluster.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)


def versions() -> dict[str, str]:
    """Versions of the packages that matter for the comparison."""
    names = [
        "terracat",
        "stac-fastapi-api",
        "stac-fastapi-pgstac",
        "fastapi",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "sqlalchemy",
        "psycopg",
        "asyncpg",
        "httpx",
    ]
    return {**package_versions(names), "pypgstac": PYPGSTAC_VERSION}
