"""The folder behind the tus server: one upload is ``<id>`` (bytes so far) and ``<id>.info``.

Records are replaced atomically; a writer holds ``flock`` on the data file. Expiry and the
clean-up of half-made uploads live here too, so ``terracat worker`` can run them without routes.
"""

import dataclasses
import fcntl
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STRAY_GRACE_S = 3600.0  # a data or temp file without a record is only deleted when this old
ID = re.compile(r"[0-9a-f]{32}")


class TusError(Exception):
    """A refusal answered with our error body; hooks raise it to refuse an upload."""

    def __init__(
        self,
        code: str,
        status: int,
        description: str,
        headers: dict[str, str] | None = None,
        **detail: Any,
    ) -> None:
        super().__init__(description)
        self.code, self.status, self.description = code, status, description
        self.headers = dict(headers or {})
        self.detail = detail  # more members of the error body (a quota's used_bytes...)


@dataclass
class Info:
    """An upload's record: its declared length, metadata and lifetime."""

    length: int
    metadata: dict[str, str]
    created: float
    expires: float
    finished: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # what on_complete answered
    # The account that made it (its id as text; None: nobody's, or made by the bootstrap
    # admin): only its owner (or an admin) may see, resume or end it.
    owner: str | None = None


@dataclass
class Handle:
    """An upload opened by one request; ``fd`` holds the lock (None once finished)."""

    id: str
    info: Info
    fd: int | None
    offset: int

    def close(self) -> None:
        """Release the lock (and the file)."""
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None

    def writable_fd(self) -> int:
        """The locked data file of an unfinished upload."""
        if self.fd is None:
            raise RuntimeError(f"upload {self.id} is finished or closed: nothing may write to it")
        return self.fd


def not_found(upload_id: str) -> TusError:
    """The 404 of an unknown upload."""
    return TusError("upload.NotFound", 404, f"no upload {upload_id!r}")


def read_info(store: Path, upload_id: str) -> Info | None:
    """The upload's record, or None when it has none."""
    try:
        return Info(**json.loads((store / f"{upload_id}.info").read_bytes()))
    except FileNotFoundError:
        return None


def write_info(store: Path, upload_id: str, info: Info) -> None:
    """Replace the upload's record atomically (a reader sees the old or the new one)."""
    fd, tmp = tempfile.mkstemp(dir=store, prefix=f".{upload_id}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(dataclasses.asdict(info)).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, store / f"{upload_id}.info")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def lock(fd: int) -> bool:
    """Take the writer's lock without waiting; False when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def open_upload(store: Path, upload_id: str, now: float, *, expired_ok: bool = False) -> Handle:
    """Open and lock an upload, or return a finished one (fd None). Runs in a thread."""
    for _ in range(3):
        try:
            fd = os.open(store / upload_id, os.O_RDWR)
        except FileNotFoundError:
            info = read_info(store, upload_id)
            if info is None or not info.finished:
                raise not_found(upload_id) from None
            return Handle(upload_id, info, None, info.length)
        handle = _locked(store, upload_id, fd, now, expired_ok)
        if handle is not None:
            return handle
    raise TusError("upload.Locked", 423, "the upload is changing, try again")


def _locked(store: Path, upload_id: str, fd: int, now: float, expired_ok: bool) -> Handle | None:
    """Lock ``fd``; None if its file was moved away (finished, terminated) meanwhile."""
    keep = False
    try:
        if not lock(fd):
            raise TusError("upload.Locked", 423, "another request is writing to this upload")
        stat = os.fstat(fd)
        try:
            if os.stat(store / upload_id).st_ino != stat.st_ino:
                return None
        except FileNotFoundError:
            return None
        info = read_info(store, upload_id)
        if info is None:  # bytes without a record: a creation that died half-way
            raise not_found(upload_id)
        if info.expires <= now and not expired_ok:
            raise TusError("upload.Gone", 410, "this upload expired")
        keep = True
        return Handle(upload_id, info, fd, stat.st_size)
    finally:
        if not keep:
            os.close(fd)


def write_at(fd: int, offset: int, data: bytes, hasher: Any | None) -> None:
    """Write ``data`` at ``offset`` in full, feeding the checksum's hasher first."""
    if hasher is not None:
        hasher.update(data)  # hashlib releases the GIL on big buffers
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def truncate(fd: int, size: int) -> None:
    """Cut the data back to ``size`` bytes (a PATCH whose checksum failed), durably."""
    os.ftruncate(fd, size)
    os.fsync(fd)


def delete(store: Path, upload_id: str) -> None:
    """Remove the upload's record and bytes."""
    (store / f"{upload_id}.info").unlink(missing_ok=True)
    (store / upload_id).unlink(missing_ok=True)


def _expire_one(store: Path, upload_id: str, now: float) -> bool:
    try:
        info = read_info(store, upload_id)
    except (ValueError, TypeError):  # an unreadable record: dropped once it is old
        if (store / f"{upload_id}.info").stat().st_mtime + STRAY_GRACE_S >= now:
            return False
        delete(store, upload_id)
        return True
    if info is None or info.expires > now:
        return False
    try:
        handle = open_upload(store, upload_id, now, expired_ok=True)
    except TusError as exc:  # locked by a writer (kept), or its bytes are gone (a bare record)
        if exc.status == 404:
            (store / f"{upload_id}.info").unlink(missing_ok=True)
        return exc.status == 404
    try:
        if handle.info.expires > now:  # a PATCH extended it before we got the lock
            return False
        delete(store, upload_id)
    finally:
        handle.close()
    return True


def pending_bytes(store: Path, owner: str, now: float | None = None) -> int:
    """The declared ``Upload-Length`` of ``owner``'s uploads that are neither finished nor
    expired (a finished upload's bytes belong to its upload set's file from then on)."""
    now = time.time() if now is None else now
    if not store.is_dir():
        return 0
    total = 0
    for entry in os.scandir(store):
        name = entry.name
        if not (name.endswith(".info") and ID.fullmatch(name[:-5])):
            continue
        try:
            info = read_info(store, name[:-5])
        except (ValueError, TypeError):  # unreadable: the sweep drops it
            continue
        if info is not None and info.owner == owner and not info.finished and info.expires > now:
            total += info.length
    return total


def expire_uploads(store_dir: Path, now: float | None = None) -> int:
    """Delete expired uploads (data and record) and stray files; return how many uploads."""
    now = time.time() if now is None else now
    if not store_dir.is_dir():
        return 0
    count = 0
    for entry in os.scandir(store_dir):
        name = entry.name
        if name.endswith(".info") and ID.fullmatch(name[:-5]):
            count += _expire_one(store_dir, name[:-5], now)
        elif name.startswith(".") and name.endswith(".tmp"):
            if entry.stat().st_mtime + STRAY_GRACE_S < now:
                Path(entry.path).unlink(missing_ok=True)
        elif ID.fullmatch(name) and not (store_dir / f"{name}.info").exists():
            # Bytes without a record: a creation that died half-way.
            try:
                fd = os.open(entry.path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if lock(fd) and os.fstat(fd).st_mtime + STRAY_GRACE_S < now:
                    Path(entry.path).unlink(missing_ok=True)
            finally:
                os.close(fd)
    return count
