"""A stack of 2-D slices ready for an image encoder, and the choice of representative slices.

Readers (DICOM series, NIfTI volumes) produce a ``Volume``: slices as float
arrays in [0, 1] (greyscale, or H x W x 3 colour), in anatomical order, with
de-identified metadata. ``image`` gives any slice as an 8-bit RGB picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


class ScanReadError(Exception):
    """A scan (DICOM file or series, NIfTI volume) that cannot be used; the message says why and names no patient."""


@dataclass
class Volume:
    """Slices (S x H x W, or S x H x W x 3) scaled to [0, 1], in order, and their metadata."""

    slices: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.slices)

    def image(self, index: int) -> Image.Image:
        """Slice ``index`` as an 8-bit RGB picture."""
        return Image.fromarray(to_uint8(self.slices[index])).convert("RGB")

    def images(self, indices=None) -> list[Image.Image]:
        """The slices at ``indices`` (default: all) as RGB pictures."""
        return [self.image(int(i)) for i in (range(len(self)) if indices is None else indices)]


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 0-255 bytes (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(pixels, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def stretch(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """``values`` mapped linearly from [low, high] (default: their finite min and max) to [0, 1], clipped."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if low is None or high is None:
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = (np.nan_to_num(values, nan=low, posinf=high, neginf=low) - low) / max(high - low, 1e-12)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def representative_slices(count: int, k: int, mode: str = "even") -> np.ndarray:
    """Indices of ``k`` slices of a stack of ``count`` that stand for the whole.

    ``even``: evenly spaced, leaving out the first and last tenth (often
    empty or cut by the field of view); ``central``: the middle slice and its
    nearest neighbours. Fewer indices when the stack is shorter than ``k``.
    """
    if count <= 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    k = min(k, count)
    if mode == "even":
        margin = int(count * 0.1) if count - 2 * int(count * 0.1) >= k else 0
        return np.unique(np.linspace(margin, count - 1 - margin, k).round().astype(np.int64))
    if mode == "central":
        start = min(max(0, count // 2 - k // 2), count - k)
        return np.arange(start, start + k, dtype=np.int64)
    raise ValueError(f"unknown slice choice {mode!r}: use 'even' or 'central'")
