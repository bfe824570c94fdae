"""What every benchmark report shares: progress lines, machine and versions, numbers, the docs file.

Each benchmark prints markdown tables on stdout and progress on stderr, and replaces its own
section of docs/benchmarks.md (between ``<!-- bench:KEY -->`` markers) leaving the rest alone.
"""

import functools
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psycopg
import rasterio

DOCS_HEADER = "# Benchmarks\n"


def log(message: str) -> None:
    """Progress on stderr (stdout carries the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    """Cores, CPU model, RAM and OS in one line."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GB RAM, {platform.platform()}"


def run_context(module: str) -> list[str]:
    """The Date, Machine and Command lines that open every section (``python -m module``)."""
    command = f"python -m {module} " + shlex.join(sys.argv[1:])
    return [
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"- Machine: {machine()}",
        f"- Command: `{command}`",
    ]


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution of this interpreter, ``-`` when missing."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


@functools.cache
def gdal_bin_version() -> str | None:
    """``3.6.2`` of the gdal_translate on PATH (Debian's gdal-bin), None without one."""
    if shutil.which("gdal_translate") is None:
        return None
    done = subprocess.run(["gdal_translate", "--version"], capture_output=True, text=True)
    return done.stdout.strip().split(",")[0].removeprefix("GDAL ") or None


def gdal_versions() -> dict[str, str]:
    """The GDAL inside the rasterio wheel and the GDAL of the command-line tools."""
    return {
        "GDAL (in the rasterio wheel)": rasterio.__gdal_version__,
        "GDAL (Debian gdal-bin)": gdal_bin_version() or "not installed",
    }


def database_versions(url: str, pgstac: bool = False) -> dict[str, str]:
    """PostgreSQL and PostGIS versions of a database, and its pgstac schema's if asked."""
    with psycopg.connect(url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
        postgis = conn.execute("SELECT postgis_lib_version()").fetchone()
        found = {
            "PostgreSQL": str(pg[0] if pg else "?"),
            "PostGIS": str(postgis[0] if postgis else "?"),
        }
        if pgstac:
            row = conn.execute("SELECT pgstac.get_version()").fetchone()
            found["pgstac (schema)"] = str(row[0] if row else "?")
    return found


def fmt(value: float, digits: int = 1) -> str:
    """A number with ``digits`` decimals; ``n/a`` for NaN."""
    return "n/a" if value != value else f"{value:.{digits}f}"


def write_section(path: Path, key: str, section: list[str], header: str = DOCS_HEADER) -> None:
    """Replace the ``<!-- bench:KEY -->`` block of ``path`` with ``section``, or append it.

    A missing file starts with ``header``.
    """
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = "\n".join([begin, *section, end])
    text = path.read_text() if path.exists() else header
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
