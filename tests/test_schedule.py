"""The order test modules are queued in (tests/schedule.py): longest first, whole modules."""

from types import SimpleNamespace
from typing import Any

from tests.schedule import DURATIONS, longest_first, module_durations


def _items(*nodeids: str) -> list[Any]:
    return [SimpleNamespace(nodeid=n) for n in nodeids]


def test_modules_go_longest_first_and_keep_their_tests_in_order() -> None:
    items = _items("a.py::t1", "a.py::t2", "b.py::t1", "c.py::t1", "c.py::t2", "d.py::t1")
    durations = {"a.py": 1.0, "b.py": 30.0, "c.py": 5.0}  # d.py unknown: the median, 5.0
    ordered = [i.nodeid for i in longest_first(items, durations)]
    assert ordered == ["b.py::t1", "c.py::t1", "c.py::t2", "d.py::t1", "a.py::t1", "a.py::t2"]


def test_without_durations_modules_keep_the_order_they_were_collected_in() -> None:
    items = _items("a.py::t1", "b.py::t1", "a.py::t2")
    assert [i.nodeid for i in longest_first(items, {})] == ["a.py::t1", "a.py::t2", "b.py::t1"]


def test_the_committed_durations_name_test_modules_that_exist() -> None:
    durations = module_durations()
    assert len(durations) > 100  # written by a whole run, not by a few modules
    root = DURATIONS.parent.parent
    missing = [m for m in durations if not (root / m).is_file()]
    # a renamed or removed module only makes the run less even, but says the file is stale
    assert len(missing) <= len(durations) // 10, missing
    assert all(seconds >= 0 for seconds in durations.values())
