"""JPEG tiles come from libjpeg-turbo through imagecodecs, not GDAL's JPEG driver: same bytes.

Each case renders one image through ``tiler.encoders.render`` and through titiler's
``render_image`` (GDAL's driver, quality 85) and compares the files byte for byte.
"""

from typing import Any

import attr
import numpy as np
import pytest
from rio_tiler.colormap import cmap
from rio_tiler.models import ImageData
from rio_tiler.utils import render as rio_render
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

from tests.tiler.conftest import decode
from tiler.encoders import render


def _image(bands: int, dtype: str, seed: int = 3) -> ImageData:
    rng = np.random.default_rng(seed)
    high = 255 if dtype == "uint8" else 4000
    y, x = np.mgrid[0:256, 0:256]
    smooth = (x + y) % 256  # an orthophoto is smoother than noise: both kinds are in
    data = np.stack([(smooth + 40 * b) % high for b in range(bands)]).astype(dtype)
    data[:, :64] = rng.integers(0, high, (bands, 64, 256)).astype(dtype)
    mask = np.zeros(data.shape, bool)
    mask[:, 200:] = True  # masked rows: JPEG has no alpha, both leave them out
    return ImageData(np.ma.MaskedArray(data, mask=mask))


CASES: dict[str, tuple[ImageData, dict[str, Any]]] = {
    "rgb": (_image(3, "uint8"), {}),
    "grey": (_image(1, "uint8"), {}),
    "rescaled 16-bit": (_image(3, "uint16"), {"rescale": [(0, 4000)]}),
    "color formula": (_image(3, "uint8"), {"color_formula": "gamma rgb 1.5"}),
}


@pytest.mark.parametrize("output_format", [ImageType.jpeg, ImageType.jpg])
@pytest.mark.parametrize("case", list(CASES))
def test_jpeg_bytes_are_gdals(case: str, output_format: ImageType) -> None:
    image, options = CASES[case]
    ours, media_type = render(attr.evolve(image, array=image.array.copy()),
                              output_format=output_format, **options)  # fmt: skip
    stock, stock_type = render_image(attr.evolve(image, array=image.array.copy()),
                                     output_format=output_format, **options)  # fmt: skip
    assert ours[:3] == b"\xff\xd8\xff"
    assert media_type == stock_type
    assert ours == stock


def test_what_jpeg_cannot_hold_is_left_to_titiler() -> None:
    # a colormap makes RGBA pixels: titiler's JPEG (GDAL's driver) decides what to make of them
    image = _image(1, "uint8")
    colormap = cmap.get("viridis")
    stock, _ = render_image(attr.evolve(image, array=image.array.copy()),
                            output_format=ImageType.jpeg, colormap=colormap)  # fmt: skip
    ours, media_type = render(image, output_format=ImageType.jpeg, colormap=colormap)
    assert ours == stock and media_type == "image/jpeg"


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_quality_is_gdals_jpeg_at_that_quality(quality: int) -> None:
    """An export's quality: the bytes of GDAL's JPEG driver at that quality (rio-tiler's
    ``render``; titiler's own cannot change its 85)."""
    image, _ = CASES["rgb"]
    ours, media_type = render(attr.evolve(image, array=image.array.copy()),
                              output_format=ImageType.jpeg, quality=quality)  # fmt: skip
    stock = rio_render(image.data, img_format="JPEG", quality=quality)
    assert media_type == "image/jpeg" and ours == stock


def test_webp_quality_changes_the_bytes_and_75_is_titilers() -> None:
    image, _ = CASES["rgb"]

    def webp(**options: Any) -> bytes:
        copy = attr.evolve(image, array=image.array.copy())
        content, media_type = render(copy, output_format=ImageType.webp, **options)
        assert media_type == "image/webp"
        return content

    stock, _ = render_image(attr.evolve(image, array=image.array.copy()),
                            output_format=ImageType.webp)  # fmt: skip
    assert webp() == webp(quality=75) == stock  # titiler's WEBP profile: quality 75
    low, high = webp(quality=20), webp(quality=95)
    assert len(low) < len(stock) < len(high)
    for content in (low, high):
        assert decode(content).shape == (4, 256, 256)  # RGB and the mask, as titiler's
