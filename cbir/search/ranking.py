"""Exhaustive cosine ranking of a database for batches of queries (BLAS matrix products).

Descriptors are L2-normalised, so the inner product is the cosine. A query
may *exclude* one database item (its own image in leave-one-out protocols):
that item is ranked last and never used as a neighbour.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

CHUNK_ENTRIES = 16_000_000  # similarities held at once (64 MB of float32)


def _similarities(queries: np.ndarray, database: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(database, dtype=np.float32).T
    if exclude is not None:
        rows = np.flatnonzero(exclude >= 0)
        scores[rows, exclude[rows]] = -np.inf
    return scores


def query_chunks(n_queries: int, n_database: int) -> Iterator[slice]:
    """Slices of queries small enough to rank together."""
    step = max(1, CHUNK_ENTRIES // max(1, n_database))
    for start in range(0, n_queries, step):
        yield slice(start, min(start + step, n_queries))


def full_ranking(queries: np.ndarray, database: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Database indices from most to least similar for each query (Q x N); ties keep index order."""
    scores = _similarities(queries, database, exclude)
    return np.argsort(-scores, axis=1, kind="stable")


def nearest(
    queries: np.ndarray, database: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices) of the ``n`` most similar database items per query, best first."""
    n = min(n, len(database) - (1 if exclude is not None else 0))
    similarities = np.empty((len(queries), n), dtype=np.float32)
    indices = np.empty((len(queries), n), dtype=np.int64)
    if n <= 0:
        return similarities, indices
    for rows in query_chunks(len(queries), len(database)):
        scores = _similarities(queries[rows], database, None if exclude is None else exclude[rows])
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        indices[rows] = np.take_along_axis(top, order, axis=1)
        similarities[rows] = np.take_along_axis(top_scores, order, axis=1)
    return similarities, indices
