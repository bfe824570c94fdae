"""Where published assets live. Local files now; the protocol leaves room for S3-compatible
storage (GDAL reads ``/vsis3/``).

Hrefs are ``file:///absolute/path`` URIs: a bare path in an asset href would be resolved
against the item's http self link by STAC clients.
"""

import errno
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

_PART = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,255}$")


class Storage(Protocol):
    """Asset storage: stage locally, publish atomically under a key, hand GDAL a path."""

    def temp_path(self, suffix: str) -> Path:
        """A fresh, not yet existing path on the same filesystem as the assets."""
        ...

    def publish(self, local: Path, key: str) -> str:
        """Move ``local`` to ``key`` durably and atomically; return its href."""
        ...

    def delete(self, key: str) -> None:
        """Remove one asset; a missing one is fine."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every asset under ``prefix`` (``collection/item``, say)."""
        ...

    def gdal_path(self, href: str) -> str:
        """What GDAL opens for an href this storage made; ValueError for any other href."""
        ...


def check_part(value: str, what: str = "key part") -> str:
    """One path segment of a key: at most 255 bytes, no '/', '\\', control character, '.', '..'."""
    if (
        not isinstance(value, str)
        or not _PART.match(value)
        or value in (".", "..")
        or len(value.encode()) > 255
    ):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def check_key(key: str) -> str:
    """A relative key of valid segments separated by '/'."""
    if not isinstance(key, str) or not key:
        raise ValueError("empty storage key")
    for part in key.split("/"):
        check_part(part)
    return key


def asset_key(collection_id: str, item_id: str, name: str) -> str:
    """The key of an item's asset: ``{collection}/{item}/{name}``."""
    return "/".join(
        (check_part(collection_id, "collection id"), check_part(item_id, "item id"),
         check_part(name, "asset name"))
    )  # fmt: skip


class LocalStorage:
    """Assets under ``data_dir/assets``, staging in ``data_dir/tmp`` (same filesystem)."""

    def __init__(self, data_dir: Path) -> None:
        base = Path(data_dir).absolute()
        self.root = (base / "assets").resolve()
        self.tmp = (base / "tmp").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def temp_path(self, suffix: str) -> Path:
        """A fresh, not yet existing path in the staging folder."""
        if suffix and not _PART.match(suffix):
            raise ValueError(f"invalid suffix: {suffix!r}")
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def path(self, key: str) -> Path:
        """The local path of a key (not checked for existence)."""
        return self.root / check_key(key)

    def _inside(self, path: Path) -> Path:
        # our folders are never symlinks; refuse to follow one out of the root
        if not path.parent.resolve().is_relative_to(self.root):
            raise ValueError(f"{path} leads outside the asset storage")
        return path

    def href(self, key: str) -> str:
        """The ``file://`` href of a key."""
        return self.path(key).as_uri()

    def publish(self, local: Path, key: str) -> str:
        """fsync ``local``, rename it onto ``key`` (replacing), fsync the folder; its href."""
        target = self.path(key)
        self._make_dirs(target.parent)
        self._inside(target)
        with open(local, "rb") as file:
            os.fsync(file.fileno())
        try:
            os.replace(local, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # staging on another filesystem: copy beside the target, then rename there
            beside = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
            try:
                shutil.copyfile(local, beside)
                with open(beside, "rb") as file:
                    os.fsync(file.fileno())
                os.replace(beside, target)
            finally:
                beside.unlink(missing_ok=True)
            local.unlink()
        _fsync_dir(target.parent)
        return target.as_uri()

    def delete(self, key: str) -> None:
        """Remove one asset; a missing one is fine."""
        target = self._inside(self.path(key))
        target.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def delete_prefix(self, prefix: str) -> None:
        """Remove the folder (or file) ``prefix`` and all under it; missing is fine."""
        target = self._inside(self.path(prefix.rstrip("/")))
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        else:
            return
        _fsync_dir(target.parent)

    def gdal_path(self, href: str) -> str:
        """The local path of an href under this storage; ValueError otherwise."""
        parts = urlsplit(href)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"not a file:// href of this storage: {href!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"unexpected query or fragment in {href!r}")
        path = Path(unquote(parts.path))
        if not path.is_absolute() or ".." in path.parts or any(
            ord(c) < 32 or c == "\x7f" for c in str(path)
        ):  # fmt: skip
            raise ValueError(f"not a plain absolute path: {href!r}")
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise ValueError(f"href outside the asset storage: {href!r}")
        return str(resolved)

    def _make_dirs(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            created.mkdir(exist_ok=True)
            _fsync_dir(created.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
