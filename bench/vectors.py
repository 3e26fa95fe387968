"""Synthetic descriptors for the search benchmarks: unit vectors clustered like image descriptors."""

from __future__ import annotations

import numpy as np


def clustered_vectors(count: int, centres: np.ndarray, rng: np.random.Generator, spread: float = 0.6) -> np.ndarray:
    """Unit vectors scattered around random centres, in chunks (a stand-in for image descriptors)."""
    out = np.empty((count, centres.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        stop = min(start + 100_000, count)
        chosen = centres[rng.integers(0, len(centres), stop - start)]
        noise = rng.standard_normal((stop - start, centres.shape[1]), dtype=np.float32) * (spread / np.sqrt(centres.shape[1]))
        block = chosen + noise
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out
