"""Metrics on time: shot boundary precision/recall/F1 with a tolerance, and temporal IoU of segments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class BoundaryScore:
    """Matches between found and true boundaries (each used at most once)."""

    true_positives: int
    found: int
    truth: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.found if self.found else float(self.truth == 0)

    @property
    def recall(self) -> float:
        return self.true_positives / self.truth if self.truth else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def __add__(self, other: "BoundaryScore") -> "BoundaryScore":
        return BoundaryScore(self.true_positives + other.true_positives, self.found + other.found, self.truth + other.truth)


def boundary_score(found: Sequence[int], truth: Sequence[int], tolerance: int = 2) -> BoundaryScore:
    """Greedy one-to-one matching of found to true boundaries (frame indices) within ``tolerance`` frames,
    closest pairs first, as the shot-boundary literature scores detectors."""
    found, truth = np.asarray(sorted(found), dtype=np.int64), np.asarray(sorted(truth), dtype=np.int64)
    if len(found) == 0 or len(truth) == 0:
        return BoundaryScore(0, len(found), len(truth))
    distance = np.abs(found[:, None] - truth[None, :])
    pairs = np.argwhere(distance <= tolerance)
    order = np.argsort(distance[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_found, used_truth, matched = set(), set(), 0
    for row, column in pairs[order]:
        if row not in used_found and column not in used_truth:
            used_found.add(row)
            used_truth.add(column)
            matched += 1
    return BoundaryScore(matched, len(found), len(truth))


def temporal_iou(first: tuple[float, float], second: tuple[float, float]) -> float:
    """Intersection over union of two time intervals (start, end) in seconds; 0 for disjoint ones."""
    intersection = max(0.0, min(first[1], second[1]) - max(first[0], second[0]))
    union = max(first[1], second[1]) - min(first[0], second[0])
    return intersection / union if union > 0 else float(first == second)
