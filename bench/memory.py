"""Resident memory of the servers' process trees, sampled from /proc in a background thread."""

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from .servers import Server

SAMPLE_S = 0.05


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children of all its threads, recursively)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *children(kid)]
    return found


def status_bytes(pid: int, key: str = "VmRSS") -> int:
    """A memory line of /proc/<pid>/status in bytes: VmRSS now, VmHWM the peak (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _is_job_child(pid: int) -> bool:
    """A job's child process: the worker starts it with multiprocessing's ``spawn``."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and its direct children."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return sum(status_bytes(p) for p in [pid, *map(int, kids)])


class _Sampler:
    """Calls ``sample`` every ``interval`` s in a daemon thread between ``start`` and ``stop``."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start sampling in a daemon thread."""
        self._thread.start()
        return self

    def _join(self) -> None:
        self._stop.set()
        self._thread.join()


class MemoryWatch(_Sampler):
    """Samples the resident memory of each server's process tree; keeps the peak."""

    def __init__(self, servers: "dict[str, Server]", interval: float = 0.5) -> None:
        super().__init__(interval)
        self.servers = servers
        self.peak: dict[str, int] = dict.fromkeys(servers, 0)

    def sample(self) -> None:
        """Raise each server's peak to its tree's memory now."""
        for name, server in self.servers.items():
            self.peak[name] = max(self.peak[name], _tree_rss(server.process.pid))

    def stop(self) -> dict[str, int]:
        """Stop sampling; return the peaks in bytes."""
        self._join()
        return self.peak


@dataclass(frozen=True)
class Sample:
    """Resident memory of each watched process tree at one moment."""

    t: float  # time.time()
    rss: dict[str, int]
    job_child: bool  # a job's child process of the worker exists


class RssTimeline(_Sampler):
    """Samples the process trees every ``interval`` s from /proc; answers about time windows."""

    def __init__(self, roots: dict[str, int], interval: float = SAMPLE_S) -> None:
        super().__init__(interval)
        self.roots = roots
        self.samples: list[Sample] = []

    def sample(self) -> None:
        """Record the memory of every tree now, and whether a job's child runs."""
        rss, job_child = {}, False
        for name, pid in self.roots.items():
            tree = [pid, *children(pid)]
            rss[name] = sum(status_bytes(p) for p in tree)
            # uvicorn's own workers are spawned too: only the worker's children are jobs
            job_child = job_child or (name == "worker" and any(map(_is_job_child, tree[1:])))
        self.samples.append(Sample(time.time(), rss, job_child))

    def stop(self) -> None:
        """Stop sampling."""
        self._join()

    def _window(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in list(self.samples) if t0 <= s.t <= t1]

    def peak(self, name: str, t0: float, t1: float) -> int:
        """Highest resident memory of ``name`` between ``t0`` and ``t1``."""
        return max((s.rss[name] for s in self._window(t0, t1)), default=0)

    def before(self, name: str, t0: float, span: float = 1.0) -> int:
        """Median resident memory of ``name`` in the ``span`` s before ``t0``."""
        values = [s.rss[name] for s in self._window(t0 - span, t0)]
        return int(statistics.median(values)) if values else 0

    def child_span(self, t0: float, t1: float) -> tuple[float, float] | None:
        """First and last sample between ``t0`` and ``t1`` that saw a job's child process."""
        seen = [s.t for s in self._window(t0, t1) if s.job_child]
        return (seen[0], seen[-1]) if seen else None


def worker_memory(pid: int) -> list[tuple[int, int]]:
    """(RSS now, peak RSS) in bytes of each uvicorn worker under the master ``pid``.

    uvicorn spawns its workers with multiprocessing; the master's other children (the
    resource tracker) are small and are left out by the same test.
    """
    kids = [k for k in children(pid) if _is_job_child(k)]
    return [(status_bytes(k), status_bytes(k, "VmHWM")) for k in kids]
