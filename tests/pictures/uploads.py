"""Sending pictures through upload sets (TestClient) and waiting for their dispatch."""

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.catalog.vector_uploads import ensure_collection


def new_set(client: TestClient, admin: dict[str, str], collection_id: str, **options: Any) -> str:
    """A new upload set of pictures into ``collection_id`` (made if missing)."""
    ensure_collection(client, admin, collection_id)
    r = client.post("/upload_sets", json={"collection": collection_id, **options}, headers=admin)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def send(
    client: TestClient, admin: dict[str, str], set_id: str, name: str, data: bytes
) -> dict[str, Any]:
    """One file through multipart; its record."""
    r = client.post(f"/upload_sets/{set_id}/files", headers=admin, files={"file": (name, data)})
    assert r.status_code == 201, r.text
    return dict(r.json())


def ready(
    client: TestClient, admin: dict[str, str], set_id: str, timeout: float = 120
) -> dict[str, Any]:
    """Complete the set and wait until it is ready; the set document."""
    r = client.post(f"/upload_sets/{set_id}/complete", headers=admin)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + timeout
    while True:
        doc = dict(client.get(f"/upload_sets/{set_id}", headers=admin).json())
        if doc["ready"]:
            return doc
        assert time.monotonic() < deadline, f"set not ready: {doc['counts']}"
        time.sleep(0.1)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The set's files by file name."""
    return {f["filename"]: f for f in doc["files"]}


def items_of(client: TestClient, admin: dict[str, str], collection_id: str) -> list[Any]:
    """Every item of a collection (one page of 1000)."""
    r = client.get(f"/collections/{collection_id}/items?limit=1000", headers=admin)
    assert r.status_code == 200, r.text
    return list(r.json()["features"])
