"""Thread-safe access to one collection for the server.

A ``Collection`` holds one SQLite connection, FAISS indexes that are
replaced when rebuilt, and lazily loaded state, so it is not safe to use from
many threads as it is. The service puts a readers/writer lock around it:
searches and look-ups share it, adding and removing items take it alone.
The encoder runs outside that lock (the pictures of concurrent requests
batched together, a pass alone using every core, passes side by side sharing
them: ``cbir.server.batching``), so encoding a query never holds up other
searches. A search by item, a
fraction of a millisecond on most collections, may run on the event loop
itself (``search_item_now``) when it needs no waiting and searches are quick.

OpenMP thread counts are per calling thread, and torch and FAISS end up
sharing one OpenMP runtime, so each operation sets its own before running:
the CNN its share of the cores, ``settings.search_threads`` for a FAISS search.

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

from cbir.collection import integrity
from cbir.collection.catalog import Item
from cbir.collection.collection import Collection, CollectionError, IndexReport, SearchResult
from cbir.encoders.encoder import Encoder
from cbir.server.batching import EncodingQueue, QueueTimeout
from cbir.server.errors import ApiError
from cbir.server.filesafety import IndexedFiles
from cbir.server.locks import ReadWriteLock, held_within
from cbir.server.prepared import PreparedPipeline
from cbir.server.settings import ServerSettings
from cbir.server.uploads import Upload, store_upload

UPLOADS_FOLDER = integrity.UPLOADS_FOLDER
QUICK_SEARCH_S = 0.005  # searches by item run on the event loop while they take less processor time than this
BUSY = "the server is busy with other requests; try again in a few seconds"
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
        self._queries = EncodingQueue(self._run_network, self.settings.max_query_batch, self._model_threads, self._model_threads)
        self._decoding = threading.BoundedSemaphore(self.settings.max_decodes)
        self._writers = threading.BoundedSemaphore(self.settings.max_writers)
        self._changing = threading.Lock()
        self._checked_at = time.monotonic()
        self._search_seconds = 0.0  # processor time of the last searches by item (a moving average)
        self.files = IndexedFiles()
        self.read_only = collection.read_only
        if not self.read_only:
            self._remove_orphaned_uploads(collection)

    @property
    def uploads(self) -> Path:
        """Where uploaded images are kept: inside the collection folder."""
        return self.path / UPLOADS_FOLDER

    def close(self) -> None:
        self._queries.close()
        with self._lock.write():
            self._collection.close()

    # reading -----------------------------------------------------------------
    def decoding(self) -> contextlib.AbstractContextManager[None]:
        """A turn to decode an uploaded picture: at most ``settings.max_decodes`` at once, each waiting at
        most ``settings.request_wait`` seconds, so that decoding memory stays bounded."""
        return held_within(self._decoding, self.settings.request_wait, BUSY)

    def encode(self, image: Image.Image) -> np.ndarray:
        """The raw descriptor of a query picture (waiting at most ``settings.request_wait`` for the network);
        pictures of concurrent requests share forward passes (``cbir.server.batching``)."""
        try:
            return self._queries.encode(image, self.settings.request_wait)
        except QueueTimeout:
            raise ApiError(503, BUSY, {"Retry-After": "5"}) from None

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Raw descriptors of the pictures of one request (a query clip's frames), in one turn at the network."""
        with held_within(self._encoding, self.settings.request_wait, BUSY):
            return self._run_network(images, self._model_threads)

    def _run_network(self, images: Sequence[Image.Image], threads: int) -> np.ndarray:
        torch.set_num_threads(threads)
        return self.encoder.encode_images(list(images))

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
        with self._lock.read():
            return self._search_item(item_id, k, kinds, label)

    def search_item_now(self, item_id: int, k: int) -> list[SearchResult] | None:
        """An unfiltered ``search_item`` when it can run at once and briefly, as the event loop may: ``None`` when
        it would wait for a change or a refresh of the collection, or while such searches take over ``QUICK_SEARCH_S``."""
        if self._search_seconds > QUICK_SEARCH_S or self._refresh_due():
            return None
        held = self._lock.try_read()
        if held is None:
            return None
        with held:
            return self._search_item(item_id, k, None, None)

    def _search_item(self, item_id: int, k: int, kinds: Sequence[str] | None, label: str | None) -> list[SearchResult]:
        started = time.thread_time()  # the processor time it takes, which waiting for a core does not inflate
        faiss.omp_set_num_threads(self.settings.search_threads)
        collection = self._collection
        space = collection.catalog.item_space(item_id)
        if space is None:
            raise ApiError(404, f"there is no item {item_id} in this collection")
        vector = collection.catalog.get_items([item_id], with_vectors=True)[item_id].vector
        results = collection.search_vectors(vector[None], k, kinds, label, space)[0]
        if kinds is None and label is None:  # the searches search_item_now would run
            self._search_seconds += 0.2 * (time.thread_time() - started - self._search_seconds)
        return results

    def expected_hash(self, item: Item) -> str | None:
        """The content hash the item's file had when indexed (from a sibling item of the same file if needed)."""
        if item.content_hash is not None:
            return item.content_hash
        with self._lock.read():
            catalog = self._collection.catalog
            siblings = catalog.get_items(catalog.item_ids_with_uri(item.uri)).values()
        return next((sibling.content_hash for sibling in siblings if sibling.content_hash), None)

    def item(self, item_id: int) -> Item:
        """The catalog entry of an item; 404 when there is none."""
        self.refresh_if_changed()
        with self._lock.read():
            found = self._collection.catalog.get_items([item_id])
        if item_id not in found:
            raise ApiError(404, f"there is no item {item_id} in this collection")
        return found[item_id]

    @contextlib.contextmanager
    def reading(self) -> Iterator[Collection]:
        """The collection, to read from while no change runs (for routes added beside these)."""
        self.refresh_if_changed()
        with self._lock.read():
            yield self._collection

    def info(self) -> dict:
        """The collection's ``info()``: counts, encoder, spaces, size."""
        self.refresh_if_changed()
        with self._lock.read():
            return self._collection.info()

    # writing -----------------------------------------------------------------
    def _require_writable(self) -> None:
        if self.read_only:
            raise ApiError(403, f"the collection folder {self.path} is read-only here: it can be searched, not changed")

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """One of ``settings.max_writers`` places for changes; when all are taken, 503 at once, so that
        waiting writers never hold the threads searches need."""
        if not self._writers.acquire(blocking=False):
            raise ApiError(503, "other changes to the collection are in progress; try again in a few seconds", {"Retry-After": "5"})
        try:
            yield
        finally:
            self._writers.release()

    @contextlib.contextmanager
    def _changing_collection(self) -> Iterator[Collection]:
        """Exclusive use of the collection for a change, after the file lock other processes honour;
        the whole wait is at most ``settings.write_wait`` seconds."""
        deadline = time.monotonic() + self.settings.write_wait
        with held_within(self._changing, self.settings.write_wait, "another change to the collection is in progress; try again"):
            collection = self._collection
            try:
                collection.lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
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

    def add_upload(self, upload: Upload) -> AddOutcome:
        """Store an uploaded picture in the collection's upload folder and index it.

        The descriptor is computed before the collection is locked; the locked part only records it.
        """
        self._require_writable()
        self.refresh_if_changed()
        with self._writer_turn():
            path = store_upload(upload, self.uploads)
            with held_within(self._encoding, self.settings.request_wait, BUSY):
                torch.set_num_threads(self._model_threads)
                prepared = PreparedPipeline(self._collection.pipeline(), path)
            with self._changing_collection() as collection:
                return self._record(collection, path, prepared)

    def _record(self, collection: Collection, path: Path, prepared: PreparedPipeline) -> AddOutcome:
        try:
            report = collection.add([path], pipeline=prepared)
        except CollectionError as error:
            raise ApiError(409, str(error)) from None
        if report.skipped:
            _delete_upload(path)
            raise ApiError(422, f"the image could not be indexed: {report.skipped[0][1]}")
        ids = collection.catalog.item_ids_with_uri(str(path.resolve()))
        return AddOutcome(report, list(collection.catalog.get_items(ids).values()))

    def remove(self, item_id: int) -> Item:
        """Remove an item; an uploaded file no item uses any more is deleted with it."""
        self._require_writable()
        self.refresh_if_changed()
        with self._writer_turn(), self._changing_collection() as collection:
            found = collection.catalog.get_items([item_id])
            if item_id not in found:
                raise ApiError(404, f"there is no item {item_id} in this collection")
            collection.remove_items([item_id])
            item = found[item_id]
            file = Path(item.uri)
            if file.parent.parent == self.uploads and not collection.catalog.item_ids_with_uri(item.uri):
                _delete_upload(file)
        return item

    def _remove_orphaned_uploads(self, collection: Collection) -> None:
        """Delete uploads a killed server stored but never indexed (only when no one else is writing)."""
        candidates = integrity.orphaned_uploads(self.uploads, set())
        if not candidates:
            return
        try:
            collection.lock.acquire(timeout=0)
        except Timeout:
            return
        try:
            orphans = [file for file in candidates if not collection.catalog.item_ids_with_uri(str(file.resolve()))]
            integrity.remove_uploads(orphans)
        finally:
            collection.lock.release()
        if orphans:
            log.warning("removed %d uploads that were never indexed (left by an interrupted server)", len(orphans))

    # following changes made by other processes --------------------------------
    def _refresh_due(self) -> bool:
        interval = self.settings.refresh_interval
        return interval is not None and time.monotonic() - self._checked_at >= interval

    def refresh_if_changed(self) -> bool:
        """Swap in a freshly opened collection when another process committed changes; returns whether it did.

        Checks at most every ``settings.refresh_interval`` seconds. The new
        collection is loaded while searches go on with the old one; a
        collection that cannot be reopened leaves the old one in use.
        """
        if not self._refresh_due():
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
