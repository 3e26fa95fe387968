"""A server without local state: searches answered from a Milvus server alone.

``cbir serve --store milvus://HOST:PORT/NAME`` reads each space's record
(encoder, dimension, index) from its Milvus collection ``NAME_SPACE``, loads
the encoder, and answers searches and item look-ups from the fields stored
beside the vectors, so several replicas can share one Milvus. Such a server
has no catalog, the collection's source of truth, so it changes nothing:
items are added and removed by ``cbir index`` on the collection that owns
the catalog, and appear in every replica at once. Files and thumbnails are
served when the replica sees the indexed files at their paths (shared
storage), checked against their content hashes as usual.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from cbir.collection.collection import CollectionError, SearchResult
from cbir.collection.milvus_store import MilvusStore, connect, item_of
from cbir.collection.vector_index import DEFAULT_SEARCH_EFFORT
from cbir.collection.vector_store import ItemFilter
from cbir.core.items import Item
from cbir.encoders.encoder import Encoder, EncoderSpec, shared_encoder
from cbir.server.errors import ApiError
from cbir.server.filesafety import IndexedFiles
from cbir.server.locks import held_within
from cbir.server.service import BUSY
from cbir.server.settings import ServerSettings

READ_ONLY = "this server answers from Milvus alone and changes nothing: add or remove items with 'cbir index' on the collection"


class StoreService:
    """What the routes need from a collection, backed by the Milvus collections of one ``milvus://`` address."""

    read_only = True

    def __init__(self, store: str, settings: ServerSettings | None = None):
        self.store = store
        self.settings = settings or ServerSettings()
        client, prefix = connect(store, None)
        self.client = client
        self.spaces: dict[str, MilvusStore] = {}
        self.records: dict[str, dict] = {}
        for name in sorted(client.list_collections()):
            if not name.startswith(prefix + "_"):
                continue
            probe = MilvusStore(client, name, "Flat", 1)
            record = probe.record()
            if not record:
                continue
            space = name[len(prefix) + 1 :]
            milvus = MilvusStore(client, name, record["index"], record["dim"])
            if milvus.effort_name is not None:
                milvus.set_search_effort(DEFAULT_SEARCH_EFFORT[milvus.effort_name])
            client.load_collection(name)
            self.spaces[space], self.records[space] = milvus, record
        if not self.spaces:
            raise CollectionError(f"{store} holds no cbir collection: index one with 'cbir index DIR --collection C --store {store}'")
        self.default_space = "image" if "image" in self.spaces else next(iter(self.spaces))
        record = self.records[self.default_space]
        if record.get("whitening"):
            raise CollectionError("the collection's vectors are whitened; serve it from its folder, which holds the whitening")
        self.encoder: Encoder = shared_encoder(EncoderSpec.from_dict(record["encoder"]))
        self._model_threads = torch.get_num_threads()
        self._encoding = threading.Lock()
        self._decoding = threading.BoundedSemaphore(self.settings.max_decodes)
        self.files = IndexedFiles()

    def close(self) -> None:
        self.client.close()

    def decoding(self) -> contextlib.AbstractContextManager[None]:
        return held_within(self._decoding, self.settings.request_wait, BUSY)

    def encode(self, image: Image.Image) -> np.ndarray:
        with held_within(self._encoding, self.settings.request_wait, BUSY):
            torch.set_num_threads(self._model_threads)
            return self.encoder.encode_images([image])[0]

    def _space(self, space: str | None) -> MilvusStore:
        if (space or self.default_space) not in self.spaces:
            raise ApiError(404, f"there is no {space!r} space here (there are: {', '.join(self.spaces)})")
        return self.spaces[space or self.default_space]

    def search_vector(
        self, vector: np.ndarray, k: int, kinds: Sequence[str] | None = None, label: str | None = None, space: str | None = None
    ) -> list[SearchResult]:
        hits = self._space(space).search_hits(np.asarray(vector, dtype=np.float32)[None], k, item_filter=ItemFilter.of(kinds, label))[0]
        results = []
        for hit in hits:
            item = item_of(int(hit["id"]), hit["entity"])
            results.append(SearchResult(len(results) + 1, float(hit["distance"]), item.id, item.uri, item.kind, item.box,
                                        item.t_start, item.t_end, item.labels, item.metadata))
        return results

    def _find(self, item_id: int, with_vectors: bool = False) -> tuple[str, Item]:
        for space, milvus in self.spaces.items():
            found = milvus.get([item_id], with_vectors)
            if item_id in found:
                return space, found[item_id]
        raise ApiError(404, f"there is no item {item_id} in this collection")

    def search_item(self, item_id: int, k: int, kinds: Sequence[str] | None = None, label: str | None = None) -> list[SearchResult]:
        space, item = self._find(item_id, with_vectors=True)
        return self.search_vector(item.vector, k, kinds, label, space)

    def search_item_now(self, item_id: int, k: int) -> None:
        """Never: Milvus answers over the network, so searches stay off the event loop."""
        return None

    def item(self, item_id: int) -> Item:
        return self._find(item_id)[1]

    def expected_hash(self, item: Item) -> str | None:
        return item.content_hash

    def info(self) -> dict:
        counts = {space: len(milvus) for space, milvus in self.spaces.items()}
        encoder = self.records[self.default_space]["encoder"]
        return {
            "path": self.store,
            "items": sum(counts.values()),
            "by_kind": {},
            "encoder": {key: value for key, value in encoder.items() if key != "type"},
            "default_space": self.default_space,
            "spaces": {
                space: {"pipeline": record["pipeline"], "dim": record["dim"], "index": record["index"], "store": self.store,
                        "search_effort": self.spaces[space].search_effort, "items": counts[space], "encoder": record["encoder"]}
                for space, record in self.records.items()
            },
        }

    def add_upload(self, upload) -> None:
        raise ApiError(403, READ_ONLY)

    def remove(self, item_id: int) -> None:
        raise ApiError(403, READ_ONLY)
