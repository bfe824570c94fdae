"""What makes a file a picture, told by its first bytes (no imaging library loaded).

A JPEG starts ``FF D8 FF``; a HEIC/HEIF picture is an ISO base media file whose first box is
``ftyp`` with a HEIF image brand as its major brand (the test pillow-heif's opener applies, so
what we call a HEIC is what it opens). A file's name never decides.
"""

from pathlib import Path

JPEG_MAGIC = b"\xff\xd8\xff"
# HEIF still-image brands (ISO/IEC 23008-12): HEVC-coded (heic, heix, heim, heis, hevc, hevx)
# and the generic image brand mif1. AVIF (major brand avif) is not one: no AVIF decoder here.
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1"})
# format -> (media type of the original, file extension of the stored original)
FORMATS = {"jpeg": ("image/jpeg", "jpg"), "heic": ("image/heic", "heic")}


def format_of(head: bytes) -> str | None:
    """``jpeg``, ``heic`` or None (not a picture) from a file's first 12 bytes or more."""
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "heic"
    return None


def picture_format(path: Path) -> str | None:
    """The picture format of a file (see ``format_of``), or None."""
    with path.open("rb") as f:
        return format_of(f.read(12))


def is_picture(path: Path) -> bool:
    """Whether a file is a JPEG or HEIC picture (told by its first bytes, never by its name)."""
    return picture_format(path) is not None
