"""How ``terracat ingest`` shows the files' jobs between the upload and their result.

The upload set's files carry their job's status, progress and message (``job``, from the job
table). On a terminal every unfinished file has a bar updated in place (tqdm); elsewhere (a
log, a pipe) a line is written when a file's state or step changes or it gained ``STEP``
points, never once per poll. The result of each file goes to ``out`` either way.
"""

import sys
from dataclasses import dataclass
from typing import Any, TextIO

from tqdm import tqdm

FINAL_STATES = ("ready", "rejected", "duplicate")
STEP = 10  # percentage points between two lines of the same step (non-terminal output)
# What the worker writes as a job's message before the process reports a step of its own.
_GENERIC_MESSAGES = ("running",)
BAR = "{desc}: {percentage:3.0f} %|{bar:20}|"


@dataclass(frozen=True)
class FileState:
    """Where a file's job is: ``state`` (queued, retrying, running...), percent, step."""

    state: str
    percent: int | None
    message: str

    def line(self, filename: str) -> str:
        """One progress line of the file."""
        percent = "" if self.percent is None else f" {self.percent:>3} %"
        return f"{filename}: {self.state}{percent} {self.message}".rstrip()


def file_state(record: dict[str, Any]) -> FileState:
    """The state of an unfinished file of an upload set document."""
    job = record.get("job") or {}
    error = str((record.get("error") or {}).get("description") or "")
    if error.startswith("retrying"):  # a failed attempt, waiting for the next
        return FileState("retrying", None, error.removeprefix("retrying: "))
    message = str(job.get("message") or "")
    if message in _GENERIC_MESSAGES:
        message = ""
    status = job.get("status")
    if status in (None, "accepted"):  # no job yet (a server without ``job``) or not claimed
        return FileState("queued", None, message)
    return FileState(str(status), int(job.get("progress") or 0), message)


class JobProgress:
    """Shows nothing while files are processed (``--quiet``); prints each file's result."""

    def update(self, record: dict[str, Any]) -> None:
        """A poll saw this unfinished file."""

    def finish(self, record: dict[str, Any], line: str, out: TextIO) -> None:
        """The file finished: ``line`` says what it became."""
        print(line, file=out, flush=True)

    def close(self) -> None:
        """Nothing more will be shown."""


class LineProgress(JobProgress):
    """A line per change of a file's state or step, or per ``STEP`` points gained."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.shown: dict[str, FileState] = {}

    def update(self, record: dict[str, Any]) -> None:
        """Write a line if the file moved on enough since its last one."""
        now = file_state(record)
        last = self.shown.get(record["id"])
        if last is not None and not _moved(last, now):
            return
        self.shown[record["id"]] = now
        print(now.line(record["filename"]), file=self.err, flush=True)


def _moved(last: FileState, now: FileState) -> bool:
    if (last.state, last.message) != (now.state, now.message):
        return True
    return (now.percent or 0) - (last.percent or 0) >= STEP


class BarProgress(JobProgress):
    """A bar per unfinished file on the terminal, updated in place."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.bars: dict[str, tqdm[Any]] = {}

    def update(self, record: dict[str, Any]) -> None:
        """Move the file's bar (made on first sight) to its job's progress and step."""
        now = file_state(record)
        bar = self.bars.get(record["id"])
        if bar is None:
            bar = tqdm(total=100, desc=record["filename"], file=self.err, leave=False,
                       bar_format=BAR)  # fmt: skip
            self.bars[record["id"]] = bar
        bar.n = now.percent or 0
        # the state in the format itself: tqdm's postfix would start with ', '
        text = f"{now.state} {now.message}".rstrip().replace("{", "{{").replace("}", "}}")
        bar.bar_format = f"{BAR} {text}"
        bar.refresh()

    def finish(self, record: dict[str, Any], line: str, out: TextIO) -> None:
        """Take the file's bar away and print its result above the other bars."""
        bar = self.bars.pop(record["id"], None)
        if bar is not None:
            bar.close()
        tqdm.write(line, file=out)

    def close(self) -> None:
        """Take every bar away."""
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def job_progress(err: TextIO | None = None, quiet: bool = False) -> JobProgress:
    """Bars on a terminal, lines elsewhere (on ``err``, default stderr), nothing when ``quiet``."""
    err = err or sys.stderr
    if quiet:
        return JobProgress()
    return BarProgress(err) if err.isatty() else LineProgress(err)
