"""The COG step alone: ``catalog.ingest.cog.to_cog`` against ``gdal_translate -of COG``."""

import json
import math
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .memory import SAMPLE_S, status_bytes
from .report import gdal_bin_version, log
from .servers import ROOT

TO_COG = """
import json, sys, time
from pathlib import Path
from catalog.ingest.cog import to_cog
from catalog.ingest.validate import inspect
from catalog.settings import IngestSettings
settings = IngestSettings(data_dir=sys.argv[3])
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
started = time.perf_counter()
info = inspect(src, settings)
checked = time.perf_counter()
to_cog(src, dst, info, settings)
print(json.dumps({"inspect": checked - started, "to_cog": time.perf_counter() - checked}))
"""
GDAL_COG = ["-of", "COG", "-co", "COMPRESS=DEFLATE", "-co", "PREDICTOR=2", "-co",
            "BLOCKSIZE=512", "-co", "OVERVIEWS=AUTO", "-co", "NUM_THREADS=ALL_CPUS"]  # fmt: skip


@dataclass
class CogRuns:
    """Timings of one tool over the runs."""

    name: str
    seconds: list[float] = field(default_factory=list)
    peak_rss: int = 0
    size: int = 0
    inspect_s: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median seconds."""
        return statistics.median(self.seconds) if self.seconds else math.nan


def _run(cmd: list[str], out: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes, VmHWM sampled while it runs) and output of a command."""
    peak = 0
    with out.open("w+") as stdout:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.STDOUT)
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.wait(SAMPLE_S):
                peak = max(peak, status_bytes(process.pid, "VmHWM"))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            process.wait()
        finally:
            wall = time.perf_counter() - started
            done.set()
            watcher.join()
        stdout.seek(0)
        text = stdout.read()
    if process.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {text[-2000:]}")
    return wall, peak, text


def compare_cog(src: Path, runs: int, folder: Path) -> tuple[CogRuns, CogRuns | None]:
    """``to_cog`` (in a fresh process, timed inside) against ``gdal_translate``, alternating."""
    ours = CogRuns("to_cog")
    gdal = CogRuns("gdal_translate") if gdal_bin_version() else None
    work = Path(tempfile.mkdtemp(prefix="cog-", dir=folder))
    try:
        for run in range(runs):
            order = ["ours", "gdal"] if run % 2 == 0 else ["gdal", "ours"]
            for which in order:
                if which == "ours":
                    dst = work / "to_cog.tif"
                    cmd = [sys.executable, "-c", TO_COG, str(src), str(dst), str(work / "data")]
                    _, rss, text = _run(cmd, work / "out.txt")
                    timed = json.loads(text.strip().splitlines()[-1])
                    ours.seconds.append(timed["to_cog"])
                    ours.inspect_s.append(timed["inspect"])
                    ours.peak_rss, ours.size = max(ours.peak_rss, rss), dst.stat().st_size
                    log(f"  to_cog run {run + 1}: {timed['to_cog']:.1f} s")
                elif gdal is not None:
                    dst = work / "gdal.tif"
                    dst.unlink(missing_ok=True)
                    cmd = ["gdal_translate", "-q", *GDAL_COG, str(src), str(dst)]
                    wall, rss, _ = _run(cmd, work / "out.txt")
                    gdal.seconds.append(wall)
                    gdal.peak_rss, gdal.size = max(gdal.peak_rss, rss), dst.stat().st_size
                    log(f"  gdal_translate run {run + 1}: {wall:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ours, gdal
