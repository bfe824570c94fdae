"""What makes a file a picture, told by its first bytes (no imaging library loaded)."""

from pathlib import Path

JPEG_MAGIC = b"\xff\xd8\xff"


def is_picture(path: Path) -> bool:
    """Whether a file is a JPEG (told by its first bytes, never by its name)."""
    with path.open("rb") as f:
        return f.read(3) == JPEG_MAGIC
