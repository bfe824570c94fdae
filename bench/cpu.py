"""CPU time of process trees, read from /proc (Linux): how a request's cost splits between the
server's processes, PostgreSQL's and the load generator's."""

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of a server's processes, of the cluster's PostgreSQL processes and of the
    side making the requests (this process, with the commands it ran when counted)."""

    server: float
    postgres: float
    client: float

    def minus(self, before: "Cpu") -> "Cpu":
        """What was spent since ``before``."""
        return Cpu(self.server - before.server, self.postgres - before.postgres,
                   self.client - before.client)  # fmt: skip


class CpuClock:
    """Reads a ``Cpu`` of one server (``server_pid``, its workers included) against one
    cluster (``postmaster_pid``); ``children``: the client counts the commands it ran."""

    def __init__(self, server_pid: int, postmaster_pid: int, children: bool = False) -> None:
        self.server, self.postmaster, self.children = [server_pid], [postmaster_pid], children

    def read(self) -> Cpu:
        """The CPU seconds so far."""
        return Cpu(tree_cpu(self.server), tree_cpu(self.postmaster), own_cpu(self.children))

    def since(self, before: Cpu) -> Cpu:
        """The CPU seconds spent since the reading ``before``."""
        return self.read().minus(before)
