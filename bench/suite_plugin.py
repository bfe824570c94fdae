"""pytest plugin of ``bench.suite``: each test's CPU (from the run's cgroup) and wall time.

Copied into a folder of its own and loaded with ``-p terracat_suite_plugin``; writes
``cpu<TAB>wall<TAB>test id`` lines to the file named by ``TERRACAT_SUITE_OUT``. CPU is what
every process of the run used while the test's setup, call and teardown ran (0 without a
cgroup).
"""

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROWS: list[str] = []


def _cpu_s() -> float:
    group = os.environ.get("TERRACAT_SUITE_CGROUP")
    return int(Path(group, "cpuacct.usage").read_text()) / 1e9 if group else 0.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Measure one test, its fixtures' setup and teardown included."""
    cpu, wall = _cpu_s(), time.monotonic()
    yield
    ROWS.append(f"{_cpu_s() - cpu:.3f}\t{time.monotonic() - wall:.3f}\t{item.nodeid}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the rows where bench.suite reads them."""
    out = os.environ.get("TERRACAT_SUITE_OUT")
    if out:
        Path(out).write_text("".join(f"{row}\n" for row in ROWS))
