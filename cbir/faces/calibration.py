"""Match thresholds that mean something: chosen on labeled pairs for a target false-accept rate.

Scores are cosine similarities of L2-normalised face descriptors (a pair is
"same" when its similarity is at least the threshold); the Euclidean
distance of the normalised vectors is ``sqrt(2 - 2 * similarity)``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cbir.io.atomic import atomic_write

CALIBRATION_FILE = "faces-calibration.json"
# Without a calibration, each encoder's ``default_threshold``: the similarity that best separated same
# from different people on the LFW pairs of ../shared/data/lfw_dev (bench/faces); calibrate on your data.
DEFAULT_SOURCE = "default of the face encoder (best accuracy on LFW dev pairs; run 'cbir faces calibrate' for your own data)"


def similarity_to_distance(similarity: float) -> float:
    """Euclidean distance between unit vectors whose cosine similarity is ``similarity``."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


@dataclass
class Calibration:
    """A threshold, the false-accept rate it was chosen for, and what it achieved on the calibration pairs."""

    threshold: float
    target_far: float
    far: float
    tar: float
    same_pairs: int
    different_pairs: int
    source: str
    encoder: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def distance(self) -> float:
        return similarity_to_distance(self.threshold)

    def describe(self) -> str:
        text = (
            f"threshold {self.threshold:.4f} (distance {self.distance:.4f}) for FAR <= {self.target_far:g}: "
            f"measured FAR {self.far:.2g}, TAR {100 * self.tar:.2f} % on {self.same_pairs} same / "
            f"{self.different_pairs} different pairs from {self.source}"
        )
        if self.different_pairs * self.target_far < 1:
            text += (
                f"; only {self.different_pairs} different pairs, so the rate is no finer than "
                f"{1 / max(self.different_pairs, 1):.1g}: the threshold is the one that accepts none of them"
            )
        return text

    def save(self, collection_path: Path) -> Path:
        """Store this calibration in the collection, replacing the one of the same encoder (others are kept)."""
        path = Path(collection_path) / CALIBRATION_FILE
        kept = [c for c in _stored(path) if c.encoder != self.encoder]
        with atomic_write(path) as stream:
            stream.write(json.dumps([asdict(c) for c in kept + [self]], indent=2).encode())
        return path

    @classmethod
    def load(cls, collection_path: Path, encoder: dict) -> "Calibration | None":
        """The calibration stored in the collection for ``encoder`` (a face space record), if any."""
        return next((c for c in _stored(Path(collection_path) / CALIBRATION_FILE) if c.encoder == encoder), None)


def _stored(path: Path) -> list[Calibration]:
    """Every calibration in a calibration file (one per encoder; a single object in older files)."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return [Calibration(**entry) for entry in (data if isinstance(data, list) else [data])]


def threshold_for_far(scores: np.ndarray, same: np.ndarray, target_far: float) -> tuple[float, float, float]:
    """(threshold, FAR, TAR): the lowest threshold accepting at most ``target_far`` of the different pairs."""
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    keep = ~np.isnan(scores)
    scores, same = scores[keep], same[keep]
    different = np.sort(scores[~same])[::-1]
    positives = scores[same]
    if not len(different) or not len(positives):
        raise ValueError("calibration needs both same-person and different-person pairs")
    if not 0.0 <= target_far < 1.0:
        raise ValueError(f"the target false-accept rate must be in [0, 1), not {target_far}")
    allowed = int(math.floor(target_far * len(different)))
    threshold = float(np.nextafter(different[allowed], np.inf))
    far = float(np.mean(different >= threshold))
    tar = float(np.mean(positives >= threshold))
    return threshold, far, tar


def labeled_pair_scores(vectors: np.ndarray, labels: list[str], max_different: int = 500_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, same) of every same-label pair and of up to ``max_different`` different-label pairs."""
    vectors = np.asarray(vectors, dtype=np.float32)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    similarities = vectors @ vectors.T
    first, second = np.triu_indices(len(vectors), k=1)
    same = codes[first] == codes[second]
    different_positions = np.flatnonzero(~same)
    if len(different_positions) > max_different:
        rng = np.random.default_rng(seed)
        different_positions = rng.choice(different_positions, max_different, replace=False)
    chosen = np.concatenate([np.flatnonzero(same), different_positions])
    return similarities[first[chosen], second[chosen]], same[chosen]
