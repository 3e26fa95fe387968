"""Where a space's vectors are searched: the ``VectorStore`` protocol, the item filters pushed down to it,
and the store a collection records for each space.

Two stores implement the protocol: FAISS (``VectorIndex``, a file beside the
catalog, the default) and Milvus (``MilvusStore``: ``milvus-lite``, an
embedded Milvus Lite database inside the collection folder, or
``milvus://HOST:PORT/NAME``, a Milvus server whose collections are named
``NAME_SPACE``, with the token read from ``CBIR_MILVUS_TOKEN``). Either way
the catalog stays the source of truth and the store is derived from it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from cbir.collection.errors import CollectionError

FAISS_STORE = "faiss"
MILVUS_LITE_STORE = "milvus-lite"
MILVUS_SCHEME = "milvus://"
TOKEN_VARIABLE = "CBIR_MILVUS_TOKEN"
STORE_HELP = f"'{FAISS_STORE}', '{MILVUS_LITE_STORE}' or '{MILVUS_SCHEME}HOST:PORT/NAME'"


@dataclass(frozen=True)
class ItemFilter:
    """Which items a search may return: of these kinds, carrying this label, overlapping this time span."""

    kinds: tuple[str, ...] = ()
    label: str | None = None
    time_span: tuple[float, float] | None = None

    @classmethod
    def of(cls, kinds: Sequence[str] | None = None, label: str | None = None, time_span: tuple[float, float] | None = None) -> "ItemFilter":
        return cls(tuple(kinds or ()), label, tuple(time_span) if time_span is not None else None)

    def __bool__(self) -> bool:
        return bool(self.kinds) or self.label is not None or self.time_span is not None

    def expression(self) -> str:
        """The filter as a Milvus boolean expression over the stored fields (empty: every item)."""
        clauses = []
        if self.kinds:
            clauses.append(f"kind in [{', '.join(json.dumps(kind) for kind in self.kinds)}]")
        if self.label is not None:
            clauses.append(f"array_contains(labels, {json.dumps(self.label)})")
        if self.time_span is not None:
            start, end = (float(value) for value in self.time_span)
            clauses.append(f"t_start <= {end!r} and t_last >= {start!r}")  # t_last: t_end, else t_start
        return " and ".join(f"({clause})" for clause in clauses)

    def sql(self) -> tuple[str, list]:
        """The filter as a WHERE clause over the catalog's ``items`` table, with its parameters."""
        clauses, params = [], []
        if self.kinds:
            clauses.append(f"kind IN ({','.join('?' * len(self.kinds))})")
            params += list(self.kinds)
        if self.label is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(items.labels) WHERE json_each.value = ?)")
            params.append(self.label)
        if self.time_span is not None:
            clauses.append("t_start <= ? AND COALESCE(t_end, t_start) >= ?")
            params += [float(self.time_span[1]), float(self.time_span[0])]
        return " AND ".join(clauses) or "1", params


class VectorStore(Protocol):
    """What a collection needs from the store of one space's vectors (ids are catalog item ids)."""

    factory: str  # the space's index setting (a FAISS factory string, mapped for other stores)
    dim: int
    filters_items: bool  # True: ``search`` applies an ``ItemFilter`` itself; False: it takes the allowed ids

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray:
        """Every stored id."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids; False when this store cannot (it is then rebuilt)."""

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` nearest items to each query; missing hits have id -1."""

    def train_if_possible(self) -> bool: ...

    @property
    def is_trained(self) -> bool: ...

    @property
    def effort_name(self) -> str | None: ...

    def set_search_effort(self, effort: int) -> None: ...


@dataclass(frozen=True)
class MilvusIndex:
    """A FAISS factory string in Milvus terms: index type, build parameters, and the search parameter the
    space's search effort sets (None: exhaustive)."""

    index_type: str
    params: dict
    effort_param: str | None


def milvus_index(factory: str) -> MilvusIndex:
    """Map ``Flat``, ``HNSW<M>``, ``IVF<n>,Flat``, ``IVF<n>,SQ8`` and ``IVF<n>,PQ<m>`` to Milvus indexes."""
    text = factory.replace(" ", "")
    if text == "Flat":
        return MilvusIndex("FLAT", {}, None)
    if match := re.fullmatch(r"HNSW(\d+)(?:,Flat)?", text):
        return MilvusIndex("HNSW", {"M": int(match.group(1)), "efConstruction": 40}, "ef")
    if match := re.fullmatch(r"IVF(\d+),Flat", text):
        return MilvusIndex("IVF_FLAT", {"nlist": int(match.group(1))}, "nprobe")
    if match := re.fullmatch(r"IVF(\d+),SQ8", text):
        return MilvusIndex("IVF_SQ8", {"nlist": int(match.group(1))}, "nprobe")
    if match := re.fullmatch(r"IVF(\d+),PQ(\d+)(?:x(\d+))?(?:,Refine\(.*\))?", text):
        return MilvusIndex("IVF_PQ", {"nlist": int(match.group(1)), "m": int(match.group(2)), "nbits": int(match.group(3) or 8)}, "nprobe")
    raise CollectionError(f"the index {factory!r} has no Milvus equivalent: use Flat, HNSW32, IVF1024,Flat, IVF1024,SQ8 or IVF1024,PQ64")


def check_store(store: str, factory: str) -> str:
    """``store`` when it names a store that can hold a ``factory`` index, else a ``CollectionError``."""
    if store == FAISS_STORE:
        return store
    if store != MILVUS_LITE_STORE and not parse_milvus_uri(store):
        raise CollectionError(f"unknown store {store!r}: use {STORE_HELP}")
    index = milvus_index(factory)
    if store == MILVUS_LITE_STORE and index.index_type == "IVF_PQ":
        raise CollectionError(
            f"Milvus Lite has no product quantisation, so {factory!r} cannot be built there: "
            "use HNSW32, IVF1024,Flat or IVF1024,SQ8, or a Milvus server (milvus://HOST:PORT/NAME)"
        )
    return store


def parse_milvus_uri(store: str) -> tuple[str, str] | None:
    """(server address, collection name prefix) of ``milvus://HOST:PORT/NAME``, or None."""
    match = re.fullmatch(r"milvus://([^/\s]+:\d+)/([A-Za-z_][A-Za-z0-9_]*)", store)
    return (f"http://{match.group(1)}", match.group(2)) if match else None
