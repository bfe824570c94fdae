"""Real OGC API - Features clients read a vector collection of a live server.

Debian's GDAL 3.6 (``ogrinfo``, ``ogr2ogr``: the OAPIF driver follows the ``next`` links) and
OWSLib (pages by ``offset``) read every feature once, with the counts PostGIS has; QGIS's OAPIF
provider (Debian ``python3-qgis``, system Python) lists and reads it when installed.
"""

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from owslib.ogcapi.features import Features

from tests.server.vector_fields import load, rows

from .conftest import Offline, StoringServer
from .test_features_clients import owslib_pages

COLLECTION = "vclients_parcels"
COUNT, PAGE = 183, 40  # five pages, the last one short
BIN = Path("/usr/bin")
OGR2OGR = shutil.which("ogr2ogr", path="/usr/bin") or "/usr/bin/ogr2ogr"
OGRINFO = shutil.which("ogrinfo", path="/usr/bin") or "/usr/bin/ogrinfo"
QGIS_CHECK = "import qgis.core"
needs_gdal = pytest.mark.skipif(
    not (BIN / "ogr2ogr").exists(), reason="Debian gdal-bin is not installed"
)
GDAL_ENV = {"PATH": "/usr/bin:/bin", "CPL_DEBUG": "ON", "GDAL_HTTP_TIMEOUT": "30"}


@pytest.fixture(scope="module")
def server(clients_server: StoringServer) -> StoringServer:
    """The shared live server, holding a vector collection of ``COUNT`` parcels."""
    load(clients_server.database_url, COLLECTION, count=COUNT)
    clients_server.wait_readable(COLLECTION)
    return clients_server


@needs_gdal
def test_ogrinfo_lists_the_layer_with_its_count_and_fields(server: StoringServer) -> None:
    run = subprocess.run(
        [OGRINFO, "-ro", "-so", f"OAPIF:{server.url}", COLLECTION],
        capture_output=True, text=True, timeout=120, env=GDAL_ENV,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert f"Feature Count: {COUNT}" in out, out
    assert "Extent: (2.000000, 48.500000) - (2.190000, 48.870000)" in out, out
    for field in ("crop: String", "plots: Integer", "area ha: Real", "organic: Integer(Boolean)"):
        assert field in out, out


@needs_gdal
def test_ogr2ogr_reads_every_feature_once_through_paging(
    server: StoringServer, tmp_path: Path
) -> None:
    out = tmp_path / "parcels.geojson"
    run = subprocess.run(
        [OGR2OGR, "-f", "GeoJSON", str(out), f"OAPIF:{server.url}", COLLECTION,
         "-oo", f"PAGE_SIZE={PAGE}"],
        capture_output=True, text=True, timeout=120, env=GDAL_ENV,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    fetched = [line for line in run.stderr.splitlines()
               if "Fetch(" in line and f"/collections/{COLLECTION}/items" in line]  # fmt: skip
    assert len(fetched) >= -(-COUNT // PAGE), fetched
    features = json.loads(out.read_text())["features"]
    assert len(features) == COUNT
    source = rows(COUNT)
    crops = Counter(f["properties"]["crop"] for f in features)
    assert crops == Counter(row[1] for row in source)
    assert sum(f["properties"]["plots"] for f in features) == sum(row[4] for row in source)
    assert {f["geometry"]["type"] for f in features} == {"Polygon"}


def test_owslib_reads_the_collection_its_queryables_and_pages(
    server: StoringServer, offline_network: Offline
) -> None:
    api = Features(server.url, timeout=30)
    listed = {c["id"]: c for c in api.collections()["collections"]}
    assert listed[COLLECTION]["itemType"] == "feature"
    assert api.collection(COLLECTION)["terracat:kind"] == "vector"
    queryables = api.collection_queryables(COLLECTION)["properties"]
    assert queryables["plots"]["type"] == "integer"
    sizes, seen, page = owslib_pages(api, COLLECTION, COUNT, PAGE)
    assert sizes == [PAGE] * (COUNT // PAGE) + [COUNT % PAGE]
    assert page["numberMatched"] == COUNT
    assert set(seen) == set(range(1, COUNT + 1)) and max(seen.values()) == 1
    wheat = api.collection_items(COLLECTION, limit=500, filter="CASEI(crop) = casei('wheat')")
    expected = sum(1 for row in rows(COUNT) if (row[1] or "").lower() == "wheat")
    assert wheat["numberReturned"] == wheat["numberMatched"] == expected


QGIS_SCRIPT = r"""
import json, sys
from qgis.core import QgsApplication, QgsVectorLayer
QgsApplication.setPrefixPath("/usr", True)  # where Debian puts the providers
app = QgsApplication([], False)
app.initQgis()
url, name = sys.argv[1], sys.argv[2]
layer = QgsVectorLayer(f"url='{url}' typename='{name}' pageSize='40'", name, "OAPIF")
result = {"valid": layer.isValid()}
if layer.isValid():
    features = list(layer.getFeatures())
    result["count"] = len(features)
    result["fields"] = [f.name() for f in layer.fields()]
    result["plots"] = sum(f["plots"] for f in features)
    result["crs"] = layer.crs().authid()
else:
    features = []
print(json.dumps(result), flush=True)
del layer, features  # a layer that outlives the application crashes its teardown
app.exitQgis()
"""


def _qgis() -> bool:
    env = {"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen"}
    check = subprocess.run(["/usr/bin/python3", "-c", QGIS_CHECK], capture_output=True,
                           timeout=60, env=env)  # fmt: skip
    return check.returncode == 0


def test_qgis_oapif_provider_reads_every_feature(server: StoringServer, tmp_path: Path) -> None:
    if not (BIN / "python3").exists() or not _qgis():
        pytest.skip("QGIS's Python bindings (Debian python3-qgis) are not installed")
    run = subprocess.run(
        ["/usr/bin/python3", "-c", QGIS_SCRIPT, server.url, COLLECTION],
        capture_output=True, text=True, timeout=180,
        env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path),
             "XDG_RUNTIME_DIR": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["valid"], run.stderr
    assert result["count"] == COUNT
    assert {"crop", "plots", "area ha"} <= set(result["fields"])
    assert result["plots"] == sum(row[4] for row in rows(COUNT))
    assert result["crs"] in ("OGC:CRS84", "EPSG:4326")
