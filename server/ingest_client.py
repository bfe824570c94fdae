"""``terracat ingest``: upload files over tus (or register URLs), then follow their jobs.

Works against any Terracat server: it only speaks HTTP (the upload-set API and tus 1.0.0 via
tuspy, with a SHA-256 checksum on every chunk, so a corrupted chunk is sent again).
"""

import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
from tqdm import tqdm
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader.uploader import Uploader

from .api_client import ClientError, NewCollection, check, client, create_collection
from .progress import FINAL_STATES, JobProgress, job_progress

CHUNK = 8 * 1024 * 1024


class Sha256Uploader(Uploader):
    """tuspy's uploader with SHA-256 chunk checksums (tuspy defaults to SHA-1)."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _upload(http: httpx.Client, path: Path, set_id: str, quiet: bool) -> None:
    auth = {k: v for k, v in http.headers.items() if k.lower() == "authorization"}
    tus = tus_client.TusClient(f"{http.base_url}uploads/", headers=auth)
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


class IngestTimeout(ClientError):
    """The files were not all finished in time (is a worker running?)."""


def _final_line(record: dict[str, Any]) -> str:
    """What a finished file became: its item, or its error code and message."""
    if record["status"] == "ready":
        item = next(link["href"] for link in record["links"] if link["rel"] == "item")
        return f"ready     {record['filename']}: {item}"
    error = record.get("error") or {}
    why = f"{error.get('code')} {error.get('description')}"
    return f"{record['status']:<9} {record['filename']}: {why}"


def _follow(
    http: httpx.Client,
    set_url: str,
    out: TextIO,
    progress: JobProgress,
    poll_s: float,
    timeout_s: float | None,
) -> int:
    finished: set[str] = set()
    failed = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        upload_set = check(http.get(set_url), "reading the upload set")
        for record in upload_set["files"]:
            if record["id"] in finished:
                continue
            if record["status"] not in FINAL_STATES:
                progress.update(record)
                continue
            finished.add(record["id"])
            failed += record["status"] != "ready"
            progress.finish(record, _final_line(record), out)
        if upload_set["ready"]:
            progress.close()
            return 1 if failed else 0
        if deadline is not None and time.monotonic() > deadline:
            progress.close()
            waiting = len(upload_set["files"]) - len(finished)
            raise IngestTimeout(
                f"{waiting} file(s) not finished after {timeout_s:.0f} s (is a worker running?); "
                f"follow them at {set_url}"
            )
        time.sleep(poll_s)


@dataclass
class IngestOptions:
    """What ``terracat ingest`` was asked, besides the sources and the server."""

    collection: str
    wait: bool = True
    datetime: str | None = None
    title: str | None = None
    quiet: bool = False
    poll_s: float = 1.0
    timeout_s: float | None = 3600.0
    # the collection to create when it does not exist (``--create``), else None
    create: NewCollection | None = None


def ingest(
    sources: Sequence[str],
    server: str,
    token: str | None,
    options: IngestOptions,
    out: TextIO | None = None,
) -> int:
    """Upload ``sources`` into the collection; 0 when every file became an item, 1 if not.

    Network and server failures raise ClientError (the command exits 2), a wait longer than
    ``timeout_s`` raises IngestTimeout (exit 3).
    """
    try:
        return _ingest(sources, server, token, options, out or sys.stdout)
    except (httpx.HTTPError, TusCommunicationError, OSError) as exc:
        raise ClientError(f"{type(exc).__name__}: {exc}") from exc


def _open_set(http: httpx.Client, count: int, options: IngestOptions, out: TextIO) -> str:
    """Create the collection if asked and missing, then an upload set; the set's URL."""
    if options.create is not None:
        url = create_collection(http, options.create, exist_ok=True)
        if url is not None:
            print(f"created collection {options.collection}: {url}", file=out)
    body: dict[str, Any] = {"collection": options.collection, "expected_files": count}
    if options.datetime:
        body["datetime"] = options.datetime
    if options.title:
        body["title"] = options.title
    try:
        upload_set = check(http.post("upload_sets", json=body), "creating the upload set")
    except ClientError as exc:
        if exc.code == "catalog.NotFound" and options.create is None:
            raise ClientError(f"{exc} (--create makes it)", exc.status, exc.code) from exc
        raise
    return f"{http.base_url}upload_sets/{upload_set['id']}"


def _ingest(
    sources: Sequence[str], server: str, token: str | None, options: IngestOptions, out: TextIO
) -> int:
    for source in sources:
        if not _is_url(source) and not Path(source).is_file():
            raise ClientError(f"{source}: no such file")
    with client(server, token) as http:
        set_url = _open_set(http, len(sources), options, out)
        print(f"upload set {set_url}", file=out)
        for source in sources:
            if _is_url(source):
                check(http.post(set_url + "/files", json={"href": source}), source)
            else:
                _upload(http, Path(source), set_url.rsplit("/", 1)[1], options.quiet)
        check(http.post(set_url + "/complete"), "completing the upload set")
        if not options.wait:
            return 0
        progress = job_progress(quiet=options.quiet)
        return _follow(http, set_url, out, progress, options.poll_s, options.timeout_s)
