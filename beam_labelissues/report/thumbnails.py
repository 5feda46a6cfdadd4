"""Small thumbnails of local image files, embedded in the report as data URIs.

Only the most severe issues get one (``THUMBNAIL_ROWS``), only local files are
read (a plain path or ``file://``; remote URIs are never fetched), only PNG,
JPEG, GIF and WebP files are embedded (told by their first bytes, not their
names), and the page never holds more than ``THUMBNAIL_BUDGET_BYTES`` of them.
With Pillow installed each image is scaled down to ``THUMBNAIL_SIDE`` pixels;
without it, files up to ``RAW_IMAGE_MAX_BYTES`` are embedded as they are (the
page shows them small) and larger ones are left out.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Dict, Optional, Sequence

from beam_labelissues.example_uris import local_path

THUMBNAIL_ROWS = 200
THUMBNAIL_SIDE = 96
THUMBNAIL_BUDGET_BYTES = 4 << 20
RAW_IMAGE_MAX_BYTES = 48 << 10
_READ_MAX_BYTES = 64 << 20  # a larger "image" is not worth decoding for a thumbnail


def sniff_image_type(head: bytes) -> Optional[str]:
    """The MIME type of an image a browser shows, from its first bytes; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _scaled(data: bytes, side: int) -> Optional[tuple]:
    """(MIME type, bytes) of the image scaled to fit side x side with Pillow; None without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return None
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft("RGB", (side, side))  # decode at a reduced scale: fast for large photos
        image.thumbnail((side, side))
        out = io.BytesIO()
        if image.mode in ("RGB", "L") and image.format == "JPEG":
            image.save(out, format="JPEG", quality=80)
            return "image/jpeg", out.getvalue()
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            image = image.convert("RGBA")
        image.save(out, format="PNG", optimize=True)
        return "image/png", out.getvalue()


def thumbnail_data_uri(path: str, side: int = THUMBNAIL_SIDE) -> Optional[str]:
    """A data URI of a small version of the local image at ``path``, or None when it is not one."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > _READ_MAX_BYTES:
            return None
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    mime = sniff_image_type(data[:16])
    if mime is None:
        return None
    try:
        scaled = _scaled(data, side)
    except Exception:  # a truncated or hostile file: show no thumbnail rather than fail the report
        return None
    if scaled is None:
        if len(data) > RAW_IMAGE_MAX_BYTES:
            return None
        scaled = (mime, data)
    mime, data = scaled
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def thumbnails(uris: Sequence[Optional[str]], rows: int = THUMBNAIL_ROWS,
               budget: int = THUMBNAIL_BUDGET_BYTES) -> Dict[int, str]:
    """Row index -> thumbnail data URI, for the first ``rows`` URIs that name local images."""
    found: Dict[int, str] = {}
    spent = 0
    for row, uri in enumerate(uris[:rows]):
        path = None if uri is None else local_path(uri)
        if path is None:
            continue
        image = thumbnail_data_uri(path)
        if image is None:
            continue
        if spent + len(image) > budget:
            break
        found[row] = image
        spent += len(image)
    return found
