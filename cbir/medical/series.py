"""Series-level descriptors: a volume or series described by a few representative slices, pooled."""

from __future__ import annotations

import numpy as np

from cbir.io.volumes import Volume, representative_slices
from cbir.pipelines.medical import series_descriptor


def describe_volume(encoder, volume: Volume, slices: int = 5, mode: str = "even") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slice indices, their descriptors, the series descriptor) of ``slices`` representative slices."""
    indices = representative_slices(len(volume), slices, mode)
    vectors = encoder.encode_images(volume.images(indices))
    return indices, vectors, series_descriptor(vectors)
