"""Series-level descriptors: a volume or series described by a few representative slices, pooled."""

from __future__ import annotations

import numpy as np

from cbir.io.volumes import Volume, representative_slices


def series_descriptor(slice_vectors: np.ndarray) -> np.ndarray:
    """The mean of L2-normalised slice descriptors (N x D), L2-normalised: one vector for the series."""
    vectors = np.asarray(slice_vectors, dtype=np.float32)
    if vectors.ndim != 2 or not len(vectors):
        raise ValueError("a series descriptor needs at least one slice descriptor (N x D)")
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    pooled = vectors.mean(axis=0)
    return pooled / max(float(np.linalg.norm(pooled)), 1e-12)


def describe_volume(encoder, volume: Volume, slices: int = 5, mode: str = "even") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slice indices, their descriptors, the series descriptor) of ``slices`` representative slices."""
    indices = representative_slices(len(volume), slices, mode)
    vectors = encoder.encode_images(volume.images(indices))
    return indices, vectors, series_descriptor(vectors)
