"""Unsupervised re-ranking: alpha-weighted query expansion and database-side augmentation.

Both replace a vector by the L2-normalised, similarity-weighted sum of itself
and its ``n`` nearest database vectors (Radenovic et al. 2018):

    x' = L2( x + sum_i max(s_i, 0) ** alpha * d_i )

alpha-QE does it for queries (then searches again), DBA for every database
vector once. ``alpha = 0`` is plain average query expansion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from cbir.search.ranking import nearest

if TYPE_CHECKING:
    from cbir.collection.collection import Collection, SearchResult


def weighted_expansion(
    vectors: np.ndarray, database: np.ndarray, similarities: np.ndarray, neighbours: np.ndarray, alpha: float
) -> np.ndarray:
    """L2(x + sum_i max(s_i, 0)^alpha d_i) for each row x, with its neighbours' indices and similarities."""
    weights = np.maximum(similarities, 0.0) ** alpha if alpha else np.ones_like(similarities)
    expanded = np.asarray(vectors, dtype=np.float32) + np.einsum("qn,qnd->qd", weights, database[neighbours])
    return expanded / np.maximum(np.linalg.norm(expanded, axis=1, keepdims=True), 1e-12)


def query_expansion(
    queries: np.ndarray, database: np.ndarray, n: int, alpha: float = 3.0, exclude: np.ndarray | None = None
) -> np.ndarray:
    """alpha-QE: each query combined with its ``n`` nearest database vectors (``exclude``: see ``nearest``)."""
    if n <= 0:
        return np.asarray(queries, dtype=np.float32)
    similarities, neighbours = nearest(queries, database, n, exclude)
    return weighted_expansion(queries, database, similarities, neighbours, alpha)


def database_augmentation(database: np.ndarray, n: int, alpha: float = 3.0) -> np.ndarray:
    """DBA: each database vector combined with its ``n`` nearest other database vectors."""
    if n <= 0:
        return np.asarray(database, dtype=np.float32)
    itself = np.arange(len(database))
    similarities, neighbours = nearest(database, database, n, exclude=itself)
    return weighted_expansion(database, database, similarities, neighbours, alpha)


@dataclass(frozen=True)
class Reranking:
    """Which re-ranking to apply: DBA with ``dba`` neighbours, alpha-QE with ``qe`` neighbours."""

    qe: int = 0
    qe_alpha: float = 3.0
    dba: int = 0
    dba_alpha: float = 3.0

    def __post_init__(self) -> None:
        if self.qe < 0 or self.dba < 0:
            raise ValueError("the numbers of neighbours for query expansion and DBA must be 0 or more")
        if self.qe_alpha < 0 or self.dba_alpha < 0:
            raise ValueError("alpha must be 0 or more")

    def apply(
        self, queries: np.ndarray, database: np.ndarray, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(queries, database) after DBA, then alpha-QE against the augmented database."""
        database = database_augmentation(database, self.dba, self.dba_alpha)
        queries = query_expansion(queries, database, self.qe, self.qe_alpha, exclude)
        return queries, database

    def describe(self) -> dict:
        data = {}
        if self.dba:
            data["dba"] = {"neighbours": self.dba, "alpha": self.dba_alpha}
        if self.qe:
            data["alpha_qe"] = {"neighbours": self.qe, "alpha": self.qe_alpha}
        return data


def expanded_search(
    store: "Collection",
    query: str | Path | Image.Image,
    k: int = 10,
    neighbours: int = 5,
    alpha: float = 3.0,
    kinds: Sequence[str] | None = None,
    label: str | None = None,
) -> list["SearchResult"]:
    """alpha-QE in a collection: search, combine the query with its first ``neighbours`` hits
    (in the index's whitened space, weighted by their scores), and search again."""
    vector = store.encode(query)
    first = store.search_vectors(vector[None], neighbours, kinds, label)[0]
    if not first:
        return []
    stored = store.catalog.get_items([hit.item_id for hit in first], with_vectors=True)
    whitening = store.whitening()
    to_index_space = whitening.apply if whitening is not None else (lambda v: np.asarray(v, dtype=np.float32))
    found = to_index_space(np.stack([stored[hit.item_id].vector for hit in first]))
    scores = np.array([[hit.score for hit in first]], dtype=np.float32)
    expanded = weighted_expansion(to_index_space(vector[None]), found, scores, np.arange(len(first))[None], alpha)
    return store.search_vectors(expanded, k, kinds, label, transformed=True)[0]
