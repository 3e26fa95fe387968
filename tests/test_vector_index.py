"""The FAISS wrapper: a refinement stage re-scores enough candidates to undo product quantisation's losses; a saved
index loads back whole."""

from __future__ import annotations

import faiss
import numpy as np

from cbir.collection.vector_index import REFINE_K_FACTOR, VectorIndex


def _unit(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, count)] + 0.3 * rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def recall_at_10(index: VectorIndex, database: np.ndarray, queries: np.ndarray) -> float:
    exact = faiss.IndexFlatIP(database.shape[1])
    exact.add(database)
    _, truth = exact.search(queries, 10)
    _, found = index.search(queries, 10)
    return float(np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, truth)]))


def test_refinement_lifts_the_recall_of_product_quantisation(tmp_path) -> None:
    rng = np.random.default_rng(0)
    database, queries = _unit(rng, 4000, 64), _unit(rng, 100, 64)
    recalls = {}
    for factory in ("IVF16,PQ8", "IVF16,PQ8,Refine(Flat)"):
        index = VectorIndex(factory, 64)
        index.add(np.arange(len(database)), database)
        assert index.train_if_possible()
        index.set_search_effort(16)
        recalls[factory] = recall_at_10(index, database, queries)
    assert recalls["IVF16,PQ8,Refine(Flat)"] > 0.85 and recalls["IVF16,PQ8,Refine(Flat)"] > recalls["IVF16,PQ8"] + 0.4
    index.save(tmp_path / "index.faiss")
    loaded = VectorIndex.load(tmp_path / "index.faiss", "IVF16,PQ8,Refine(Flat)", 64)
    assert loaded.inner.k_factor == REFINE_K_FACTOR


def test_a_saved_index_loads_back_with_the_same_hits(tmp_path) -> None:
    rng = np.random.default_rng(1)
    database, queries = _unit(rng, 3000, 32), _unit(rng, 20, 32)
    for factory in ("HNSW32", "IVF16,Flat"):
        index = VectorIndex(factory, 32)
        index.add(np.arange(10, 3010), database)
        assert index.train_if_possible()
        index.save(tmp_path / "index.faiss")
        loaded = VectorIndex.load(tmp_path / "index.faiss", factory, 32)
        assert len(loaded) == 3000 and set(loaded.ids()) == set(range(10, 3010))
        assert np.array_equal(loaded.search(queries, 10)[1], index.search(queries, 10)[1])
        assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed over the index
