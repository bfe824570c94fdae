"""The server's allocator setting: freed tile-sized buffers leave the process's RSS."""

import subprocess
import sys
from pathlib import Path

import pytest

from server.memory import tune_allocator

ROOT = Path(__file__).resolve().parents[2]
# Eight threads allocate and free a dozen buffers of ~600 KB forty times (tile buffers of
# rendering threads), each round leaving a small survivor, as a tile server's threads do.
PATTERN = """
import sys, threading
from server.memory import tune_allocator
tune_allocator(int(sys.argv[1]))
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
start, keep, lock = rss(), [], threading.Lock()
def work(seed):
    for i in range(40):
        big = [bytearray(600_000 + 1000 * ((seed + i + k) % 50)) for k in range(12)]
        with lock:
            keep.append(bytearray(64))
        del big
threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(rss() - start)
"""


def _retained(threshold: int) -> int:
    done = subprocess.run([sys.executable, "-c", PATTERN, str(threshold)], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_returned_with_a_fixed_threshold() -> None:
    default, tuned = _retained(0), _retained(128 * 1024)
    assert default >= 8 * 2**20, default  # glibc's rising threshold keeps them on the heaps
    assert tuned < 2 * 2**20, tuned


def test_zero_leaves_the_allocator_alone() -> None:
    assert tune_allocator(0) is False
