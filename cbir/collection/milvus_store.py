"""Milvus as the vector store of a space, through pymilvus: Milvus Lite embedded in the collection folder
(``milvus.db``) or a Milvus server (``milvus://HOST:PORT/NAME``).

Each space is one Milvus collection keyed by catalog item id, holding beside
the vector the fields a search result needs (kind, uri, box, times, labels,
metadata), so filters run inside Milvus and a server can answer from Milvus
alone. The collection's record (catalog id, encoder, index, whitening) is a
collection property; a store whose record disagrees with the catalog's space
is rebuilt from the catalog, or refused when it belongs to another catalog.

Crash safety rests on catalog ids only growing: a batch is committed to the
catalog first, then its old ids are deleted from Milvus and its new ids
inserted in ascending order. A run killed in between leaves Milvus with a
different count of items, or without the catalog's highest id, or with an id
above it; ``bring_in_line`` checks these three cheaply on opening and, when
one fails, compares every id and repairs the difference.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from cbir.collection.errors import CollectionError
from cbir.collection.vector_store import (
    MILVUS_LITE_STORE,
    TOKEN_VARIABLE,
    ItemFilter,
    milvus_index,
    parse_milvus_uri,
)
from cbir.collection.vector_index import IndexSpecError
from cbir.core.items import Item

LITE_FILE = "milvus.db"
LITE_PREFIX = "cbir"
RECORD_PROPERTY = "cbir.space"
INSERT_BATCH = 1000
ID_BATCH = 10_000
MAX_LABELS = 64
RESULT_FIELDS = ["kind", "uri", "content_hash", "box", "t_start", "t_end", "labels", "metadata"]

RowSource = Callable[[list[int]], dict[int, Item]]  # catalog items (without vectors) by id


def connect(store: str, folder: Path | None):
    """(pymilvus client, collection name prefix) for a store setting; Milvus Lite lives in ``folder``."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    logging.getLogger("pymilvus").setLevel(logging.ERROR)
    try:
        if store == MILVUS_LITE_STORE:
            if folder is None:
                raise CollectionError("a Milvus Lite store lives in its collection's folder: open the collection")
            return MilvusClient(str(folder / LITE_FILE)), LITE_PREFIX
        address, prefix = parse_milvus_uri(store) or (None, None)
        if address is None:
            raise CollectionError(f"{store!r} is not a Milvus address: use milvus://HOST:PORT/NAME")
        return MilvusClient(uri=address, token=os.environ.get(TOKEN_VARIABLE, ""), timeout=30), prefix
    except MilvusException as error:
        where = folder / LITE_FILE if store == MILVUS_LITE_STORE else store
        raise CollectionError(
            f"cannot open the Milvus store {where}: {error.message} (a Milvus Lite database is used by one process at a time)"
        ) from None


def collection_name(prefix: str, space: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', space)}"


class MilvusStore:
    """One space's vectors in a Milvus collection, searched by inner product."""

    filters_items = True

    def __init__(self, client, name: str, factory: str, dim: int, rows: RowSource | None = None, release: Callable[[], None] | None = None):
        self.client = client
        self.name = name
        self.factory = factory
        self.dim = dim
        self.index_spec = milvus_index(factory)
        self.rows = rows
        self._release = release
        self._effort: int | None = None

    # the Milvus collection ------------------------------------------------------
    def record(self) -> dict:
        """The cbir record stored with the Milvus collection ({} when it has none)."""
        properties = self.client.describe_collection(self.name).get("properties", {})
        try:
            return json.loads(properties.get(RECORD_PROPERTY, "{}"))
        except ValueError:
            return {}

    def create(self, record: dict) -> None:
        """Create the Milvus collection (dropping one of that name) with its fields, index and record."""
        from pymilvus import DataType, MilvusClient

        if self.client.has_collection(self.name):
            self.client.drop_collection(self.name)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("kind", DataType.VARCHAR, max_length=64)
        schema.add_field("uri", DataType.VARCHAR, max_length=65535)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=128, nullable=True)
        schema.add_field("labels", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_LABELS, max_length=256)
        for name in ("t_start", "t_end", "t_last"):
            schema.add_field(name, DataType.DOUBLE, nullable=True)
        schema.add_field("box", DataType.JSON, nullable=True)
        schema.add_field("metadata", DataType.JSON)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.index_spec.index_type, metric_type="IP", params=self.index_spec.params)
        index.add_index(field_name="kind", index_type="INVERTED")
        self.client.create_collection(
            self.name, schema=schema, index_params=index, consistency_level="Strong",
            properties={RECORD_PROPERTY: json.dumps(record, sort_keys=True)},
        )
        self.client.load_collection(self.name)

    def close(self) -> None:
        self.client.close()
        if self._release is not None:
            self._release()

    # the store protocol ---------------------------------------------------------
    def __len__(self) -> int:
        return int(self.client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def ids(self) -> np.ndarray:
        iterator = self.client.query_iterator(self.name, batch_size=ID_BATCH, filter="", output_fields=["id"])
        found: list[int] = []
        while batch := iterator.next():
            found += [row["id"] for row in batch]
        iterator.close()
        return np.array(sorted(found), dtype=np.int64)

    def has_id_above(self, item_id: int) -> bool:
        return bool(self.client.query(self.name, filter=f"id > {int(item_id)}", output_fields=["id"], limit=1))

    def has_id(self, item_id: int) -> bool:
        return bool(self.client.get(self.name, ids=[int(item_id)], output_fields=["id"]))

    def get(self, item_ids: list[int], with_vectors: bool = False) -> dict[int, Item]:
        """Stored items by id, as the catalog would give them."""
        fields = RESULT_FIELDS + (["vector"] if with_vectors else [])
        rows = self.client.get(self.name, ids=[int(i) for i in item_ids], output_fields=fields) if item_ids else []
        return {int(row["id"]): item_of(int(row["id"]), row) for row in rows}

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert vectors with the catalog fields of their items, in ascending id order, ``INSERT_BATCH`` at a time."""
        if self.rows is None:
            raise CollectionError("this Milvus store is open for searching only")
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1:] != (self.dim,):
            raise ValueError(f"vectors have dimension {vectors.shape[1:]}, the store expects {self.dim}")
        order = np.argsort(ids, kind="stable")
        for start in range(0, len(order), INSERT_BATCH):
            chosen = order[start : start + INSERT_BATCH]
            items = self.rows([int(i) for i in ids[chosen]])
            rows = [_row(int(ids[i]), vectors[i], items[int(ids[i])]) for i in chosen]
            self.client.insert(self.name, rows)

    def remove(self, ids: np.ndarray) -> bool:
        ids = [int(i) for i in np.asarray(ids).ravel()]
        for start in range(0, len(ids), ID_BATCH):
            self.client.delete(self.name, ids=ids[start : start + ID_BATCH])
        return True

    def train_if_possible(self, sample_size: int = 0) -> bool:
        return True  # Milvus trains its IVF indexes itself, segment by segment

    @property
    def is_trained(self) -> bool:
        return True

    @property
    def min_training_vectors(self) -> int:
        return 0

    @property
    def effort_name(self) -> str | None:
        return {"ef": "efSearch", "nprobe": "nprobe"}.get(self.index_spec.effort_param or "")

    @property
    def search_effort(self) -> int | None:
        return self._effort

    def set_search_effort(self, effort: int) -> None:
        if self.effort_name is None:
            raise IndexSpecError(f"{self.factory!r} searches exhaustively: a search effort applies to IVF and HNSW indexes")
        if effort < 1:
            raise IndexSpecError(f"the search effort must be at least 1, not {effort}")
        self._effort = int(effort)

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None, item_filter: ItemFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) like FAISS: the ``k`` best per query, -1 past the last hit."""
        hits = self.search_hits(queries, k, allowed_ids, item_filter, output_fields=[])
        scores = np.full((len(hits), k), -np.inf, dtype=np.float32)
        ids = np.full((len(hits), k), -1, dtype=np.int64)
        for row, found in enumerate(hits):
            for column, hit in enumerate(found[:k]):
                scores[row, column], ids[row, column] = hit["distance"], hit["id"]
        return scores, ids

    def search_hits(
        self,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray | None = None,
        item_filter: ItemFilter | None = None,
        output_fields: list[str] | None = None,
    ) -> list[list[dict]]:
        """Milvus's hits for each query (``id``, ``distance`` and an ``entity`` with ``output_fields``)."""
        clauses = [item_filter.expression()] if item_filter else []
        if allowed_ids is not None:
            clauses.append(f"id in [{', '.join(str(int(i)) for i in allowed_ids)}]")
        params = {}
        if self.index_spec.effort_param == "ef" and self._effort is not None:
            params["ef"] = max(self._effort, k)  # Milvus refuses an ef below the number of results
        elif self.index_spec.effort_param == "nprobe" and self._effort is not None:
            params["nprobe"] = min(self._effort, self.index_spec.params["nlist"])  # and more probes than lists
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return [
            list(found)
            for found in self.client.search(
                self.name,
                data=[query for query in queries],
                limit=k,
                filter=" and ".join(f"({clause})" for clause in clauses if clause),
                search_params={"metric_type": "IP", "params": params},
                output_fields=RESULT_FIELDS if output_fields is None else output_fields,
            )
        ]


def item_of(item_id: int, entity: dict) -> Item:
    """The item a Milvus row describes (its vector left out unless the row has one)."""
    box = entity.get("box")
    return Item(
        entity["kind"], entity["uri"], np.asarray(entity.get("vector", []), dtype=np.float32), entity.get("content_hash"),
        tuple(box) if box else None, entity.get("t_start"), entity.get("t_end"), list(entity.get("labels") or []),
        dict(entity.get("metadata") or {}), item_id,
    )


def _row(item_id: int, vector: np.ndarray, item: Item) -> dict:
    if len(item.labels) > MAX_LABELS:
        raise CollectionError(f"item {item_id} ({item.uri}) has {len(item.labels)} labels; a Milvus store keeps at most {MAX_LABELS}")
    return {
        "id": item_id,
        "vector": vector,
        "kind": item.kind,
        "uri": item.uri,
        "content_hash": item.content_hash,
        "labels": list(item.labels),
        "t_start": item.t_start,
        "t_end": item.t_end,
        "t_last": item.t_end if item.t_end is not None else item.t_start,
        "box": list(item.box) if item.box is not None else None,
        "metadata": item.metadata,
    }


_lite_users: dict[str, int] = {}
_lite_guard = threading.Lock()


def _lite_user(path: Path) -> Callable[[], None]:
    """Count one more user of the embedded Milvus Lite server of ``path``; the function returned ends that
    use, and stops the server (releasing its lock on the folder) after the last one."""
    key = os.path.abspath(path)
    with _lite_guard:
        _lite_users[key] = _lite_users.get(key, 0) + 1

    def release() -> None:
        from milvus_lite.server_manager import server_manager_instance

        with _lite_guard:
            _lite_users[key] -= 1
            if _lite_users[key]:
                return
            del _lite_users[key]
        server_manager_instance.release_server(key)

    return release


def open_store(
    store: str, folder: Path | None, space: str, factory: str, dim: int, record: dict, rows: RowSource | None
) -> MilvusStore:
    """The Milvus store of ``space``, created when missing and rebuilt (emptied) when its record differs from
    ``record``; one holding another catalog's vectors is refused (an empty one, left by a first run that
    failed, is taken over)."""
    client, prefix = connect(store, folder)
    release = _lite_user(folder / LITE_FILE) if store == MILVUS_LITE_STORE else None
    milvus = MilvusStore(client, collection_name(prefix, space), factory, dim, rows, release)
    if not client.has_collection(milvus.name):
        milvus.create(record)
        return milvus
    stored = milvus.record()
    if store != MILVUS_LITE_STORE and stored.get("collection") not in (None, record.get("collection")) and len(milvus):
        milvus.close()
        raise CollectionError(
            f"the Milvus collection {milvus.name} holds the vectors of another cbir collection: choose another NAME in {store}"
        )
    if stored != record:
        milvus.create(record)
    else:
        client.load_collection(milvus.name)
    return milvus


def bring_in_line(milvus: MilvusStore, connection, space: str, vectors: Callable[[Iterable[int] | None], Iterable]) -> int:
    """Make the store hold exactly the catalog's items of ``space``; returns the number of ids repaired.

    ``vectors(ids)`` yields (ids, transformed vectors) chunks from the catalog (all of them for None).
    """
    count, top = connection.execute("SELECT COUNT(*), MAX(id) FROM items WHERE space = ?", (space,)).fetchone()
    stored = len(milvus)
    if stored == count and (count == 0 or (milvus.has_id(top) and not milvus.has_id_above(top))):
        return 0
    catalog_ids = np.array([row[0] for row in connection.execute("SELECT id FROM items WHERE space = ? ORDER BY id", (space,))], dtype=np.int64)
    present = milvus.ids() if stored else np.empty(0, dtype=np.int64)
    extra = np.setdiff1d(present, catalog_ids)
    missing = np.setdiff1d(catalog_ids, present)
    milvus.remove(extra)
    for ids, chunk in vectors(missing if len(missing) < len(catalog_ids) else None):
        milvus.add(ids, chunk)
    return len(extra) + len(missing)
