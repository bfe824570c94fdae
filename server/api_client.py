"""The HTTP side the CLI's commands share, and ``terracat collections``.

The commands run on any machine: they speak HTTP to a Terracat server (never to its database).
A refusal raises ``ClientError`` carrying the server's status and error code.
"""

import sys
from dataclasses import dataclass
from typing import Any, TextIO

import httpx

STAC_VERSION = "1.1.0"


class ClientError(RuntimeError):
    """The server refused a step, or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def check(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON body of a successful answer; ClientError naming ``what`` and the server's code."""
    if response.status_code >= 400:
        code = None
        try:
            body = response.json()
            code = body.get("code") if isinstance(body, dict) else None
            reason = f"{code}: {body.get('description')}" if code else response.text[:500]
        except ValueError:
            reason = response.text[:500]
        raise ClientError(f"{what}: HTTP {response.status_code} {reason}",
                          response.status_code, code)  # fmt: skip
    return dict(response.json()) if response.content else {}


def client(server: str, token: str | None) -> httpx.Client:
    """An HTTP client on the API root ``server`` (with a trailing slash), with the token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.rstrip("/") + "/", headers=headers, timeout=60)


@dataclass(frozen=True)
class NewCollection:
    """What ``terracat collections create`` and ``terracat ingest --create`` set."""

    id: str
    title: str | None = None
    description: str | None = None
    license: str | None = None

    def document(self) -> dict[str, Any]:
        """A minimal valid STAC collection: the whole world, open in time, until items come."""
        return {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "id": self.id,
            "title": self.title or self.id,
            "description": self.description or f"Collection {self.id}",
            "license": self.license or "other",
            "extent": {
                "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [[None, None]]},
            },
            "links": [],
        }


def _exists(http: httpx.Client, collection_id: str) -> bool:
    response = http.get(f"collections/{collection_id}")
    if response.status_code == 404:
        return False
    check(response, f"reading collection {collection_id!r}")
    return True


def create_collection(http: httpx.Client, new: NewCollection, exist_ok: bool) -> str | None:
    """Create the collection; its URL, or None when it existed (ClientError unless
    ``exist_ok``: HTTP 409 ``catalog.Conflict``)."""
    if exist_ok and _exists(http, new.id):
        return None
    response = http.post("collections", json=new.document())
    if exist_ok and response.status_code == 409:  # made by someone else since we looked
        return None
    check(response, f"creating collection {new.id!r}")
    return str(response.headers.get("Location") or f"{http.base_url}collections/{new.id}")


def list_collections(http: httpx.Client) -> list[dict[str, Any]]:
    """Every collection, following the ``next`` links."""
    found: list[dict[str, Any]] = []
    url: str | None = "collections"
    while url is not None:
        page = check(http.get(url), "listing the collections")
        found += page.get("collections") or []
        url = next((link["href"] for link in page.get("links") or []
                    if link.get("rel") == "next"), None)  # fmt: skip
    return found


def delete_collection(http: httpx.Client, collection_id: str, missing_ok: bool) -> int | None:
    """Delete the collection and its items; how many items it had, None when it did not exist
    (ClientError with 404 ``catalog.NotFound`` unless ``missing_ok``: DELETE itself is
    idempotent and would not say)."""
    response = http.get(f"collections/{collection_id}/items", params={"limit": 1})
    if response.status_code == 404 and missing_ok:
        return None
    page = check(response, f"collection {collection_id!r}")
    check(http.delete(f"collections/{collection_id}"), f"deleting collection {collection_id!r}")
    return int(page.get("numberMatched") or 0)


def collections_command(
    action: str,
    http: httpx.Client,
    options: dict[str, Any],
    out: TextIO | None = None,
) -> int:
    """``terracat collections list|create|delete``; 0 on success (ClientError otherwise)."""
    out = out or sys.stdout
    if action == "list":
        rows = list_collections(http)
        width = max((len(str(c.get("id"))) for c in rows), default=0)
        for doc in rows:
            print(f"{doc.get('id')!s:<{width}}  {doc.get('title') or ''}".rstrip(), file=out)
        if not rows:
            print(f"no collection at {http.base_url}", file=sys.stderr)
        return 0
    collection_id = options["id"]
    if action == "create":
        new = NewCollection(collection_id, options.get("title"), options.get("description"),
                            options.get("license"))  # fmt: skip
        url = create_collection(http, new, options.get("exist_ok", False))
        print(f"created collection {collection_id}: {url}" if url else
              f"collection {collection_id} exists already", file=out)  # fmt: skip
        return 0
    count = delete_collection(http, collection_id, options.get("missing_ok", False))
    print(f"no collection {collection_id}" if count is None else
          f"deleted collection {collection_id} and its {count} item(s)", file=out)  # fmt: skip
    return 0
