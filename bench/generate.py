"""Deterministic synthetic STAC 1.1 items: N items over K collections, worldwide small footprints.

Item ``i`` depends only on (seed, i), so any slice can be made on its own and the same
N/K/seed always gives byte-identical output. Item ``i`` belongs to collection ``i % K`` (files
interleave collections, which is what concurrent loaders want).

    python -m bench.generate --items 10000 --collections 10 --out var/bench/items.ndjson
"""

import argparse
import math
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

STAC_VERSION = "1.1.0"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.2.0/schema.json",
]
START = datetime(2020, 1, 1, tzinfo=UTC)
END = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_SECONDS = int((END - START).total_seconds())

# (constellation, platforms, instruments, gsd choices)
MISSIONS = [
    ("sentinel-2", ["sentinel-2a", "sentinel-2b"], ["msi"], [10.0, 20.0, 60.0]),
    ("landsat", ["landsat-8", "landsat-9"], ["oli", "tirs"], [15.0, 30.0]),
    ("planetscope", ["ps2", "ps2.sd", "psb.sd"], ["ps"], [3.0, 3.7]),
    ("spot", ["spot-6", "spot-7"], ["naomi"], [1.5, 6.0]),
    ("pleiades", ["pleiades-1a", "pleiades-1b"], ["hires"], [0.5, 2.0]),
]


def collection_id(c: int) -> str:
    """Id of collection number ``c``."""
    return f"bench-{c:03d}"


def item_id(i: int, k: int) -> str:
    """Stable id of item number ``i`` (its collection is ``i % k``)."""
    return f"{collection_id(i % k)}-item-{i:08d}"


def mission(c: int) -> tuple[str, list[str], list[str], list[float]]:
    """Mission of collection ``c`` (collections cycle through the missions)."""
    return MISSIONS[c % len(MISSIONS)]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _footprint(rng: random.Random) -> tuple[list[list[float]], list[float]]:
    """A small, valid, slightly rotated quadrilateral (0.1-1 degree) that never crosses 180."""
    w = rng.uniform(0.1, 1.0)
    h = w * rng.uniform(0.6, 1.0)
    lat = rng.uniform(-75.0, 75.0)
    half_w = w / 2 + 0.1 * h + 0.01
    # Keep it inside [-180, 180] (some footprints touch the antimeridian but never cross it).
    lon = rng.uniform(-180.0 + half_w, 180.0 - half_w)
    skew = rng.uniform(-0.1, 0.1) * h
    corners = [
        (lon - w / 2 + skew, lat - h / 2),
        (lon + w / 2 + skew, lat - h / 2),
        (lon + w / 2 - skew, lat + h / 2),
        (lon - w / 2 - skew, lat + h / 2),
    ]
    ring = [[round(x, 6), round(y, 6)] for x, y in corners]
    ring.append(ring[0])
    xs = [p[0] for p in ring]
    ys = [p[1] for p in ring]
    return ring, [min(xs), min(ys), max(xs), max(ys)]


def make_item(i: int, k: int, seed: int) -> dict[str, Any]:
    """Item number ``i`` of a data set with ``k`` collections."""
    rng = random.Random(seed * 1_000_003 + i)
    c = i % k
    constellation, platforms, instruments, gsds = mission(c)
    ring, bbox = _footprint(rng)
    moment = START + timedelta(seconds=rng.randrange(SPAN_SECONDS))
    lon_center = (bbox[0] + bbox[2]) / 2
    zone = min(60, max(1, int(math.floor((lon_center + 180) / 6)) + 1))
    epsg = (32600 if bbox[1] + bbox[3] >= 0 else 32700) + zone
    # Skewed cloud cover: many clear scenes, a long tail of cloudy ones.
    cloud = round(min(100.0, rng.expovariate(1 / 25.0)), 2)
    item_ident = item_id(i, k)
    cid = collection_id(c)
    base = f"s3://terracat-bench/{cid}/{moment:%Y/%m/%d}/{item_ident}"
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": EXTENSIONS,
        "id": item_ident,
        "collection": cid,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": bbox,
        "properties": {
            "datetime": _iso(moment),
            "platform": rng.choice(platforms),
            "constellation": constellation,
            "instruments": instruments,
            "gsd": rng.choice(gsds),
            "eo:cloud_cover": cloud,
            "proj:epsg": epsg,
            "view:off_nadir": round(rng.uniform(0, 30), 2),
        },
        "assets": {
            "visual": {
                "href": f"{base}/visual.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "title": "True colour image",
                "roles": ["visual", "data"],
                "proj:shape": [10980, 10980],
                "eo:bands": [{"name": "red"}, {"name": "green"}, {"name": "blue"}],
            },
            "thumbnail": {
                "href": f"{base}/thumbnail.jpg",
                "type": "image/jpeg",
                "roles": ["thumbnail"],
            },
        },
        "links": [],
    }


def make_collection(c: int) -> dict[str, Any]:
    """Collection number ``c``."""
    constellation, platforms, instruments, gsds = mission(c)
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": collection_id(c),
        "title": f"Benchmark collection {c} ({constellation})",
        "description": f"Synthetic {constellation} scenes for the Terracat search benchmark.",
        "license": "CC-BY-4.0",
        "keywords": ["benchmark", constellation],
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[_iso(START), _iso(END)]]},
        },
        "summaries": {
            "platform": platforms,
            "constellation": [constellation],
            "instruments": instruments,
            "gsd": gsds,
            "eo:cloud_cover": {"minimum": 0, "maximum": 100},
        },
        "links": [],
    }


def iter_items(n: int, k: int, seed: int, start: int = 0) -> Iterator[dict[str, Any]]:
    """Items ``start`` .. ``n - 1`` in order."""
    for i in range(start, n):
        yield make_item(i, k, seed)


def write_ndjson(path: Path, n: int, k: int, seed: int) -> Path:
    """Write the items as newline-delimited JSON (atomically); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        chunk: list[bytes] = []
        for item in iter_items(n, k, seed):
            chunk.append(orjson.dumps(item))
            if len(chunk) >= 10_000:
                out.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            out.write(b"\n".join(chunk) + b"\n")
    tmp.replace(path)
    return path


def dataset(root: Path, n: int, k: int, seed: int) -> tuple[Path, Path]:
    """Items ndjson and collections ndjson for (n, k, seed), generated once and cached."""
    folder = root / f"n{n}-k{k}-s{seed}"
    items, collections = folder / "items.ndjson", folder / "collections.ndjson"
    if not items.exists():
        write_ndjson(items, n, k, seed)
    if not collections.exists():
        folder.mkdir(parents=True, exist_ok=True)
        collections.write_bytes(
            b"".join(orjson.dumps(make_collection(c)) + b"\n" for c in range(k))
        )
    return items, collections


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--collections", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="ndjson file (default: stdout)")
    args = parser.parse_args(argv)
    if args.out is None:
        for item in iter_items(args.items, args.collections, args.seed):
            sys.stdout.buffer.write(orjson.dumps(item) + b"\n")
    else:
        write_ndjson(args.out, args.items, args.collections, args.seed)


if __name__ == "__main__":
    main()
