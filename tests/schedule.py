"""The order test modules start in, longest first (hooks imported by tests/conftest.py).

``make test`` gives whole modules to its test processes (``--dist loadfile``). pytest-xdist
queues them by their number of tests, so the modules of few long tests (the fuzzer, the real
browser, servers and workers started as processes) came last and the run ended on one or two
of them while the other processes had nothing left: the last few per cent of the tests took
minutes. Queued longest first (``--no-loadscope-reorder`` keeps this order), the short modules
fill in at the end instead.

How long a module takes comes from ``tests/durations.json`` (seconds: setup, call and teardown
of its tests, summed), written by a whole run with ``TERRACAT_TEST_DURATIONS=write``. A module
missing from it (a new one) counts as the median module. No test's outcome depends on the
order; a stale file only makes the run less even.
"""

import json
import os
import statistics
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")
_WRITE = os.environ.get("TERRACAT_TEST_DURATIONS") == "write"
_spent: dict[str, float] = {}


def module_durations() -> dict[str, float]:
    """Seconds per module path (``tests/...py``) of the last run that wrote them."""
    try:
        found = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in found.items()} if isinstance(found, dict) else {}


def longest_first(items: list[pytest.Item], durations: dict[str, float]) -> list[pytest.Item]:
    """``items`` with whole modules ordered by their duration, longest first; the tests of a
    module keep their order, and modules of equal duration the order they were collected in."""
    default = statistics.median(durations.values()) if durations else 0.0
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        first.setdefault(item.nodeid.split("::")[0], index)

    def key(pair: tuple[int, pytest.Item]) -> tuple[float, int, int]:
        module = pair[1].nodeid.split("::")[0]
        return (-durations.get(module, default), first[module], pair[0])

    return [item for _, item in sorted(enumerate(items), key=key)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules longest first (see the module docstring)."""
    items[:] = longest_first(items, module_durations())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each module's time (in the process that prints the results)."""
    if _WRITE:
        module = report.nodeid.split("::")[0]
        _spent[module] = _spent.get(module, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write ``tests/durations.json`` after a whole run asked to (not in xdist's workers)."""
    if _WRITE and _spent and not hasattr(session.config, "workerinput"):
        rounded = {module: round(s, 1) for module, s in sorted(_spent.items())}
        DURATIONS.write_text(json.dumps(rounded, indent=1) + "\n")
