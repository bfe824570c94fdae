"""``terracat ingest``: upload files over tus (or register URLs), then follow their jobs.

Works against any Terracat server: it only speaks HTTP (the upload-set API and tus 1.0.0 via
tuspy, with a SHA-256 checksum on every chunk, so a corrupted chunk is sent again).
"""

import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
from tqdm import tqdm
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader.uploader import Uploader

CHUNK = 8 * 1024 * 1024


class Sha256Uploader(Uploader):
    """tuspy's uploader with SHA-256 chunk checksums (tuspy defaults to SHA-1)."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class IngestClientError(RuntimeError):
    """The server refused a step; the message says which and why."""


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            body = response.json()
            reason = f"{body.get('code')}: {body.get('description')}"
        except ValueError:
            reason = response.text[:500]
        raise IngestClientError(f"{what}: HTTP {response.status_code} {reason}")
    return dict(response.json()) if response.content else {}


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _upload(base: str, headers: dict[str, str], path: Path, set_id: str, quiet: bool) -> None:
    tus = tus_client.TusClient(base + "uploads/", headers=headers)
    with path.open("rb") as stream:
        _send(tus, stream, path.name, set_id, quiet)


def _send(tus: Any, stream: Any, name: str, set_id: str, quiet: bool) -> None:
    uploader = Sha256Uploader(
        file_stream=stream,
        client=tus,
        chunk_size=CHUNK,
        metadata={"filename": name, "upload_set": set_id},
        retries=5,
        retry_delay=2,
        upload_checksum=True,
    )
    size = uploader.get_file_size()  # type: ignore[no-untyped-call]  # tuspy is unannotated
    with tqdm(total=size, unit="B", unit_scale=True, desc=name, disable=quiet,
              file=sys.stderr) as bar:  # fmt: skip
        if size == 0:
            uploader.upload()
        while uploader.offset < size:
            before = uploader.offset
            uploader.upload_chunk()  # type: ignore[no-untyped-call]  # tuspy is unannotated
            bar.update(uploader.offset - before)


class IngestTimeout(IngestClientError):
    """The files were not all finished in time (is a worker running?)."""


def _follow(
    http: httpx.Client, set_url: str, out: TextIO, poll_s: float, timeout_s: float | None
) -> int:
    printed: set[str] = set()
    failed = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        upload_set = _check(http.get(set_url), "reading the upload set")
        for record in upload_set["files"]:
            if (
                record["status"] not in ("ready", "rejected", "duplicate")
                or record["id"] in printed
            ):
                continue
            printed.add(record["id"])
            if record["status"] == "ready":
                item = next(link["href"] for link in record["links"] if link["rel"] == "item")
                print(f"ready     {record['filename']}: {item}", file=out)
            else:
                failed += 1
                error = record.get("error") or {}
                print(f"{record['status']:<9} {record['filename']}: {error.get('code')} "
                      f"{error.get('description')}", file=out)  # fmt: skip
        if upload_set["ready"]:
            return 1 if failed else 0
        if deadline is not None and time.monotonic() > deadline:
            waiting = len(upload_set["files"]) - len(printed)
            raise IngestTimeout(
                f"{waiting} file(s) not finished after {timeout_s:.0f} s (is a worker running?); "
                f"follow them at {set_url}"
            )
        time.sleep(poll_s)


def ingest(
    sources: Sequence[str],
    collection: str,
    server: str,
    token: str | None,
    wait: bool = True,
    datetime: str | None = None,
    title: str | None = None,
    out: TextIO = sys.stdout,
    quiet: bool = False,
    poll_s: float = 1.0,
    timeout_s: float | None = 3600.0,
) -> int:
    """Upload ``sources`` into ``collection``; 0 when every file became an item, 1 if not.

    Network and server failures raise IngestClientError (the command exits 2), a wait
    longer than ``timeout_s`` raises IngestTimeout (exit 3).
    """
    try:
        return _ingest(sources, collection, server, token, wait, datetime, title, out, quiet,
                       poll_s, timeout_s)  # fmt: skip
    except (httpx.HTTPError, TusCommunicationError, OSError) as exc:
        raise IngestClientError(f"{type(exc).__name__}: {exc}") from exc


def _ingest(
    sources: Sequence[str],
    collection: str,
    server: str,
    token: str | None,
    wait: bool,
    datetime: str | None,
    title: str | None,
    out: TextIO,
    quiet: bool,
    poll_s: float,
    timeout_s: float | None,
) -> int:
    base = server.rstrip("/") + "/"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for source in sources:
        if not _is_url(source) and not Path(source).is_file():
            raise IngestClientError(f"{source}: no such file")
    with httpx.Client(headers=headers, timeout=60) as http:
        body: dict[str, Any] = {"collection": collection, "expected_files": len(sources)}
        if datetime:
            body["datetime"] = datetime
        if title:
            body["title"] = title
        upload_set = _check(http.post(base + "upload_sets", json=body), "creating the upload set")
        set_url = f"{base}upload_sets/{upload_set['id']}"
        print(f"upload set {set_url}", file=out)
        for source in sources:
            if _is_url(source):
                _check(http.post(set_url + "/files", json={"href": source}), source)
            else:
                _upload(base, headers, Path(source), upload_set["id"], quiet)
        _check(http.post(set_url + "/complete"), "completing the upload set")
        if not wait:
            return 0
        return _follow(http, set_url, out, poll_s, timeout_s)
