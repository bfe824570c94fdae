"""OGC API - Features clients page a collection of a few pages and read every item once.

Debian's ``ogr2ogr`` (GDAL 3.6, OAPIF driver: it follows the ``next`` links) converts a
collection to GeoJSON; OWSLib asks for pages by ``offset`` and ``limit`` and, as its users do,
adds the limit to the offset until a short page (issue 12, item 3). Many items share a
datetime, so a page order without a tie-breaker would repeat or skip some.
"""

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from owslib.ogcapi.features import Features

from tests.factories import collection, item

from .conftest import Offline, StoringServer

COLLECTION = "paging"
COUNT, PAGE = 237, 50  # five pages, the last one short
OGR2OGR = shutil.which("ogr2ogr") or "/usr/bin/ogr2ogr"


def _items() -> list[dict[str, Any]]:
    """``COUNT`` items over the whole world, in groups of 20 sharing one datetime."""
    return [
        item(f"p{i:03d}", lon=-179.0 + (i * 37) % 357, lat=-70.0 + (i * 13) % 139, size=0.5,
             when=f"2022-0{1 + i // 20 % 9}-15T10:00:00Z")
        for i in range(COUNT)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def server(clients_server: StoringServer) -> StoringServer:
    """The live server, holding ``COUNT`` items in one collection."""
    with httpx.Client(base_url=clients_server.url, headers=clients_server.auth, timeout=60) as http:
        r = http.post("/collections", json=collection(COLLECTION))
        assert r.status_code == 201, r.text
        body = {"items": {doc["id"]: doc for doc in _items()}, "method": "insert"}
        r = http.post(f"/collections/{COLLECTION}/bulk_items", json=body)
        assert r.status_code == 200, r.text
    return clients_server


def test_ogr2ogr_reads_every_item_once(server: StoringServer, tmp_path: Path) -> None:
    out = tmp_path / "items.geojson"
    run = subprocess.run(
        [OGR2OGR, "-f", "GeoJSON", str(out), f"OAPIF:{server.url}", COLLECTION,
         "-oo", f"PAGE_SIZE={PAGE}"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "CPL_DEBUG": "ON", "GDAL_HTTP_TIMEOUT": "30"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    fetched = {line.split("Fetch(", 1)[1] for line in run.stderr.splitlines()
               if "Fetch(" in line and f"/collections/{COLLECTION}/items" in line}  # fmt: skip
    assert len(fetched) == -(-COUNT // PAGE), sorted(fetched)  # one request a page, then none
    features = json.loads(out.read_text())["features"]
    ids = Counter(f["properties"]["id"] for f in features)
    assert sum(ids.values()) == COUNT
    assert set(ids) == {doc["id"] for doc in _items()}
    assert max(ids.values()) == 1


def owslib_pages(
    api: Features, collection: str, count: int, size: int
) -> tuple[list[int], Counter[Any], dict[str, Any]]:
    """Page sizes, ids seen (with how often) and the last page of an OWSLib walk by offset."""
    seen: Counter[Any] = Counter()
    sizes = []
    for offset in range(0, count + 2 * size, size):  # bounded: a server may ignore offset
        page = api.collection_items(collection, limit=size, offset=offset)
        sizes.append(len(page["features"]))
        seen.update(f["id"] for f in page["features"])
        if sizes[-1] < size:
            break
    return sizes, seen, page


def test_owslib_pages_by_offset_to_the_last_page(
    server: StoringServer, offline_network: Offline
) -> None:
    api = Features(server.url, timeout=30)
    sizes, seen, page = owslib_pages(api, COLLECTION, COUNT, PAGE)
    assert sizes == [PAGE] * (COUNT // PAGE) + [COUNT % PAGE]
    assert page["numberMatched"] == COUNT
    assert set(seen) == {doc["id"] for doc in _items()}
    assert max(seen.values()) == 1
