"""The fixed, seeded query mix. Both servers get exactly the same requests."""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from .generate import END, START, collection_id, item_id, mission

PAGES = 5  # "paging 5 deep": the first page plus 5 `next` links = one operation of 6 requests


@dataclass(frozen=True)
class Request:
    """One HTTP request relative to the API root."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    expect: int | None = None  # exact number of features expected, else "at least one"


@dataclass
class QueryType:
    """A named query with its seeded variants; ``follow`` = number of next links to follow."""

    name: str
    description: str
    variants: list[Request] = field(default_factory=list)
    follow: int = 0


def _box(rng: random.Random, size: float) -> list[float]:
    west = rng.uniform(-180.0, 180.0 - size)
    south = rng.uniform(-60.0, 60.0 - size)
    return [round(west, 4), round(south, 4), round(west + size, 4), round(south + size, 4)]


def _bbox_param(box: list[float]) -> str:
    return ",".join(str(v) for v in box)


def _interval(rng: random.Random, days: int) -> str:
    total = (END - START).days - days
    start = START + timedelta(days=rng.randrange(total))
    end = start + timedelta(days=days)
    return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"


def _polygon(rng: random.Random, radius: float) -> dict[str, Any]:
    import math

    lon = rng.uniform(-170.0, 170.0)
    lat = rng.uniform(-60.0, 60.0)
    ring = []
    for j in range(7):
        angle = 2 * math.pi * j / 7
        r = radius * rng.uniform(0.6, 1.0)
        ring.append([round(lon + r * math.cos(angle), 4), round(lat + r * math.sin(angle), 4)])
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def _get(path: str, params: dict[str, Any], expect: int | None = None) -> Request:
    return Request("GET", f"{path}?{urlencode(params)}", None, expect)


@dataclass(frozen=True)
class _Data:
    """What the variants draw from: ``n`` items over ``k`` collections, their platforms.

    ``readable`` (0: all ``k``): the variants name only the first ``readable`` collections and
    their items, with the same random draws (bench.rights: what an account may read).
    """

    n: int
    k: int
    platforms: list[str]
    readable: int = 0

    def collection(self, rng: random.Random) -> str:
        """A random collection id."""
        return collection_id(rng.randrange(self.readable or self.k))

    def item(self, i: int) -> str:
        """Id of item ``i``, or of the item at or before it in a readable collection."""
        c = i % self.k
        if self.readable:
            i -= c - c % self.readable
        return item_id(i, self.k)


def _bbox(rng: random.Random, data: _Data) -> Request:
    return _get("search", {"bbox": _bbox_param(_box(rng, 10.0)), "limit": 10})


def _bbox_datetime(rng: random.Random, data: _Data) -> Request:
    bbox = _bbox_param(_box(rng, 20.0))
    return _get("search", {"bbox": bbox, "datetime": _interval(rng, 182), "limit": 10})


def _intersects(rng: random.Random, data: _Data) -> Request:
    return Request("POST", "search", {"intersects": _polygon(rng, 5.0), "limit": 10})


def _collections(rng: random.Random, data: _Data) -> Request:
    return _get("search", {"collections": data.collection(rng), "limit": 10})


def _cql2(rng: random.Random, data: _Data) -> Request:
    cql2 = {
        "op": "and",
        "args": [
            {"op": "<", "args": [{"property": "eo:cloud_cover"}, rng.choice([5, 10, 20])]},
            {"op": "=", "args": [{"property": "platform"}, rng.choice(data.platforms)]},
        ],
    }
    return Request("POST", "search", {"filter": cql2, "filter-lang": "cql2-json", "limit": 10})


def _sortby(rng: random.Random, data: _Data) -> Request:
    sign = rng.choice(["-", "+"])
    params = {"collections": data.collection(rng), "sortby": f"{sign}properties.eo:cloud_cover"}
    return _get("search", {**params, "limit": 10})


def _limit100(rng: random.Random, data: _Data) -> Request:
    return _get("search", {"bbox": _bbox_param(_box(rng, 30.0)), "limit": 100})


def _ids(rng: random.Random, data: _Data) -> Request:
    ids = sorted({data.item(rng.randrange(data.n)) for _ in range(5)})
    return _get("search", {"ids": ",".join(ids)}, expect=len(ids))


def _datetime_sorted(sign: str) -> Callable[[random.Random, _Data], Request]:
    def make(rng: random.Random, data: _Data) -> Request:
        params = {"sortby": f"{sign}properties.datetime", "datetime": _interval(rng, 365)}
        return _get("search", {**params, "limit": 10})

    return make


# name, description, next links to follow, variant maker; the order is the order of the rng draws
MIX: list[tuple[str, str, int, Callable[[random.Random, _Data], Request]]] = [
    ("bbox", "GET bbox 10x10 deg, limit 10", 0, _bbox),
    ("bbox+datetime", "GET bbox 20x20 deg + 6-month interval, limit 10", 0, _bbox_datetime),
    ("intersects", "POST intersects heptagon r~5 deg, limit 10", 0, _intersects),
    ("collections", "GET collections=<one>, limit 10", 0, _collections),
    ("cql2", "POST cql2-json eo:cloud_cover < x AND platform = p, limit 10", 0, _cql2),
    ("sortby", "GET collections=<one> sortby=+/-eo:cloud_cover, limit 10", 0, _sortby),
    ("limit100", "GET bbox 30x30 deg, limit 100", 0, _limit100),
    ("paging", f"GET collections=<one>, limit 10, then {PAGES} next links (chain)", PAGES,
     _collections),
    ("ids", "GET ids=<5 random existing ids>", 0, _ids),
    # Last, so the draws of the types above stay as they were.
    ("datetime+asc", "GET 1-year interval, sortby=+properties.datetime, limit 10", 0,
     _datetime_sorted("+")),
    ("datetime+desc", "GET 1-year interval, sortby=-properties.datetime, limit 10", 0,
     _datetime_sorted("-")),
]  # fmt: skip


def build(n: int, k: int, seed: int = 7, variants: int = 64, readable: int = 0) -> list[QueryType]:
    """Every query type of the mix, each with ``variants`` seeded parameter sets; with
    ``readable``, naming only the first ``readable`` collections and their items."""
    rng = random.Random(seed)
    named = readable or k
    data = _Data(n, k, sorted({p for c in range(named) for p in mission(c)[1]}), readable)
    mix = [(QueryType(name, what, follow=follow), make) for name, what, follow, make in MIX]
    for _ in range(variants):
        for query, make in mix:
            query.variants.append(make(rng, data))
    return [query for query, _ in mix]
