"""Thumbnails and sizes of the files behind items."""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

from PIL import Image

from cbir.io.images import load_image

# EXIF orientations that turn the picture by a quarter: width and height swap.
QUARTER_TURN_ORIENTATIONS = {5, 6, 7, 8}


def render_thumbnail(path: str, stamp: tuple[int, int], size: int) -> bytes:
    """JPEG bytes of the upright picture at ``path`` with its long side at most ``size``.

    ``stamp`` (file size, mtime) is only part of the cache key: a changed file gets a new thumbnail.
    """
    image = load_image(path, min_side=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=84, optimize=True)
    return buffer.getvalue()


class ThumbnailCache:
    """Thumbnails kept in memory, most recently used first, keyed by file, its stamp and the size."""

    def __init__(self, max_items: int):
        self._render = functools.lru_cache(maxsize=max_items)(render_thumbnail)

    def get(self, path: Path, size: int) -> bytes:
        """Thumbnail bytes; raises ``ImageLoadError`` for files that are not pictures."""
        stat = path.stat()
        return self._render(str(path), (stat.st_size, stat.st_mtime_ns), size)


def upright_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the picture as shown (EXIF orientation applied), read from its header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(0x0112)
    except (OSError, SyntaxError, ValueError):
        return None
    return (height, width) if orientation in QUARTER_TURN_ORIENTATIONS else (width, height)
