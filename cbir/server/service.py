"""Thread-safe access to one collection for the server.

A ``Collection`` holds one SQLite connection, FAISS indexes that are
replaced when rebuilt, and lazily loaded state, so it is not safe to use from
many threads as it is. The service puts a readers/writer lock around it:
searches and look-ups share it, adding and removing items take it alone.
The encoder runs outside that lock (one forward pass at a time, each using
every core), so encoding a query never holds up other searches.

OpenMP thread counts are per calling thread, and torch and FAISS end up
sharing one OpenMP runtime, so each operation sets its own before running:
all cores for the CNN, ``settings.search_threads`` for a FAISS search.

When another process (``cbir index``) changes the collection, SQLite's
``data_version`` moves; the service then opens the collection afresh beside
the one in use and swaps it in, so searches see the new items without a
restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import faiss
import numpy as np
import torch
from filelock import Timeout
from PIL import Image

from cbir.collection.catalog import Item
from cbir.collection.collection import Collection, CollectionError, IndexReport, SearchResult
from cbir.encoders.encoder import Encoder
from cbir.server.errors import ApiError
from cbir.server.locks import ReadWriteLock
from cbir.server.settings import ServerSettings

UPLOADS_FOLDER = "uploads"
log = logging.getLogger("cbir.server")


@dataclass
class AddOutcome:
    """What adding one uploaded file did, and the items it now has."""

    report: IndexReport
    items: list[Item]


def _data_version(collection: Collection) -> int:
    """SQLite's counter of commits made by other connections to this database."""
    return collection.catalog.connection.execute("PRAGMA data_version").fetchone()[0]


def _delete_upload(file: Path) -> None:
    """Delete a stored upload and its folder once empty."""
    file.unlink(missing_ok=True)
    if file.parent.is_dir() and not any(file.parent.iterdir()):
        file.parent.rmdir()


def _ready(collection: Collection) -> Collection:
    """Load every space's index now, so that no search has to."""
    for space in collection.manifest.spaces:
        collection.index(space)
    return collection


class CollectionService:
    """The server's single way into its collection: safe for concurrent requests."""

    def __init__(self, path: str | Path, settings: ServerSettings | None = None):
        self.path = Path(path).resolve()
        self.settings = settings or ServerSettings()
        collection = Collection.open(self.path)
        self._data_version = _data_version(collection)
        self._collection = _ready(collection)
        self.encoder: Encoder = collection.encoder
        self._model_threads = torch.get_num_threads()
        self._lock = ReadWriteLock()
        self._encoding = threading.Lock()
        self._changing = threading.Lock()
        self._checked_at = time.monotonic()

    @property
    def uploads(self) -> Path:
        """Where uploaded images are kept: inside the collection folder."""
        return self.path / UPLOADS_FOLDER

    def close(self) -> None:
        with self._lock.write():
            self._collection.close()

    # reading -----------------------------------------------------------------
    def encode(self, image: Image.Image) -> np.ndarray:
        """The raw descriptor of a query picture."""
        with self._encoding:
            torch.set_num_threads(self._model_threads)
            return self.encoder.encode_images([image])[0]

    def search_vector(
        self, vector: np.ndarray, k: int, kinds: Sequence[str] | None = None, label: str | None = None, space: str | None = None
    ) -> list[SearchResult]:
        """Ranked items for one raw descriptor (in the collection's default space unless ``space`` is given)."""
        self.refresh_if_changed()
        faiss.omp_set_num_threads(self.settings.search_threads)
        with self._lock.read():
            return self._collection.search_vectors(vector[None], k, kinds, label, space)[0]

    def search_item(self, item_id: int, k: int, kinds: Sequence[str] | None = None, label: str | None = None) -> list[SearchResult]:
        """Ranked items for a stored item, compared within its own vector space."""
        self.refresh_if_changed()
        faiss.omp_set_num_threads(self.settings.search_threads)
        with self._lock.read():
            collection = self._collection
            space = collection.catalog.item_space(item_id)
            if space is None:
                raise ApiError(404, f"there is no item {item_id} in this collection")
            vector = collection.catalog.get_items([item_id], with_vectors=True)[item_id].vector
            return collection.search_vectors(vector[None], k, kinds, label, space)[0]

    def item(self, item_id: int) -> Item:
        """The catalog entry of an item; 404 when there is none."""
        self.refresh_if_changed()
        with self._lock.read():
            found = self._collection.catalog.get_items([item_id])
        if item_id not in found:
            raise ApiError(404, f"there is no item {item_id} in this collection")
        return found[item_id]

    def info(self) -> dict:
        """The collection's ``info()``: counts, encoder, spaces, size."""
        self.refresh_if_changed()
        with self._lock.read():
            return self._collection.info()

    # writing -----------------------------------------------------------------
    @contextlib.contextmanager
    def _changing_collection(self) -> Iterator[Collection]:
        """Exclusive use of the collection for a change, after the file lock other processes honour."""
        with self._changing:
            collection = self._collection
            try:
                collection.lock.acquire(timeout=self.settings.write_wait)
            except Timeout:
                raise ApiError(
                    503, "another process is writing to this collection (cbir index?); try again when it has finished",
                    {"Retry-After": "10"},
                ) from None
            try:
                with self._lock.write():
                    yield collection
            finally:
                collection.lock.release()

    def add_file(self, path: Path) -> AddOutcome:
        """Index one file of the collection's upload folder."""
        self.refresh_if_changed()
        with self._changing_collection() as collection:
            torch.set_num_threads(self._model_threads)
            try:
                report = collection.add([path])
            except CollectionError as error:
                raise ApiError(409, str(error)) from None
            if report.skipped:
                _delete_upload(path)
                raise ApiError(422, f"the image could not be indexed: {report.skipped[0][1]}")
            ids = collection.catalog.item_ids_with_uri(str(path.resolve()))
            items = list(collection.catalog.get_items(ids).values())
        return AddOutcome(report, items)

    def remove(self, item_id: int) -> Item:
        """Remove an item; an uploaded file no item uses any more is deleted with it."""
        self.refresh_if_changed()
        with self._changing_collection() as collection:
            found = collection.catalog.get_items([item_id])
            if item_id not in found:
                raise ApiError(404, f"there is no item {item_id} in this collection")
            collection.remove_items([item_id])
            item = found[item_id]
            file = Path(item.uri)
            if file.parent.parent == self.uploads and not collection.catalog.item_ids_with_uri(item.uri):
                _delete_upload(file)
        return item

    # following changes made by other processes --------------------------------
    def refresh_if_changed(self) -> bool:
        """Swap in a freshly opened collection when another process committed changes; returns whether it did.

        Checks at most every ``settings.refresh_interval`` seconds. The new
        collection is loaded while searches go on with the old one; a
        collection that cannot be reopened leaves the old one in use.
        """
        interval = self.settings.refresh_interval
        if interval is None or time.monotonic() - self._checked_at < interval:
            return False
        if not self._changing.acquire(blocking=False):
            return False
        try:
            self._checked_at = time.monotonic()
            with self._lock.read():
                unchanged = _data_version(self._collection) == self._data_version
            if unchanged:
                return False
            try:
                fresh = Collection.open(self.path)
                version = _data_version(fresh)
                _ready(fresh)
                encoder = fresh.encoder
            except (CollectionError, ValueError, OSError) as error:
                log.warning("went on with the collection as it was: reopening %s failed: %s", self.path, error)
                return False
            with self._lock.write():
                stale, self._collection = self._collection, fresh
                self._data_version, self.encoder = version, encoder
            stale.close()
            return True
        finally:
            self._changing.release()
