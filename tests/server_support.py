"""For the server tests: a small real collection (packaged photos, plus region items cut from them), and
`cbir serve` started in its own process."""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from PIL import Image

from cbir.collection.catalog import Item
from cbir.collection.collection import Collection
from cbir.demo import edited_copy, packaged_photos
from cbir.io.images import load_image

START_TIMEOUT_S = 240  # `cbir serve` loads torch and the model before it answers
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


def without_token() -> dict[str, str]:
    """This process's environment less ``CBIR_TOKEN``: a server started with it is read-only."""
    return {key: value for key, value in os.environ.items() if key != "CBIR_TOKEN"}


@contextlib.contextmanager
def serving(collection: Path, environment: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`cbir serve` for ``collection`` in its own process on a free loopback port, until the block ends;
    yields (base URL, process) once it answers ``/info``."""
    port = free_port()
    command = [sys.executable, "-m", "cbir.cli", "serve", "--collection", str(collection), "--port", str(port)]
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a server that logs much never blocks on it
    process = subprocess.Popen(command, env=without_token() if environment is None else environment, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"cbir serve exited with {process.returncode}:\n{log.read()}")
            try:
                if httpx.get(f"{base}/info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"cbir serve did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
