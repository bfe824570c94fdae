"""Pictures opened with Pillow; HEIC/HEIF through pillow-heif's opener, registered on first use.

pillow-heif loads libheif and its HEVC decoder: it is imported here, where pictures are read
(the ingest job's child), never by an API process (tests/test_startup_imports.py).
"""

import functools
from pathlib import Path

from PIL import Image


@functools.cache
def register_heif() -> None:
    """Let Pillow open HEIC/HEIF files (once per process): the primary image only, with its
    transforms (rotation, mirror, crop) applied as the HEIF rules say."""
    from pillow_heif import register_heif_opener

    # Embedded thumbnails, depth and auxiliary images are never read: not decoded at all.
    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def open_picture(path: Path) -> Image.Image:
    """Pillow's (lazy) image of a JPEG or HEIC picture."""
    register_heif()
    return Image.open(path)
