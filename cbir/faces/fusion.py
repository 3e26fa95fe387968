"""A face encoder that joins others: each part's normalised descriptor, weighted, side by side.

With weights ``w`` (normalised to sum to 1) each part's unit descriptor is
scaled by ``sqrt(w_i)`` and the parts are concatenated, so the fused
descriptor has unit length and the cosine of two of them is
``sum_i w_i * cos_i``: score-level fusion that a vector index searches like any
other descriptor. The parts and weights are the encoder's record.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cbir.faces.alignment import Landmarks, View
from cbir.faces.encoders import FaceEncoder, face_encoder_from_record, register_face_encoder
from cbir.faces.models import FaceError

# dlib's ResNet and MobileFaceNet, weighted as the fold protocol chose on the LFW dev folds (docs/faces.md,
# bench/results/faces.md); with flip, the best-accuracy similarity of those folds is DEFAULT_THRESHOLD
DEFAULT_PARTS = ("dlib_resnet_v1", "mobilefacenet")
DEFAULT_WEIGHTS = (0.85, 0.15)
DEFAULT_THRESHOLD = 0.81


def fuse(descriptors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Unit descriptors of the same faces from several encoders -> one unit descriptor per face."""
    scale = np.sqrt(np.asarray(weights, dtype=np.float64) / float(np.sum(weights)))
    return np.concatenate([s * np.asarray(d, dtype=np.float32) for s, d in zip(scale, descriptors)], axis=-1).astype(np.float32)


class FusedFaceEncoder:
    """Several face encoders at once; similarities are their weighted mean."""

    def __init__(self, parts: Sequence[FaceEncoder], weights: Sequence[float]):
        weights = tuple(float(w) for w in weights)
        if len(parts) < 2 or len(weights) != len(parts):
            raise FaceError(f"a fused face encoder needs two or more parts and one weight per part, not {len(parts)} and {len(weights)}")
        if min(weights) < 0 or sum(weights) <= 0:
            raise FaceError(f"fusion weights must be non-negative and not all zero, not {list(weights)}")
        self.parts = list(parts)
        self.weights = weights
        self.dim = sum(part.dim for part in self.parts)
        share = np.asarray(weights) / sum(weights)
        # a fused similarity is the weighted mean of the parts' ones, and so, roughly, is its threshold
        self.default_threshold = float(sum(s * part.default_threshold for s, part in zip(share, self.parts)))
        if self._is_default(share):
            self.default_threshold = DEFAULT_THRESHOLD

    def _is_default(self, share: np.ndarray) -> bool:
        """Whether these are the default parts (with their default settings) and weights, whose threshold was measured."""
        defaults = [face_encoder_from_record({"type": name}).record() for name in DEFAULT_PARTS]
        return [part.record() for part in self.parts] == defaults and np.allclose(share, np.asarray(DEFAULT_WEIGHTS) / sum(DEFAULT_WEIGHTS))

    def describe(self, image: np.ndarray, faces: Sequence[Landmarks], views: tuple[View, ...]) -> np.ndarray:
        return fuse([part.describe(image, faces, views) for part in self.parts], self.weights)

    def record(self) -> dict:
        return {"type": "fusion", "dim": self.dim, "parts": [part.record() for part in self.parts], "weights": list(self.weights)}


def _from_record(record: dict) -> FusedFaceEncoder:
    parts = record.get("parts") or [{"type": name} for name in DEFAULT_PARTS]
    return FusedFaceEncoder([face_encoder_from_record(part) for part in parts], record.get("weights", DEFAULT_WEIGHTS))


register_face_encoder("fusion", _from_record)
