"""PNG tiles come from libpng on zlib-ng (imagecodecs), not GDAL's PNG driver: same pixels.

Each case renders one image twice, through ``tiler.encoders.render`` and through titiler's
``render_image`` (GDAL's driver), and compares the decoded PNGs band by band.
"""

import warnings
from typing import Any

import attr
import numpy as np
import pytest
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rio_tiler.colormap import cmap
from rio_tiler.errors import InvalidFormat
from rio_tiler.models import ImageData
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

from tiler.encoders import PNG_LEVEL, render, renderer


def _image(bands: int, dtype: str, masked: bool = True, seed: int = 1) -> ImageData:
    rng = np.random.default_rng(seed)
    high = 255 if dtype == "uint8" else 4000
    data = rng.integers(0, high, (bands, 64, 64)).astype(dtype)
    mask = np.zeros(data.shape, bool)
    if masked:
        mask[:, :10] = True  # ten masked rows
    return ImageData(np.ma.MaskedArray(data, mask=mask))


def _copy(image: ImageData) -> ImageData:
    return attr.evolve(image, array=image.array.copy())


def _decode(content: bytes) -> tuple[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeferencing
        with MemoryFile(content) as memory, memory.open() as dataset:
            return dataset.driver, dataset.read()


CASES: dict[str, tuple[ImageData, dict[str, Any]]] = {
    "rgb with mask": (_image(3, "uint8"), {}),
    "grey with mask": (_image(1, "uint8"), {}),
    "16-bit grey": (_image(1, "uint16"), {}),
    "16-bit rgb": (_image(3, "uint16"), {}),
    "no mask band": (_image(3, "uint8"), {"add_mask": False}),
    "colormap": (_image(1, "uint8"), {"colormap": cmap.get("viridis")}),
    "rescale": (_image(3, "uint16"), {"rescale": [(0, 4000)]}),
    "color formula": (_image(3, "uint8"), {"color_formula": "gamma rgb 1.5"}),
    "float stretched": (_image(1, "float32"), {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_png_pixels_are_gdals(case: str) -> None:
    image, options = CASES[case]
    ours, media_type = render(_copy(image), output_format=ImageType.png, **options)
    stock_options = dict(options)
    if case == "float stretched":  # render stretches float data between its valid extremes
        valid = image.array.compressed()
        stock_options["rescale"] = [(float(valid.min()), float(valid.max()))]
    stock, _ = render_image(_copy(image), output_format=ImageType.png, **stock_options)
    assert media_type == "image/png"
    assert ours[:8] == b"\x89PNG\r\n\x1a\n"
    driver, pixels = _decode(ours)
    _, expected = _decode(stock)
    assert driver == "PNG"
    assert pixels.dtype == expected.dtype and pixels.shape == expected.shape
    assert np.array_equal(pixels, expected)


def test_the_caller_image_is_left_as_it_was() -> None:
    image = _image(3, "uint16")
    before = image.array.copy()
    render(image, output_format=ImageType.png, rescale=[(0, 4000)])
    assert image.array.dtype == before.dtype
    assert np.array_equal(image.array.data, before.data)


def test_automatic_format_is_png_only_where_pixels_are_masked() -> None:
    content, media_type = render(_image(3, "uint8", masked=True))
    assert media_type == "image/png" and _decode(content)[0] == "PNG"
    assert _decode(content)[1].shape[0] == 4
    content, media_type = render(_image(3, "uint8", masked=False))
    assert media_type == "image/jpeg" and _decode(content)[0] == "JPEG"


def test_arrays_libpng_cannot_hold_fail_as_titilers_png_does() -> None:
    """Four bands and a mask are five: titiler's own encoder reports it (a 400 in routes)."""
    image = _image(4, "uint8")
    with pytest.raises(InvalidFormat) as stock:
        render_image(_copy(image), output_format=ImageType.png)
    with pytest.raises(InvalidFormat) as ours:
        render(_copy(image), output_format=ImageType.png)
    assert str(ours.value) == str(stock.value)


def test_png_level_trades_bytes_for_time_with_the_same_pixels() -> None:
    """TilerSettings.png_level: lossless at every level, bigger files at lower levels."""
    y, x = np.mgrid[0:256, 0:256]
    rng = np.random.default_rng(5)
    smooth = ((x + y) // 2 + rng.integers(0, 8, (256, 256))) % 256  # an orthophoto is smooth
    image = ImageData(
        np.ma.MaskedArray(
            np.stack([smooth, smooth // 2, 255 - smooth]).astype("uint8"),
            mask=np.zeros((3, 256, 256), bool),
        )
    )
    sizes = {}
    decoded = []
    for level in (0, 1, PNG_LEVEL, 9):
        content, media_type = renderer(level)(_copy(image), output_format=ImageType.png)
        assert media_type == "image/png"
        assert content == render(_copy(image), output_format=ImageType.png, png_level=level)[0]
        sizes[level] = len(content)
        decoded.append(_decode(content)[1])
    assert sizes[0] > sizes[1] > sizes[PNG_LEVEL]  # 0: stored, not compressed
    assert sizes[0] > 3 * 256 * 256  # four bands, uncompressed
    for pixels in decoded[1:]:
        assert np.array_equal(pixels, decoded[0])
    assert np.array_equal(decoded[0][:3], image.data)
