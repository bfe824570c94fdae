"""numberMatched after bulk loads with autovacuum off: exact, or left out, never a stale guess."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.stac import counts
from tests.factories import collection, item

ITEMS = 3000


@pytest.fixture
def autovacuum_off(sync_engine: Engine) -> Iterator[None]:
    """No autoanalyze on ``items`` during the test, as on a server with autovacuum off."""
    with sync_engine.begin() as conn:
        conn.execute(text("ALTER TABLE items SET (autovacuum_enabled = off)"))
    yield
    with sync_engine.begin() as conn:
        conn.execute(text("ALTER TABLE items RESET (autovacuum_enabled)"))


def _matched(client: TestClient, path: str, **params: Any) -> Any:
    r = client.get(path, params={"limit": 1, **params})
    assert r.status_code == 200, r.text
    return r.json().get("numberMatched")


def _bulk(ids: range, method: str, cloud: float) -> dict[str, Any]:
    items = {f"i{n:05d}": item(f"i{n:05d}", lon=(n % 300) / 2 - 75, lat=(n // 300) - 40,
                               size=0.1, **{"eo:cloud_cover": cloud}) for n in ids}  # fmt: skip
    return {"items": items, "method": method}


def test_bulk_loads_and_reloads_through_the_api(
    client: TestClient, admin: dict[str, str], autovacuum_off: None
) -> None:
    assert client.post("/collections", json=collection("c1"), headers=admin).status_code == 201
    # Loaded, then loaded again (upserts): a dead row version per item that the planner
    # would count as a row (6000 and more) had nothing analysed the table.
    for method, cloud in (("insert", 1.0), ("upsert", 2.0)):
        for start in range(0, ITEMS, 1000):
            bulk = _bulk(range(start, start + 1000), method, cloud)
            r = client.post("/collections/c1/bulk_items", json=bulk, headers=admin)
            assert r.status_code == 200, r.text
    assert _matched(client, "/collections/c1/items") == ITEMS
    assert _matched(client, "/search") == ITEMS
    assert (
        _matched(client, "/search", collections="c1", datetime="2021-01-01T00:00:00Z/..") == ITEMS
    )


def load_behind_the_api(engine: Engine) -> None:
    """What a loader writing SQL does (pypgstac-like): rows in, analysed, then all rewritten
    twice with no ANALYZE after."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO items (collection_id, id, geometry, datetime, end_datetime, "
                "properties, content) "
                "SELECT 'c1', 'i' || g, ST_MakeEnvelope(g % 90, 0, g % 90 + 1, 1, 4326), "
                "'2024-01-01Z', '2024-01-01Z', jsonb_build_object('datetime', "
                "'2024-01-01T00:00:00Z'), '{}' FROM generate_series(1, :n) g"
            ),
            {"n": ITEMS},
        )
        conn.execute(text("ANALYZE items"))
    for _ in range(2):
        with engine.begin() as conn:
            conn.execute(text("UPDATE items SET properties = properties || '{\"x\": 1}'"))


def test_statistics_stale_after_a_load_behind_the_api(
    client: TestClient, admin: dict[str, str], autovacuum_off: None, sync_engine: Engine
) -> None:
    assert client.post("/collections", json=collection("c1"), headers=admin).status_code == 201
    load_behind_the_api(sync_engine)
    # The planner now expects about three times as many rows; the server counts instead.
    assert _matched(client, "/collections/c1/items") == ITEMS
    in_bbox = sum(1 for g in range(1, ITEMS + 1) if g % 90 <= 9)
    assert _matched(client, "/search", bbox="0,0,9.5,1") == in_bbox


def test_bulk_load_is_analysed_once_it_pauses(
    client: TestClient,
    admin: dict[str, str],
    autovacuum_off: None,
    sync_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bulk load's ANALYZE waits for its writes to pause (catalog.stac.counts.DeferredAnalyze)
    instead of running after every batch; it still runs, so estimates come back."""
    monkeypatch.setattr(counts, "ANALYZE_QUIET_S", 3.0)  # batches a slow machine sends apart
    assert client.post("/collections", json=collection("c1"), headers=admin).status_code == 201

    def analyses() -> int:
        with sync_engine.connect() as conn:
            found = conn.execute(
                text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'items'")
            ).scalar()
        return int(found or 0)

    before = analyses()
    for start in range(0, ITEMS, 1000):
        r = client.post("/collections/c1/bulk_items", json=_bulk(range(start, start + 1000),
                        "insert", 1.0), headers=admin)  # fmt: skip
        assert r.status_code == 200, r.text
    assert _matched(client, "/search") == ITEMS  # counted meanwhile
    deadline = time.monotonic() + 30
    while analyses() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    # One ANALYZE for the three batches (each would have run its own before).
    assert analyses() == before + 1
