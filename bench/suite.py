"""The test suite's own cost: CPU and wall time of ``make test`` (or ``.ci/run``), per test too.

    python -m bench.suite                     # make test in this checkout
    python -m bench.suite --clone REV         # .ci/run on a fresh clone of REV, as CI runs it
    python -m bench.suite --clone A --clone B # both, one after the other: compare the ratios

Two CPU figures per run. ``rusage``: user + sys of the command and the descendants it waited
for (what ``time make test`` says). ``cgroup``: every process the run started, counted by a
cpuacct cgroup made for it: also the PostgreSQL server (pg_ctl detaches it) and the job fork
servers with their children, which nobody waits for. The per-test list (setup, call and
teardown of each test, from the same cgroup) says where the CPU goes. Without a writable
cgroup v1 cpuacct hierarchy (needs root) only rusage is printed. Prints figures; asserts none.
"""

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPUACCT = Path("/sys/fs/cgroup/cpuacct")
PLUGIN = Path(__file__).with_name("suite_plugin.py")


def _cgroup(name: str) -> Path | None:
    """A new cpuacct cgroup, or None where there is none to make."""
    group = CPUACCT / name
    try:
        if group.exists():
            group.rmdir()
        group.mkdir()
    except OSError:
        return None
    return group


def _cpu_s(group: Path | None) -> float | None:
    return int((group / "cpuacct.usage").read_text()) / 1e9 if group else None


def measure(label: str, cwd: Path, command: list[str], top: int) -> dict[str, float | None]:
    """Run ``command`` in ``cwd`` inside its own cgroup; print and return its figures."""
    group = _cgroup(f"terracat-suite-{os.getpid()}-{label}")
    # The plugin alone on the path: a clone of another revision must import its own code.
    plugin_dir = Path(tempfile.mkdtemp(prefix="terracat-suite-"))
    shutil.copy(PLUGIN, plugin_dir / "terracat_suite_plugin.py")
    per_test = plugin_dir / "per-test.tsv"
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(plugin_dir),
           "TERRACAT_SUITE_CGROUP": str(group or ""), "TERRACAT_SUITE_OUT": str(per_test),
           "PYTEST_ADDOPTS": "-p terracat_suite_plugin -p no:cacheprovider"}  # fmt: skip

    def enter() -> None:  # in the child, before exec: everything it starts is counted
        if group:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, preexec_fn=enter, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rusage = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures = {"wall_s": wall, "rusage_cpu_s": rusage, "cgroup_cpu_s": _cpu_s(group)}
    print(f"{label}: exit {done.returncode}, wall {wall:.1f} s, rusage user+sys {rusage:.1f} s"
          + (f", cgroup {figures['cgroup_cpu_s']:.1f} s" if group else ""))  # fmt: skip
    lines = per_test.read_text().splitlines() if per_test.exists() else []
    rows = [line.split("\t") for line in lines]
    rows.sort(key=lambda row: -float(row[0]))
    for cpu, wall_t, test in rows[:top]:
        print(f"  {float(cpu):7.2f} s CPU {float(wall_t):7.2f} s wall  {test}")
    shutil.rmtree(plugin_dir, ignore_errors=True)
    if group:
        _remove(group)
    return figures


def _remove(group: Path, wait_s: float = 15.0) -> None:
    """Remove the cgroup once the run's last processes (a server shutting down) are gone."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            group.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                print(f"  (left {group}: processes of the run still in it)")
                return
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clone", action="append", default=[], metavar="REV",
                        help="measure .ci/run on a fresh clone of REV (repeatable)")  # fmt: skip
    parser.add_argument("--top", type=int, default=20, help="tests listed by CPU (default 20)")
    args = parser.parse_args()
    if not args.clone:
        measure("make-test", ROOT, ["make", "test"], args.top)
        return
    for rev in args.clone:
        with tempfile.TemporaryDirectory(prefix="terracat-suite-") as folder:
            clone = Path(folder) / "terracat"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            subprocess.run(["git", "checkout", "-q", rev], cwd=clone, check=True)
            measure(rev, clone, ["bash", ".ci/run"], args.top)


if __name__ == "__main__":
    main()
