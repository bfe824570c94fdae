"""The world of the rights tests of the maps (test_rights_maps.py, test_rights_exports.py).

Two collections: ``maps`` (public) with the ``rgb`` item of tests/tiler/conftest.py, and
``secret`` (private) with ``hidden``, a newer one-colour raster half over ``rgb`` and half
beside it. Callers: anonymous, ``stranger`` (an account without a grant), ``reader`` (a
``read`` grant on ``secret``), ``writer`` (a ``write`` grant) and the bootstrap admin.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rasterio.transform import from_origin

from catalog.accounts.repository import AccountRepository
from server.settings import Settings
from tests import rasters
from tests.conftest import ADMIN
from tests.factories import collection
from tests.tiler.conftest import TMS, MakeItem, add_collection, ingest_item

SECRET = "secret"
HIDDEN_COLOUR = (200, 30, 120)
WEB = "WebMercatorQuad"


@dataclass
class World:
    """The two collections, the callers' headers and the tile the two items share."""

    client: TestClient
    callers: dict[str, dict[str, str]]
    tile: tuple[int, int, int]
    accounts: AccountRepository

    def get(self, path: str, caller: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.callers[caller])

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run an async repository method on the app's loop."""
        return self.client.portal.call(function, *args)  # type: ignore[union-attr]


def hidden_tif(folder: Path) -> Path:
    """3-band uint8 in one colour, 5.12 km square, shifted 2.56 km east of ``utm_rgb_tif``."""
    x0, y0 = rasters.UTM_ORIGIN

    def fill(count: int, height: int, width: int) -> np.ndarray:
        return np.stack([np.full((height, width), v, "uint8") for v in HIDDEN_COLOUR])

    return rasters.write_geotiff(
        folder / "hidden.tif", width=512, height=512, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(x0 + 2560, y0, 10, 10), photometric="RGB", fill=fill,
    )  # fmt: skip


@pytest.fixture
def world(client: TestClient, settings: Settings, make_item: MakeItem, tmp_path: Path) -> World:
    """Public ``maps/rgb``, private ``secret/hidden``, and tokens of two accounts."""
    public = make_item(rasters.utm_rgb_tif(tmp_path), "rgb")
    add_collection(client, collection(SECRET))
    later = datetime(2024, 6, 1, tzinfo=UTC)
    ingest_item(client, settings, hidden_tif(tmp_path), "hidden", SECRET, later)
    accounts: AccountRepository = client.app.state.accounts  # type: ignore[attr-defined]
    portal = client.portal
    assert portal is not None
    callers: dict[str, dict[str, str]] = {"anonymous": {}, "admin": dict(ADMIN)}
    for name, right in (("stranger", None), ("reader", "read"), ("writer", "write")):
        account = portal.call(accounts.create_account, name)
        issued = portal.call(accounts.create_token, account["id"])
        callers[name] = {"Authorization": f"Bearer {issued.token}"}
        if right is not None:
            portal.call(accounts.grant, SECRET, "account", str(account["id"]), right)
    portal.call(accounts.set_visibility, SECRET, "private")
    west, south, east, north = public["bbox"]
    tile = TMS.tile((west + east) / 2, (south + north) / 2, 11)
    return World(client, callers, (tile.z, tile.x, tile.y), accounts)
