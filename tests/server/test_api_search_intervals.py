"""Datetime interval searches sorted both ways give what a scan of every item gives.

Searches with an interval start bound ``datetime`` by the longest item span (migration 0006),
so the results must stay right for long spans, open intervals, instants, and a span longer than
all others written after them (by insert and by update).
"""

from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import collection, item

BASE = datetime(2021, 1, 1, tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _doc(item_id: str, start: datetime, days: float | None) -> dict[str, Any]:
    """An instant (``days`` None: no end_datetime) or a span of ``days``."""
    if days is None:
        return item(item_id, when=_stamp(start))
    end = _stamp(start + timedelta(days=days))
    return item(item_id, when=None, start_datetime=_stamp(start), end_datetime=end)


def _span(doc: dict[str, Any]) -> tuple[datetime, datetime]:
    props = doc["properties"]
    start = datetime.fromisoformat(props["datetime"] or props["start_datetime"])
    end = datetime.fromisoformat(props.get("end_datetime") or props["datetime"])
    return start, end


@pytest.fixture
def stored(client: TestClient, admin: dict[str, str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Instants every 5 days over 2021 and spans of 1 to 90 days in "a"; "b" gets a few spans,
    then a 6-year span longer than all others."""
    docs: dict[str, tuple[str, dict[str, Any]]] = {}
    for cid in ("a", "b"):
        assert client.post("/collections", json=collection(cid), headers=admin).status_code == 201
    for n in range(73):
        docs[f"i{n:02d}"] = ("a", _doc(f"i{n:02d}", BASE + timedelta(days=5 * n, hours=n), None))
    for n, days in enumerate([1, 3, 10, 30, 45, 90]):
        docs[f"s{n}"] = ("a", _doc(f"s{n}", BASE + timedelta(days=40 * n + 2), days))
    for n, days in enumerate([2, 7, 20]):
        docs[f"b{n}"] = ("b", _doc(f"b{n}", BASE + timedelta(days=60 * n + 11), days))
    for item_id, (cid, doc) in docs.items():
        r = client.post(f"/collections/{cid}/items", json=doc, headers=admin)
        assert r.status_code == 201, (item_id, r.text)
    # Written last: starts long before every interval below and ends inside 2021.
    docs["long"] = ("b", _doc("long", datetime(2015, 3, 1, tzinfo=UTC), 6 * 365 + 200))
    r = client.post("/collections/b/items", json=docs["long"][1], headers=admin)
    assert r.status_code == 201, r.text
    return docs


def _expected(
    docs: dict[str, tuple[str, dict[str, Any]]], interval: str, descending: bool, cids: list[str]
) -> list[str]:
    low, _, high = interval.partition("/") if "/" in interval else (interval, "", interval)
    a = None if low in ("", "..") else datetime.fromisoformat(low)
    b = None if high in ("", "..") else datetime.fromisoformat(high)
    hits = []
    for item_id, (cid, doc) in docs.items():
        start, end = _span(doc)
        if cid in cids and (b is None or start <= b) and (a is None or end >= a):
            hits.append((start, item_id, cid))
    return [h[1] for h in sorted(hits, reverse=descending)]


INTERVALS = [
    "2021-03-01T00:00:00Z/2021-06-30T00:00:00Z",
    "2021-07-20T00:00:00Z/2021-07-21T00:00:00Z",  # inside spans only
    "2021-06-01T00:00:00Z/..",
    "../2021-02-15T00:00:00Z",
    "2021-06-01T06:00:00Z",  # an instant on an instant item (i30)
    "2021-04-20T12:00:00Z",  # an instant inside spans
    "2021-09-15T00:00:00Z/2022-06-01T00:00:00Z",  # the long span's last moment (2021-09-15)
    "2021-09-15T00:00:01Z/2022-06-01T00:00:00Z",  # just after it
    "2030-01-01T00:00:00Z/..",  # nothing
]


def test_interval_searches_match_a_full_scan_both_ways(
    client: TestClient, stored: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    for interval, sign, cids in product(INTERVALS, "+-", (["a", "b"], ["b"])):
        params = {"datetime": interval, "sortby": f"{sign}properties.datetime", "limit": 200}
        if cids == ["b"]:
            params["collections"] = "b"
        r = client.get("/search", params=params)
        assert r.status_code == 200, r.text
        got = [f["id"] for f in r.json()["features"]]
        assert got == _expected(stored, interval, sign == "-", cids), (interval, sign, cids)


def test_paging_an_ascending_interval_search(
    client: TestClient, stored: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    interval = "2021-04-01T00:00:00Z/2021-10-01T00:00:00Z"
    first = client.post(
        "/search",
        json={"datetime": interval, "sortby": [{"field": "datetime", "direction": "asc"}],
              "limit": 7},
    )  # fmt: skip
    pages, body = [], first.json()
    while True:
        pages.append([f["id"] for f in body["features"]])
        link = next((lk for lk in body["links"] if lk["rel"] == "next"), None)
        if link is None:
            break
        body = client.post(link["href"], json=link["body"]).json()
    assert [i for page in pages for i in page] == _expected(stored, interval, False, ["a", "b"])
    assert first.json()["numberMatched"] == len(_expected(stored, interval, False, ["a", "b"]))


def test_an_item_made_longer_by_update_is_found(
    client: TestClient, admin: dict[str, str], stored: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    # "a" spans at most 90 days; b0 moves there and becomes a 3-year span ending in 2021.
    longer = _doc("s0", datetime(2018, 6, 1, tzinfo=UTC), 3 * 365 + 60)
    r = client.put("/collections/a/items/s0", json={**longer, "collection": "a"}, headers=admin)
    assert r.status_code in (200, 204), r.text
    stored["s0"] = ("a", longer)
    interval = "2021-07-01T00:00:00Z/2021-07-10T00:00:00Z"
    r = client.get(
        "/search", params={"datetime": interval, "collections": "a", "sortby": "+datetime"}
    )
    got = [f["id"] for f in r.json()["features"]]
    assert "s0" in got
    assert got == _expected(stored, interval, False, ["a"])[:10]


def test_a_span_of_millennia_leaves_interval_searches_in_range(
    client: TestClient, admin: dict[str, str]
) -> None:
    # start - longest span would fall before 4713 BC, PostgreSQL's first instant: the bound
    # stops there instead of failing every interval search of the catalogue.
    assert client.post("/collections", json=collection("ages"), headers=admin).status_code == 201
    ages = item("ages", when=None, start_datetime="0001-01-01T00:00:00Z",
                end_datetime="9999-12-31T00:00:00Z")  # fmt: skip
    near = item("near", when="2021-06-01T00:00:00Z")
    for doc in (ages, near):
        assert client.post("/collections/ages/items", json=doc, headers=admin).status_code == 201
    for sign in "+-":
        r = client.get("/search", params={"datetime": "2021-01-01T00:00:00Z/2021-12-31T00:00:00Z",
                                          "sortby": f"{sign}properties.datetime"})  # fmt: skip
        assert r.status_code == 200, r.text
        ids = [f["id"] for f in r.json()["features"]]
        assert ids == (["ages", "near"] if sign == "+" else ["near", "ages"])
