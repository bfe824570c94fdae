"""A private PostgreSQL + PostGIS cluster in a data folder: the embedded default and the tests' DB.

PostgreSQL refuses to run as root, so when we are root every server command runs as the
``postgres`` user. The cluster listens on 127.0.0.1 only and requires a password, which is
generated once and kept (mode 0600) in the data folder.
"""

import glob
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql


class ClusterError(RuntimeError):
    """The embedded cluster could not be set up or started."""


def find_bindir() -> Path:
    """Locate the PostgreSQL server binaries (newest version first)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for path in candidates:
        if Path(path, "initdb").exists():
            return Path(path)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ClusterError("PostgreSQL server binaries not found (apt-get install postgresql-15)")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCluster:
    """A PostgreSQL cluster owned by this project, in ``data_dir``, on 127.0.0.1:``port``."""

    superuser = "terracat"

    def __init__(
        self, data_dir: Path, port: int, server_options: Mapping[str, str] | None = None
    ) -> None:
        self.root = Path(data_dir).resolve()
        self.pgdata = self.root / "pgdata"
        self.port = port
        # ``-c name=value`` settings of the server; a throwaway cluster may trade durability
        # for speed (fsync, synchronous_commit, full_page_writes off), the embedded one never.
        self.server_options = {"fsync": "on", **(server_options or {})}
        self._bindir = find_bindir()
        self._as_postgres = os.geteuid() == 0

    # -- commands -------------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self._bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ClusterError(
                f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            probe = subprocess.run(
                ["runuser", "-u", "postgres", "--", "test", "-w", str(self.root)], check=False
            )
            if probe.returncode != 0:
                raise ClusterError(
                    f"the postgres user cannot write {self.root}; set TERRACAT_DB_DATA_DIR to a "
                    "folder it can reach"
                )

    @property
    def password_file(self) -> Path:
        """File holding the superuser password."""
        return self.root / "password"

    @property
    def password(self) -> str:
        """The superuser password, generated at init."""
        return self.password_file.read_text().strip()

    def initialized(self) -> bool:
        """Whether initdb has run in the data folder."""
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster (idempotent)."""
        if self.initialized():
            return
        self._prepare_root()
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        if self._as_postgres:
            shutil.chown(self.password_file, "postgres", "postgres")
        self._run(
            "initdb",
            "-D", str(self.pgdata),
            "-U", self.superuser,
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            f"--pwfile={self.password_file}",
            "-E", "UTF8",
            "--locale=C.UTF-8",
            # a throwaway cluster need not wait for initdb's files to reach the disk (~2 s)
            *(["--no-sync"] if self.server_options.get("fsync") == "off" else []),
        )  # fmt: skip

    def running(self) -> bool:
        """Whether the server of this data folder is up."""
        if not self.initialized():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.pgdata), check=False).returncode == 0

    def start(self, timeout: float = 30.0) -> None:
        """Start the server if it is not running and wait until it accepts connections."""
        self.init()
        if not self.running():
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(self.port),
                "unix_socket_directories": "''",
                "max_connections": "200",
                **self.server_options,
            }
            options = " ".join(f"-c {name}={value}" for name, value in settings.items())
            self._run(
                "pg_ctl", "start", "-w", "-t", str(int(timeout)),
                "-D", str(self.pgdata), "-l", str(self.root / "server.log"), "-o", options,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"cluster did not accept connections: {exc}") from exc
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (fast shutdown) if it runs."""
        if self.running():
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.pgdata))

    def destroy(self) -> None:
        """Stop the server and delete the data folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ------------------------------------------------------------------------
    def url(self, database: str) -> str:
        """Connection URL for ``database`` as the cluster's superuser."""
        return (
            f"postgresql://{self.superuser}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(database, safe='')}"
        )

    def ensure_database(self, name: str) -> str:
        """Create ``name`` with PostGIS if it does not exist; return its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return self.url(name)
