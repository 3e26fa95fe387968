"""Thumbnails and sizes of the files behind items."""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from PIL import Image

from cbir.io.images import load_image

# EXIF orientations that turn the picture by a quarter: width and height swap.
QUARTER_TURN_ORIENTATIONS = {5, 6, 7, 8}


def render_thumbnail(data: bytes, size: int) -> bytes:
    """JPEG bytes of the upright picture in ``data`` with its long side at most ``size``."""
    image = load_image(data, min_side=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=84, optimize=True)
    return buffer.getvalue()


class ThumbnailCache:
    """Thumbnails kept in memory, most recently used first, keyed by a file version's stamp and the size."""

    def __init__(self, max_items: int):
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._max_items = max_items
        self._guard = threading.Lock()

    def get(self, stamp: tuple, size: int, read: Callable[[], bytes]) -> bytes:
        """Thumbnail bytes of the file version ``stamp``, rendered from ``read()`` when not cached;
        raises ``ImageLoadError`` for files that are not pictures."""
        key = (stamp, size)
        with self._guard:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = render_thumbnail(read(), size)
        with self._guard:
            self._items[key] = data
            while len(self._items) > self._max_items:
                self._items.popitem(last=False)
        return data


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
