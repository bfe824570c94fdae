"""CPU time of process trees, read from /proc (Linux): how a request's cost splits between the
server's processes, PostgreSQL's and the load generator's."""

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and of its children it has reaped)."""
    out: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # Fields after the command name: state, ppid, ... utime (14), stime, cutime, cstime.
        fields = text[text.rindex(")") + 2 :].split()
        ticks = sum(int(f) for f in fields[11:15])
        out[int(entry.name)] = (int(fields[1]), ticks / _TICK)
    return out


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds used so far by the processes under ``roots``, the roots included (a process
    that ended counts once its parent has reaped it)."""
    stats = _stats()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (parent, _) in stats.items():
        children[parent].append(pid)
    seen: set[int] = set()
    todo, total = list(roots), 0.0
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children[pid])
    return total


def own_cpu(children: bool = False) -> float:
    """CPU seconds of this process so far; ``children``: with those of the child processes it
    has reaped (a loader run as a command)."""
    times = os.times()
    own = times.user + times.system
    return own + times.children_user + times.children_system if children else own
