"""``?preset=`` and band names in expressions: on item dicts, then on a real RGBN item."""

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rio_tiler.errors import InvalidExpression

from tests.tiler.conftest import PREFIX, centre_tile, decode, npy
from tiler.errors import PresetUnavailable
from tiler.presets import PRESETS, resolve_preset
from tiler.readers.stac import band_positions, translate_expression


def _asset(*common: str, stats: bool = True, dtype: str = "uint16") -> dict[str, Any]:
    bands = [{"name": f"b{i}", "common_name": c} for i, c in enumerate(common, 1)]
    raster = [
        {"data_type": dtype, "statistics": {"minimum": 10 * i, "maximum": 1000 + i}}
        if stats
        else {"data_type": dtype}
        for i in range(1, len(common) + 1)
    ]
    return {
        "href": "file:///x.tif",
        "type": "image/tiff; application=geotiff",
        "roles": ["data"],
        "eo:bands": bands,
        "raster:bands": raster,
    }


def _item(**assets: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": "it", "assets": assets}


RGBN = _item(data=_asset("red", "green", "blue", "nir"))


# -- unit ----------------------------------------------------------------------------------------
def test_ndvi_resolves_to_band_positions_rescale_and_colormap() -> None:
    resolved = resolve_preset(PRESETS["ndvi"], RGBN)
    assert resolved.expression == "(b4-b1)/(b4+b1)"
    assert resolved.rescale == [(-1.0, 1.0)]
    assert isinstance(resolved.colormap, dict) and len(resolved.colormap) == 256


def test_every_index_formula() -> None:
    item = _item(data=_asset("coastal", "blue", "green", "red", "rededge", "nir08", "swir16",
                             "swir22"))  # fmt: skip
    expected = {
        "ndvi": "(b6-b4)/(b6+b4)",
        "ndmi": "(b6-b7)/(b6+b7)",
        "ndre": "(b6-b5)/(b6+b5)",
        "gndvi": "(b6-b3)/(b6+b3)",
        "evi": "2.5*(b6-b4)/(b6+6*b4-7.5*b2+1)",
        "rgb": "b4;b3;b2",
        "cir": "b6;b4;b3",
        "agri": "b7;b6;b2",
        "swir": "b8;b6;b4",
    }
    assert set(expected) == set(PRESETS)
    for name, expression in expected.items():
        assert resolve_preset(PRESETS[name], item).expression == expression, name


def test_composites_rescale_each_band_from_its_statistics() -> None:
    resolved = resolve_preset(PRESETS["cir"], RGBN)
    assert resolved.expression == "b4;b1;b2"
    assert resolved.rescale == [(40.0, 1004.0), (10.0, 1001.0), (20.0, 1002.0)]
    assert resolved.colormap is None
    no_stats = _item(data=_asset("red", "green", "blue", stats=False, dtype="uint8"))
    assert resolve_preset(PRESETS["rgb"], no_stats).rescale == [(0.0, 255.0)] * 3


def test_missing_bands_are_named() -> None:
    with pytest.raises(PresetUnavailable) as err:
        resolve_preset(PRESETS["swir"], RGBN)
    assert err.value.code == "tiler.PresetUnavailable" and err.value.status == 400
    assert "swir22" in err.value.description and "nir" not in err.value.description.split("[")[1]


def test_bands_across_assets_and_ambiguity() -> None:
    item = _item(red=_asset("red"), nir=_asset("nir"), nir2=_asset("nir"))
    assert resolve_preset(PRESETS["ndvi"], item, ["nir", "red"]).expression == "(b1-b2)/(b1+b2)"
    with pytest.raises(PresetUnavailable, match="several bands"):
        resolve_preset(PRESETS["ndvi"], item, ["red", "nir", "nir2"])
    # no role "data" here, so without assets= nothing is read
    with pytest.raises(PresetUnavailable):
        resolve_preset(PRESETS["ndvi"], _item(visual=_asset("red", "nir") | {"roles": []}))


def test_expression_names_become_positions() -> None:
    positions = band_positions(RGBN, ["data"])
    assert positions == {"b1": [1], "red": [1], "b2": [2], "green": [2], "b3": [3],
                         "blue": [3], "b4": [4], "nir": [4]}  # fmt: skip
    assert translate_expression("(NIR-Red)/(nir+red);b2", positions) == "(b4-b1)/(b4+b1);b2"
    assert translate_expression("where(nir>red, 1, 0)", positions) == "where(b4>b1, 1, 0)"
    # bidx re-orders the stack: names follow, positional b<n> keep meaning position n
    selected = band_positions(RGBN, ["data"], indexes=[4, 1])
    assert translate_expression("nir-red+b1", selected) == "b1-b2+b1"
    two = band_positions(_item(a=_asset("red"), b=_asset("red")), ["a", "b"])
    with pytest.raises(InvalidExpression, match="ambiguous"):
        translate_expression("red*2", two)


# -- API -----------------------------------------------------------------------------------------
def _tile(client: TestClient, fmt: str, **params: Any) -> Any:
    z, x, y = centre_tile(client, "rgbn")
    return client.get(f"{PREFIX}/rgbn/tiles/WebMercatorQuad/{z}/{x}/{y}.{fmt}", params=params)


def test_ndvi_preset_equals_the_expression_in_common_names_and_in_positions(
    maps: TestClient,
) -> None:
    names = _tile(maps, "npy", expression="(nir-red)/(nir+red)")
    positions = _tile(maps, "npy", expression="(b4-b1)/(b4+b1)")
    assert names.status_code == positions.status_code == 200, names.text
    data, mask = npy(names.content)  # npy: the band, then the mask
    assert np.array_equal(npy(positions.content), np.stack([data, mask]))
    valid = data[mask > 0]
    assert valid.size and valid.min() >= -1 and valid.max() <= 1 and valid.std() > 0
    preset = _tile(maps, "png", preset="ndvi")
    explicit = _tile(maps, "png", expression="(nir-red)/(nir+red)", rescale="-1,1",
                     colormap_name="rdylgn")  # fmt: skip
    assert preset.status_code == explicit.status_code == 200, preset.text
    assert preset.content == explicit.content


def test_ndvi_png_is_colormapped(maps: TestClient) -> None:
    r = _tile(maps, "png", preset="ndvi")
    assert r.status_code == 200, r.text
    pixels = decode(r.content)
    assert pixels.shape == (4, 256, 256)  # RGBA from the colormap
    assert len(np.unique(pixels[:3].reshape(3, -1), axis=1).T) > 10
    other = decode(_tile(maps, "png", preset="ndvi", colormap_name="viridis").content)
    assert not np.array_equal(pixels, other)
    narrow = decode(_tile(maps, "png", preset="ndvi", rescale="0,0.2").content)
    assert not np.array_equal(pixels, narrow)


@pytest.mark.parametrize(("preset", "count"), [("evi", 4), ("gndvi", 4), ("rgb", 4), ("cir", 4)])
def test_available_presets_render(maps: TestClient, preset: str, count: int) -> None:
    r = _tile(maps, "png", preset=preset)
    assert r.status_code == 200, r.text
    pixels = decode(r.content)
    assert pixels.shape == (count, 256, 256) and pixels[:3].std() > 1


@pytest.mark.parametrize(
    ("preset", "missing"),
    [("ndmi", "swir16"), ("ndre", "rededge"), ("agri", "swir16"), ("swir", "swir22")],
)
def test_preset_missing_bands_is_400(maps: TestClient, preset: str, missing: str) -> None:
    r = _tile(maps, "png", preset=preset)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "tiler.PresetUnavailable" and missing in body["description"]


@pytest.mark.parametrize(
    ("params", "code"),
    [({"preset": "ndwi"}, "tiler.UnknownPreset"),
     ({"preset": "ndvi", "expression": "b1"}, "tiler.InvalidLayer"),
     ({"preset": "ndvi", "bidx": 1}, "tiler.InvalidLayer"),
     ({"preset": "rgb", "bands": "red"}, "tiler.InvalidLayer")],
)  # fmt: skip
def test_bad_preset_requests_are_400(maps: TestClient, params: dict[str, Any], code: str) -> None:
    r = _tile(maps, "png", **params)
    assert (r.status_code, r.json()["code"]) == (400, code), r.text


def test_presets_on_point_statistics_and_preview(
    maps: TestClient, maps_rgbn: dict[str, Any]
) -> None:
    lon = (maps_rgbn["bbox"][0] + maps_rgbn["bbox"][2]) / 2
    lat = (maps_rgbn["bbox"][1] + maps_rgbn["bbox"][3]) / 2
    raw = maps.get(f"{PREFIX}/rgbn/point/{lon},{lat}").json()["values"]
    red, nir = raw[0], raw[3]
    ndvi = maps.get(f"{PREFIX}/rgbn/point/{lon},{lat}", params={"preset": "ndvi"}).json()
    assert ndvi["values"] == [pytest.approx((nir - red) / (nir + red))]
    stats = maps.get(f"{PREFIX}/rgbn/statistics", params={"preset": "ndvi"}).json()
    assert len(stats) == 1 and -1 <= next(iter(stats.values()))["min"] <= 1
    r = maps.get(f"{PREFIX}/rgbn/preview.png", params={"preset": "cir", "max_size": 64})
    assert r.status_code == 200, r.text
    assert decode(r.content).shape == (4, 64, 64)


def test_bands_by_common_name(maps: TestClient) -> None:
    by_name = _tile(maps, "npy", bands=["nir", "red"])
    by_index = _tile(maps, "npy", bidx=[4, 1])
    assert by_name.status_code == by_index.status_code == 200, by_name.text
    assert np.array_equal(npy(by_name.content), npy(by_index.content))
