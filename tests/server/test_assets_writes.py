"""What clients may write in place of stored assets, and the pieces behind asset links.

Clients never send ``storage:`` or ``file:`` hrefs; an item they read and write back (its
assets shown as download URLs, signed or not, on any host) keeps the keys it had.
"""

import copy
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.accounts.signing import InvalidSignature, LinkSigner, SignatureExpired
from catalog.storage.local import LocalStorage
from catalog.storage.responses import (
    InvalidRange,
    RangeNotSatisfiable,
    content_disposition,
    parse_range,
)
from server.settings import Settings
from tests.factories import collection, item
from tests.stored import store_item

STORED = {
    "data": {"href": "storage:assets/c1/i1/i1.tif", "type": "image/tiff", "roles": ["data"]},
    "thumbnail": {"href": "storage:assets/c1/i1/thumbnail.png", "type": "image/png"},
    "remote": {"href": "https://example.com/remote.tif", "type": "image/tiff"},
}


def _stored_assets(engine: Engine, item_id: str = "i1") -> dict[str, Any]:
    with engine.connect() as conn:
        assets: dict[str, Any] = conn.execute(
            text("SELECT content -> 'assets' FROM items WHERE collection_id = 'c1' AND id = :i"),
            {"i": item_id},
        ).scalar_one()
    return assets


@pytest.fixture
def stored(client: TestClient, admin: dict[str, str], settings: Settings) -> dict[str, Any]:
    """Collection c1 (public) with item i1 as the ingest job stores it; the item as served."""
    assert client.post("/collections", json=collection("c1"), headers=admin).status_code == 201
    assert settings.db.url is not None
    store_item(settings.db.url, item("i1") | {"collection": "c1", "assets": STORED})
    doc: dict[str, Any] = client.get("/collections/c1/items/i1").json()
    return doc


def test_clients_may_not_write_stored_or_file_hrefs(
    client: TestClient, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    assert (
        stored["assets"]["data"]["href"] == "http://testserver/collections/c1/items/i1/assets/data"
    )
    assert stored["assets"]["remote"]["href"] == "https://example.com/remote.tif"
    for href in ("storage:assets/c1/i1/i1.tif", "STORAGE:assets/x", "file:///etc/passwd",
                 "file://localhost/srv/data/assets/c1/i2/i2.tif"):  # fmt: skip
        doc = item("i2") | {"assets": {"data": {"href": href}}}
        r = client.post("/collections/c1/items", json=doc, headers=admin)
        assert (r.status_code, r.json()["code"]) == (400, "stac.ReservedHref"), href
        r = client.put("/collections/c1/items/i1", json=doc | {"id": "i1"}, headers=admin)
        assert (r.status_code, r.json()["code"]) == (400, "stac.ReservedHref"), href
        r = client.patch("/collections/c1/items/i1", json={"assets": {"data": {"href": href}}},
                         headers=admin)  # fmt: skip
        assert (r.status_code, r.json()["code"]) == (400, "stac.ReservedHref"), href
    for href in ("storage:assets/c1/i1/i1.tif", "file:///etc/passwd"):  # collections alike
        doc = collection("c2", assets={"logo": {"href": href}})
        r = client.post("/collections", json=doc, headers=admin)
        assert (r.status_code, r.json()["code"]) == (400, "stac.ReservedHref"), href
        r = client.patch("/collections/c1", json={"assets": {"logo": {"href": href}}},
                         headers=admin)  # fmt: skip
        assert (r.status_code, r.json()["code"]) == (400, "stac.ReservedHref"), href
    bad = item("bad") | {"assets": {"a": {"href": "file:/x"}}}
    body = {"items": {"ok": item("ok"), "bad": bad}, "method": "insert"}
    r = client.post("/collections/c1/bulk_items", json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert [(e["id"], e["code"]) for e in r.json()["errors"]] == [("bad", "stac.ReservedHref")]


def test_an_item_written_back_keeps_its_stored_keys(
    client: TestClient, admin: dict[str, str], stored: dict[str, Any], sync_engine: Engine
) -> None:
    # any host, any signature: the URL names the asset, the key comes from the database
    again = copy.deepcopy(stored)
    again["assets"]["data"]["href"] = (
        "https://cdn.example.org/api/collections/c1/items/i1/assets/data?tc_exp=1&tc_sig=x"
    )
    again["properties"]["title"] = "renamed"
    r = client.put("/collections/c1/items/i1", json=again, headers=admin)
    assert r.status_code == 204, r.text
    assert _stored_assets(sync_engine) == STORED
    r = client.patch("/collections/c1/items/i1", json={"properties": {"title": "patched"}},
                     headers=admin)  # fmt: skip
    assert r.status_code == 204, r.text
    assert _stored_assets(sync_engine) == STORED
    # a URL of another asset name or another item is only a link
    swapped = copy.deepcopy(stored)
    swapped["assets"]["thumbnail"]["href"] = stored["assets"]["data"]["href"]
    swapped["assets"]["other"] = {"href": "http://x.example/collections/c1/items/i9/assets/data"}
    assert client.put("/collections/c1/items/i1", json=swapped, headers=admin).status_code == 204
    assets = _stored_assets(sync_engine)
    assert assets["data"] == STORED["data"]
    assert assets["thumbnail"]["href"] == stored["assets"]["data"]["href"]
    assert assets["other"]["href"] == "http://x.example/collections/c1/items/i9/assets/data"
    # a new item with its own (not stored) URL keeps it as a link, without a signature
    own = item("i3") | {
        "assets": {
            "data": {
                "href": "http://x.example/collections/c1/items/i3/assets/data?a=1&tc_sig=s&tc_exp=2"
            }
        }
    }
    assert client.post("/collections/c1/items", json=own, headers=admin).status_code == 201
    assert _stored_assets(sync_engine, "i3")["data"]["href"] == (
        "http://x.example/collections/c1/items/i3/assets/data?a=1")  # fmt: skip


def test_assets_that_are_not_stored_are_not_served(
    client: TestClient, stored: dict[str, Any]
) -> None:
    r = client.get("/collections/c1/items/i1/assets/remote")
    assert (r.status_code, r.json()["code"]) == (404, "asset.NotStored")
    r = client.get("/collections/c1/items/i1/assets/nothing")
    assert (r.status_code, r.json()["code"]) == (404, "asset.NotFound")
    r = client.get("/collections/c1/items/i1/assets/data")  # a key whose file is not there
    assert (r.status_code, r.json()["code"]) == (404, "asset.NotFound")
    r = client.get("/collections/c1/items/i9/assets/data")
    assert (r.status_code, r.json()["code"]) == (404, "catalog.NotFound")


# -- the pieces ----------------------------------------------------------------------------------
def test_signed_links_are_stable_within_a_window_and_expire() -> None:
    now = [360 * 2778 + 1.0]  # just past a window's start (windows of 360 s for an hour)
    signer = LinkSigner(b"0123456789abcdef", expiry_s=3600, clock=lambda: now[0])
    first = signer.query("collections/c/items/i/assets/a")
    now[0] += 200
    assert signer.query("collections/c/items/i/assets/a") == first  # the same URL for caches
    expires = signer.expiry()
    assert expires % signer.window_s == 0 and expires - now[0] >= 3600
    signature = signer.signature("collections/c/items/i/assets/a", expires)
    signer.verify("collections/c/items/i/assets/a", str(expires), signature)
    with pytest.raises(InvalidSignature):
        signer.verify("collections/c/items/i/assets/b", str(expires), signature)
    with pytest.raises(InvalidSignature):
        LinkSigner(b"another-secret-0123").verify(
            "collections/c/items/i/assets/a", str(expires), signature
        )
    now[0] = expires + 1
    with pytest.raises(SignatureExpired):
        signer.verify("collections/c/items/i/assets/a", str(expires), signature)


def test_range_headers() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    assert parse_range("bytes=5-", 100) == (5, 99)
    assert parse_range("bytes=0-1, 5-6", 100) is None  # several: the whole file
    for bad in ("bytes=abc", "items=0-9", "bytes=20-10", "0-9", "bytes=", "bytes=-", "bytes=1"):
        with pytest.raises(InvalidRange):
            parse_range(bad, 100)
    for past in ("bytes=100-", "bytes=-0", "bytes=200-300"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(past, 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


def test_content_disposition_cannot_inject_headers() -> None:
    assert content_disposition("scene.tif", False) == 'inline; filename="scene.tif"'
    value = content_disposition('a"b\r\nSet-Cookie: x=1;é.tif', True)
    assert "\r" not in value and "\n" not in value and value.startswith("attachment; ")
    assert "filename*=UTF-8''a%22b%0D%0ASet-Cookie%3A%20x%3D1%3B%C3%A9.tif" in value


class _LinkedStorage(LocalStorage):
    """A local folder that also has URLs of its own, as an object store does."""

    def presigned_url(self, key: str, expires_s: int, filename: str | None = None) -> str | None:
        return f"https://bucket.example/{key}?expires={expires_s}&name={filename}"


def test_a_storage_with_urls_of_its_own_is_answered_with_redirects(
    client: TestClient, stored: dict[str, Any], settings: Settings
) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    data = settings.ingest.data_dir / "assets" / "c1" / "i1"
    data.mkdir(parents=True)
    (data / "i1.tif").write_bytes(b"II*\x00" + bytes(100))
    assert client.get("/collections/c1/items/i1/assets/data").content[:4] == b"II*\x00"
    kept = state.storage, state.settings
    state.storage = _LinkedStorage(settings.ingest.data_dir)
    try:
        r = client.get("/collections/c1/items/i1/assets/data", follow_redirects=False)
        assert r.status_code == 200  # streamed unless the settings say redirect
        state.settings = SimpleNamespace(storage=SimpleNamespace(download="redirect"))
        r = client.get("/collections/c1/items/i1/assets/data", follow_redirects=False)
        assert r.status_code == 307
        assert r.headers["location"].startswith("https://bucket.example/assets/c1/i1/i1.tif?")
        r = client.get("/collections/c1/items/i1/assets/thumbnail", follow_redirects=False)
        assert (r.status_code, r.json()["code"]) == (404, "asset.NotFound")  # no file: no URL
    finally:
        state.storage, state.settings = kept
