"""Accounts with tokens, and collections they own, made through the app's own repository."""

import base64
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient

from catalog.accounts.repository import AccountRepository

from .factories import collection


@dataclass(frozen=True)
class Person:
    """An account and the headers of a ``read write`` token of it."""

    id: UUID
    name: str
    headers: dict[str, str]


def accounts(client: TestClient) -> AccountRepository:
    """The app's account repository."""
    repo: AccountRepository = client.app.state.accounts
    return repo


def person(client: TestClient, name: str, quota_bytes: int | None = None) -> Person:
    """A new user account and a token of it."""
    repo = accounts(client)
    row = client.portal.call(partial(repo.create_account, name, quota_bytes=quota_bytes))
    issued = client.portal.call(repo.create_token, row["id"], "tests")
    return Person(row["id"], name, {"Authorization": f"Bearer {issued.token}"})


def owned_collection(
    client: TestClient, admin: dict[str, str], collection_id: str, owner: Person | None,
    visibility: str = "private",
) -> None:  # fmt: skip
    """A collection made by the admin, then given to ``owner`` with this visibility."""
    r = client.post("/collections", json=collection(collection_id), headers=admin)
    assert r.status_code == 201, r.text
    repo = accounts(client)
    client.portal.call(repo.set_owner, collection_id, owner.id if owner else None)
    client.portal.call(repo.set_visibility, collection_id, visibility)


def grant(client: TestClient, collection_id: str, who: Person, right: str) -> None:
    """Give ``who`` a right on a collection."""
    repo = accounts(client)
    client.portal.call(repo.grant, collection_id, "account", str(who.id), right)


def stored(folder: Path) -> list[Path]:
    """The files in ``folder`` (none when it was never made)."""
    return sorted(folder.iterdir()) if folder.is_dir() else []


def tus_metadata(**values: str) -> str:
    """An ``Upload-Metadata`` header."""
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def tus_create(
    client: TestClient, headers: dict[str, str], set_id: str, length: int, name: str = "a.tif"
) -> Any:
    """POST /uploads/ for a file of ``length`` bytes into an upload set."""
    return client.post("/uploads/", headers={
        **headers, "Tus-Resumable": "1.0.0", "Upload-Length": str(length),
        "Upload-Metadata": tus_metadata(filename=name, upload_set=set_id),
    })  # fmt: skip
