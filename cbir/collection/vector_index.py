"""A FAISS index over item ids, described by a factory string ("Flat", "HNSW32", "IVF256,PQ32").

Vectors are compared by inner product (cosine, as descriptors are
L2-normalised). The index is derived data: it is saved atomically and, when
it disagrees with the catalog, brought back in line from the catalog's
vectors. IVF and HNSW indexes search at an effort (nprobe, efSearch) that the
collection stores with the space. A compressed index with a refinement stage ("IVF1024,PQ64,Refine(SQ8)")
re-scores ``REFINE_K_FACTOR`` times as many candidates as asked for with its
finer codes: product quantisation alone caps recall well below 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import faiss
import numpy as np

from cbir.io.atomic import atomic_write


# Search effort of a new IVF or HNSW collection unless one is chosen: the lowest effort bench/results/speed.md
# measures (IVF1024,PQ64,Refine(SQ8) at nprobe 16: recall@10 0.980 at 100k vectors; HNSW32 at efSearch 64: 0.987).
# FAISS's own defaults (nprobe 1, efSearch 16) are far less exact.
DEFAULT_SEARCH_EFFORT = {"nprobe": 16, "efSearch": 64}

# The index for large collections (hundreds of thousands of items and more): inverted lists over the exact vectors,
# searched at the default nprobe 16. On 1M clustered 512-d vectors it found the exact top 10 (recall@10 1.000) at
# 64.4x the rate of exact search, where HNSW32 at efSearch 128 reached 0.874 (bench/results/speed.md, "1M vectors").
LARGE_COLLECTION_INDEX = "IVF1024,Flat"

# Candidates re-scored per result by a refinement stage: recall@10 of IVF1024,PQ64 (nprobe 16) on 100,000
# clustered 512-d vectors was 0.426 alone and 0.980 with Refine(SQ8) re-scoring 8 per result
# (bench/results/speed.md, "Search").
REFINE_K_FACTOR = 8


class IndexSpecError(ValueError):
    """A FAISS factory string that cannot be used."""


class VectorIndex:
    """``faiss.IndexIDMap2`` around an index built from a factory string."""

    filters_items = False  # searches take the allowed ids, found in the catalog

    def __init__(self, factory: str, dim: int, index: faiss.Index | None = None):
        self.factory = factory
        self.dim = dim
        if index is None:
            try:
                inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as error:
                raise IndexSpecError(f"FAISS cannot build {factory!r}: {error}") from None
            index = faiss.IndexIDMap2(inner)
        self.index = index
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        if isinstance(self.inner, faiss.IndexRefine):
            self.inner.k_factor = REFINE_K_FACTOR

    @property
    def inner(self) -> faiss.Index:
        return faiss.downcast_index(self.index.index)

    @property
    def is_trained(self) -> bool:
        return self.index.is_trained

    @property
    def min_training_vectors(self) -> int:
        """How many vectors training needs (0 for indexes that need none)."""
        if self.is_trained:
            return 0
        lists = re.search(r"IVF(\d+)", self.factory)
        centroids = int(lists.group(1)) if lists else 0
        pq = re.search(r"PQ\d+(?:x(\d+))?", self.factory)
        pq_centroids = 2 ** int(pq.group(1) or 8) if pq else 0
        return max(centroids, pq_centroids, 1)

    def __len__(self) -> int:
        return self.index.ntotal + sum(len(ids) for ids, _ in self._pending)

    def ids(self) -> np.ndarray:
        stored = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return np.concatenate([stored] + [ids for ids, _ in self._pending])

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors; an untrained index holds them until ``train`` is called."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1:] != (self.dim,):
            raise ValueError(f"vectors have dimension {vectors.shape[1:]}, the index expects {self.dim}")
        if self.is_trained:
            self.index.add_with_ids(vectors, ids)
        else:
            self._pending.append((ids, vectors))

    def train_if_possible(self, sample_size: int = 100_000) -> bool:
        """Train on the held vectors once there are enough; returns whether the index is trained."""
        if self.is_trained:
            return True
        held = sum(len(ids) for ids, _ in self._pending)
        if held < self.min_training_vectors:
            return False
        vectors = np.concatenate([v for _, v in self._pending])
        sample = vectors[np.random.default_rng(0).permutation(len(vectors))[:sample_size]]
        self.index.train(sample)
        pending, self._pending = self._pending, []
        for ids, vectors in pending:
            self.index.add_with_ids(vectors, ids)
        return True

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids; returns False when this index type cannot remove (rebuild instead)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return True
        if self._pending:
            keep = [(i[~np.isin(i, ids)], v[~np.isin(i, ids)]) for i, v in self._pending]
            self._pending = [(i, v) for i, v in keep if len(i)]
        try:
            self.index.remove_ids(ids)
        except RuntimeError:
            return False
        return True

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` nearest items to each query, only among ``allowed_ids`` when given.

        Missing hits have id -1.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not self.is_trained:
            return self._search_held(queries, k, allowed_ids)
        k = max(1, min(k, self.index.ntotal))
        if allowed_ids is None:
            return self.index.search(queries, k)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
        # faiss.contrib.torch_utils (imported by pytorch-metric-learning) replaces ``search`` with a
        # version without ``params`` and keeps the numpy one as ``search_numpy``.
        numpy_search = getattr(self.index, "search_numpy", self.index.search)
        return numpy_search(queries, min(k, len(allowed_ids)), params=faiss.SearchParameters(sel=selector))

    @property
    def effort_name(self) -> str | None:
        """What the search effort sets for this index type: ``efSearch`` (HNSW), ``nprobe`` (IVF) or None
        (exhaustive search)."""
        if isinstance(self.inner, faiss.IndexHNSW):
            return "efSearch"
        return "nprobe" if faiss.try_extract_index_ivf(self.inner) is not None else None

    @property
    def search_effort(self) -> int | None:
        """The effort searches run at now (None for exhaustive search)."""
        if self.effort_name == "efSearch":
            return int(self.inner.hnsw.efSearch)
        return int(faiss.try_extract_index_ivf(self.inner).nprobe) if self.effort_name == "nprobe" else None

    def _search_held(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the vectors held until there are enough to train on (too few to need more)."""
        ids = np.concatenate([np.empty(0, dtype=np.int64)] + [i for i, _ in self._pending])
        vectors = np.concatenate([np.empty((0, self.dim), dtype=np.float32)] + [v for _, v in self._pending])
        if allowed_ids is not None:
            keep = np.isin(ids, allowed_ids)
            ids, vectors = ids[keep], vectors[keep]
        k = max(1, min(k, len(ids)))
        scores = queries @ vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        found_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        found_ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(ids):
            found_scores, found_ids = np.take_along_axis(scores, order, axis=1), ids[order]
        return found_scores, found_ids

    def set_search_effort(self, effort: int) -> None:
        """HNSW efSearch / IVF nprobe: higher is more exact and slower."""
        if self.effort_name is None:
            raise IndexSpecError(f"{self.factory!r} searches exhaustively: a search effort applies to IVF and HNSW indexes")
        if effort < 1:
            raise IndexSpecError(f"the search effort must be at least 1, not {effort}")
        if self.effort_name == "efSearch":
            self.inner.hnsw.efSearch = effort
        else:
            faiss.try_extract_index_ivf(self.inner).nprobe = effort

    def close(self) -> None:
        """Nothing to release: the index lives in memory."""

    def save(self, path: str | Path) -> None:
        """Write atomically, streamed (no copy of the index in memory); vectors still held for training are not written."""
        with atomic_write(path) as stream:
            faiss.write_index(self.index, faiss.PyCallbackIOWriter(stream.write))

    @classmethod
    def load(cls, path: str | Path, factory: str, dim: int) -> "VectorIndex":
        data = np.fromfile(path, dtype=np.uint8)
        index = faiss.deserialize_index(data)
        if not isinstance(index, faiss.IndexIDMap2):
            index = faiss.downcast_index(index)
        if index.d != dim:
            raise ValueError(f"{path} holds {index.d}-d vectors, expected {dim}")
        return cls(factory, dim, index)
