"""Pair verification in the LFW protocol: read a pairs file, score pairs, report k-fold metrics.

Accuracy is k-fold: for each fold the threshold is the one that maximises
accuracy on the other folds, then applied to the held-out fold. ROC AUC and
the true-accept rate at a false-accept rate of 1e-3 are computed over all
pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

Embedder = Callable[[Path], "np.ndarray | None"]


@dataclass(frozen=True)
class Pair:
    first: Path
    second: Path
    same: bool
    fold: int


def read_pairs(path: str | Path, images: str | Path, suffix: str = ".jpg") -> list[Pair]:
    """Pairs of an LFW-format ``pairs.txt`` (header ``folds per_fold``, then per fold
    ``per_fold`` same-person lines ``name i j`` and ``per_fold`` different-person
    lines ``name1 i name2 j``), resolved to ``images/name/name_000i.jpg``.

    A header-less file of ``a b same`` lines (paths relative to ``images``,
    ``same`` 1 or 0) is read as one fold.
    """
    images, path = Path(images).expanduser(), Path(path).expanduser()
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no pairs")

    def face(name: str, number: str) -> Path:
        return images / name / f"{name}_{int(number):04d}{suffix}"

    header = lines[0]
    if len(header) == 2 and all(part.isdigit() for part in header):
        folds, per_fold = int(header[0]), int(header[1])
        body = lines[1:]
        if len(body) != folds * 2 * per_fold:
            raise ValueError(f"{path}: header promises {folds} x 2 x {per_fold} pairs, found {len(body)} lines")
        pairs = []
        for position, parts in enumerate(body):
            fold = position // (2 * per_fold)
            if len(parts) == 3:
                pairs.append(Pair(face(parts[0], parts[1]), face(parts[0], parts[2]), True, fold))
            elif len(parts) == 4:
                pairs.append(Pair(face(parts[0], parts[1]), face(parts[2], parts[3]), False, fold))
            else:
                raise ValueError(f"{path}: line {position + 2} is neither 'name i j' nor 'name1 i name2 j'")
        return pairs
    pairs = []
    for number, parts in enumerate(lines, start=1):
        if len(parts) != 3 or parts[2] not in ("0", "1"):
            raise ValueError(f"{path}: line {number} should be 'a b same' with same 0 or 1")
        pairs.append(Pair(images / parts[0], images / parts[1], parts[2] == "1", 0))
    return pairs


def score_pairs(pairs: Sequence[Pair], embed: Embedder) -> tuple[np.ndarray, list[Pair]]:
    """Cosine similarity of each pair's embeddings; pairs where an image yields none are returned apart."""
    cache: dict[Path, np.ndarray | None] = {}

    def vector(path: Path) -> np.ndarray | None:
        if path not in cache:
            cache[path] = embed(path)
        return cache[path]

    scores, failed = np.full(len(pairs), np.nan), []
    for position, pair in enumerate(pairs):
        first, second = vector(pair.first), vector(pair.second)
        if first is None or second is None:
            failed.append(pair)
            continue
        scores[position] = float(np.dot(first, second) / (np.linalg.norm(first) * np.linalg.norm(second) + 1e-12))
    return scores, failed


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The similarity threshold (same if score >= threshold) with the highest accuracy."""
    candidates = np.unique(scores)
    midpoints = np.concatenate([[candidates[0] - 1e-6], (candidates[:-1] + candidates[1:]) / 2, [candidates[-1] + 1e-6]])
    accuracies = [np.mean((scores >= t) == same) for t in midpoints]
    return float(midpoints[int(np.argmax(accuracies))])


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float]:
    """(true-accept rate, threshold) at the largest false-accept rate not above ``far``."""
    false_rates, true_rates, thresholds = roc_curve(same, scores)
    allowed = np.flatnonzero(false_rates <= far)
    best = allowed[-1]
    return float(true_rates[best]), float(thresholds[best])


def verification_report(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, far: float = 1e-3) -> dict:
    """k-fold accuracy (threshold from the other folds), ROC AUC and TAR@FAR, in percent.

    Pairs with a NaN score (no embedding) count as wrong in accuracy.
    """
    scores, same, folds = np.asarray(scores, float), np.asarray(same, bool), np.asarray(folds)
    valid = ~np.isnan(scores)
    fold_ids = np.unique(folds)
    accuracies, thresholds = [], []
    for fold in fold_ids:
        train = valid & (folds != fold) if len(fold_ids) > 1 else valid
        threshold = best_threshold(scores[train], same[train])
        test = folds == fold
        correct = (scores[test] >= threshold) == same[test]
        correct[~valid[test]] = False
        accuracies.append(correct.mean())
        thresholds.append(threshold)
    tar, tar_threshold = tar_at_far(scores[valid], same[valid], far)
    return {
        "accuracy": 100 * float(np.mean(accuracies)),
        "accuracy_std": 100 * float(np.std(accuracies)),
        "fold_accuracies": [100 * float(a) for a in accuracies],
        "thresholds": thresholds,
        "roc_auc": 100 * float(roc_auc_score(same[valid], scores[valid])),
        f"TAR@FAR={far:g}": 100 * tar,
        "tar_threshold": tar_threshold,
        "pairs": int(len(scores)),
        "pairs_without_embedding": int((~valid).sum()),
    }
