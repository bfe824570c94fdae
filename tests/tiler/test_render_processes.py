"""``write_tiles`` on render processes: order, empties, errors, and no process left behind.

Each scenario runs in a spawned process, as an export runs in the jobs' spawned child: the
render processes are forked from a single-threaded process, never from pytest's.
"""

import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from catalog.jobs.lifetime import die_with_parent
from tests.tiler.conftest import ListWriter
from tiler.export import write_tiles

SPAWN = multiprocessing.get_context("spawn")
TILES = [(9, x, y) for x in range(20) for y in range(10)]


def _pid_tile(z: int, x: int, y: int) -> bytes | None:
    """A tile naming itself and the process that rendered it; every 7th is empty."""
    time.sleep(0.002)  # long enough that both render processes get tasks
    return None if (x + y) % 7 == 0 else f"{z}/{x}/{y}/{os.getpid()}".encode()


def _ordered(conn: Connection) -> None:
    writer = ListWriter()
    progress: list[tuple[int, str]] = []
    stats = write_tiles(iter(TILES), _pid_tile, writer, len(TILES), 2,  # type: ignore[arg-type]
                        lambda p, m: progress.append((p, m)), processes=True)  # fmt: skip
    conn.send((os.getpid(), writer.tiles, writer.pids, stats, progress[-1],
               [p.pid for p in multiprocessing.active_children()]))  # fmt: skip


def test_render_processes_keep_the_order_and_skip_empty_tiles() -> None:
    ours, theirs = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(target=_ordered, args=(theirs,), daemon=True)
    child.start()
    assert ours.poll(60), "the scenario did not answer"
    pid, tiles, writer_pids, stats, last, left = ours.recv()
    child.join(10)
    kept = [t for t in TILES if (t[1] + t[2]) % 7 != 0]
    assert [t[:3] for t in tiles] == kept
    renderers = {int(data.decode().rsplit("/", 1)[1]) for *_, data in tiles}
    assert all(data.decode().startswith(f"{z}/{x}/{y}/") for z, x, y, data in tiles)
    assert len(renderers) == 2 and pid not in renderers  # two render processes, not the writer
    assert writer_pids == {pid}  # written by the export's process alone
    assert stats == {"written": len(kept), "empty": len(TILES) - len(kept)}
    assert last == (99, f"{len(TILES)}/{len(TILES)} tiles")
    assert left == []  # the pool is gone once the export returns
    assert child.exitcode == 0


def _broken_tile(z: int, x: int, y: int) -> bytes | None:
    if x == 5:
        raise RuntimeError("broken tile")
    return b"x"


def _broken(conn: Connection) -> None:
    tiles = ((12, x, 0) for x in range(10_000))
    try:
        write_tiles(tiles, _broken_tile, ListWriter(), 10_000, 2, lambda p, m: None,  # type: ignore[arg-type]
                    processes=True)  # fmt: skip
    except RuntimeError as exc:
        conn.send((str(exc), [p.pid for p in multiprocessing.active_children()]))


def test_a_render_error_in_a_process_stops_the_export() -> None:
    ours, theirs = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(target=_broken, args=(theirs,), daemon=True)
    child.start()
    assert ours.poll(60), "the scenario did not answer"
    message, left = ours.recv()
    child.join(10)
    assert message == "broken tile"
    assert left == []


def _slow_tile(z: int, x: int, y: int) -> bytes | None:
    time.sleep(0.2)
    return b"x"


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _slow(folder: str, parent: int) -> None:
    """As the jobs' child: dies with its parent, SIGTERM unwinds; writes its renderers' pids."""
    die_with_parent(parent)
    signal.signal(signal.SIGTERM, _exit_on_term)
    tiles = ((12, x, 0) for x in range(10_000))

    def progress(percent: int, message: str) -> None:
        pids = [p.pid for p in multiprocessing.active_children()]
        (Path(folder) / "pids").write_text(" ".join(map(str, pids)))

    write_tiles(tiles, _slow_tile, ListWriter(), 10_000, 2, progress,  # type: ignore[arg-type]
                progress_every_s=0, processes=True)  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _renderers(folder: Path) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = (folder / "pids").read_text().split() if (folder / "pids").exists() else []
        if len(found) == 2:
            return [int(p) for p in found]
        time.sleep(0.05)
    raise AssertionError("the render processes did not start")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_render_processes_end_within_a_second_of_their_export(
    tmp_path: Path, signum: signal.Signals
) -> None:
    child = SPAWN.Process(target=_slow, args=(str(tmp_path), os.getpid()), daemon=True)
    child.start()
    renderers = _renderers(tmp_path)
    assert all(_alive(pid) for pid in renderers)
    os.kill(child.pid, signum)  # a cancel (SIGTERM) or a killed job (SIGKILL)
    child.join(5)
    deadline = time.monotonic() + 1.0
    while any(_alive(pid) for pid in renderers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in renderers)
