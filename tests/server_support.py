"""A small real collection for the server tests: packaged photos, plus region items cut from them."""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import socket
import tempfile
from pathlib import Path

from PIL import Image

from cbir.collection.catalog import Item
from cbir.collection.collection import Collection
from cbir.demo import edited_copy, packaged_photos
from cbir.io.images import load_image

PHOTOS = ("cat", "coffee", "astronaut", "camera", "rocket", "motorcycle", "china", "flower", "grace_hopper", "coins")
# (photo, box in its pixels, labels): the regions a detector might have found.
REGIONS = (
    ("cat", (100, 20, 330, 250), ["cat", "face"]),
    ("astronaut", (150, 20, 330, 220), ["person", "face"]),
    ("coffee", (180, 60, 470, 330), ["cup"]),
)


@functools.lru_cache(maxsize=1)
def photos() -> dict[str, Image.Image]:
    """The packaged photos, read once."""
    return packaged_photos()


def build_collection(root: Path) -> Path:
    """A collection of the photos and regions at ``root/collection``; returns its path.

    The first call indexes; later calls in the same process copy that collection.
    """
    path = root / "collection"
    shutil.copytree(_template(), path)
    return path


@functools.lru_cache(maxsize=1)
def _template() -> Path:
    root = Path(tempfile.mkdtemp(prefix="cbir-server-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    images = root / "images"
    images.mkdir()
    for name in PHOTOS:
        photos()[name].save(images / f"{name}.jpg", quality=90)
    path = root / "collection"
    with Collection.create(path) as collection:
        collection.add([images])
        with collection.catalog.transaction():
            for name, box, labels in REGIONS:
                uri = str((images / f"{name}.jpg").resolve())
                vector = collection.encoder.encode_images([load_image(uri).crop(box)])[0]
                collection.catalog.insert_item(Item("region", uri, vector, box=box, labels=labels), collection.default_space, None)
    return path


def query_jpeg(name: str = "cat", seed: int = 3) -> bytes:
    """An edited copy (cropped, mirrored, re-lit) of a collection photo, as JPEG bytes."""
    buffer = io.BytesIO()
    edited_copy(photos()[name], seed).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def image_bytes(size: tuple[int, int], image_format: str = "PNG", colour=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, image_format)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
