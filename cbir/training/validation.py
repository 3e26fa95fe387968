"""Held-out validation for training: which images validate, and how well they are retrieved.

Two ways to hold out, as in retrieval benchmarks:

* ``classes``: whole classes are kept out of training; every held-out image
  queries the other held-out images (leave-one-out). Measures transfer to
  unseen classes (faces of new people, new object categories).
* ``images``: some images of every class are kept out; each queries the
  training images. Measures generalisation to new images of known classes,
  and rewards specialising to them: a run picked on it can search unseen
  classes worse than it could.

``auto`` holds out classes whenever the labels leave at least two classes
to hold out and three to train on, since a fine-tuned encoder is mostly
used to search classes it never saw; with fewer classes (or a data set's
own validation split) it falls back to images and says why.

Retrieval metrics come from pytorch-metric-learning's ``AccuracyCalculator``
(P@1, MAP@R, mAP), in percent. Pairs and triplets files validate on held-out
tuples: ROC AUC of pair similarities, or the share of triplets ranked right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import roc_auc_score

MODES = ("auto", "classes", "images", "none")
RETRIEVAL_METRICS = ("P@1", "MAP@R", "mAP")
_CALCULATOR_NAMES = {"precision_at_1": "P@1", "mean_average_precision_at_r": "MAP@R", "mean_average_precision": "mAP"}
MIN_HELD_CLASSES = 2
MIN_TRAIN_CLASSES = 3


@dataclass(frozen=True)
class ValidationSplit:
    """Training images, validation queries and the database they search."""

    train: np.ndarray
    queries: np.ndarray
    database: np.ndarray
    mode: str
    note: str = ""  # why ``auto`` did not hold out classes, when it did not

    @property
    def leave_one_out(self) -> bool:
        return self.mode == "classes"

    def describe(self) -> str:
        if self.mode == "none":
            return "no validation"
        if self.mode == "classes":
            return f"{len(self.queries)} images of held-out classes, each querying the others"
        held = f"{len(self.queries)} held-out images querying the {len(self.database)} training images"
        return f"{held} ({self.note})" if self.note else held


def split_labelled(
    labels: np.ndarray, usable: np.ndarray, mode: str = "auto", fraction: float = 0.2, seed: int = 0,
    fixed_queries: np.ndarray | None = None,
) -> ValidationSplit:
    """Split the ``usable`` image indices for training and validation.

    ``auto`` holds out classes when at least 2 can be held out and 3 are
    left to train on, else images (``note`` says why). ``fixed_queries``
    (such as MedMNIST's val split) are validation queries against all other
    usable images.
    """
    if mode not in MODES:
        raise ValueError(f"unknown validation mode {mode!r}: choose one of {', '.join(MODES)}")
    usable = np.asarray(usable, dtype=np.int64)
    if fixed_queries is not None and mode in ("auto", "images"):
        queries = np.intersect1d(fixed_queries, usable)
        train = np.setdiff1d(usable, queries)
        note = "the data's own validation split (images of the training classes)" if mode == "auto" else ""
        return ValidationSplit(train, queries, train, "images", note)
    if fixed_queries is not None:
        usable = np.setdiff1d(usable, fixed_queries)
    if mode == "none":
        return ValidationSplit(usable, usable[:0], usable[:0], "none")
    if not 0 < fraction < 1:
        raise ValueError("the validation fraction must be between 0 and 1")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels[usable], return_counts=True)
    searchable = classes[counts >= 2]  # a held-out class needs a second image for its queries to find
    held = max(MIN_HELD_CLASSES, round(len(classes) * fraction))
    note = ""
    if mode == "auto":
        mode = "classes" if len(searchable) >= held and len(classes) - held >= MIN_TRAIN_CLASSES else "images"
        if mode == "images":
            note = (f"{len(classes)} classes are too few to hold {held} out and train on {MIN_TRAIN_CLASSES}: held-out images "
                    "of the training classes validate, which favours specialising to them over new classes")
    if mode == "classes":
        if len(searchable) < held or len(classes) - held < 2:
            raise ValueError(f"{len(classes)} classes are too few to hold some out; validate on held-out images (--val images)")
        held_classes = rng.choice(searchable, size=held, replace=False)
        queries = usable[np.isin(labels[usable], held_classes)]
        return ValidationSplit(usable[~np.isin(labels[usable], held_classes)], queries, queries, "classes")
    queries = []
    for label in classes:
        members = rng.permutation(usable[labels[usable] == label])
        if len(members) >= 3:
            queries.append(members[: max(1, round(len(members) * fraction))])
    if not queries:
        raise ValueError("no class has enough images to hold some out for validation; use --val none")
    queries = np.sort(np.concatenate(queries))
    train = np.setdiff1d(usable, queries)
    return ValidationSplit(train, queries, train, "images", note)


def split_tuples(count: int, fraction: float = 0.2, seed: int = 0, enabled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of tuples for training and for validation."""
    order = np.random.default_rng(seed).permutation(count)
    if not enabled:
        return np.sort(order), order[:0]
    held = int(round(count * fraction))
    if held < 2 or count - held < 2:
        raise ValueError(f"{count} tuples are too few to hold some out for validation; use --val none")
    return np.sort(order[held:]), np.sort(order[:held])


def retrieval_metrics(
    queries: torch.Tensor, query_labels: np.ndarray, database: torch.Tensor, database_labels: np.ndarray, leave_one_out: bool
) -> dict[str, float]:
    """P@1, MAP@R and mAP (percent) of ``queries`` searching ``database`` (cosine similarity)."""
    calculator = AccuracyCalculator(include=tuple(_CALCULATOR_NAMES), k="max_bin_count", device=torch.device("cpu"))
    with torch.no_grad():
        found = calculator.get_accuracy(
            queries.float().cpu(), torch.as_tensor(query_labels), database.float().cpu(), torch.as_tensor(database_labels),
            ref_includes_query=leave_one_out,
        )
    return {_CALCULATOR_NAMES[name]: 100.0 * value for name, value in found.items()}


def pair_metrics(first: torch.Tensor, second: torch.Tensor, same: np.ndarray) -> dict[str, float]:
    """ROC AUC (percent) of cosine similarity separating same from different pairs."""
    similarity = (first * second).sum(dim=1).cpu().numpy()
    return {"AUC": 100.0 * float(roc_auc_score(same, similarity))}


def triplet_metrics(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> dict[str, float]:
    """Share (percent) of triplets whose positive is closer to the anchor than the negative."""
    right = ((anchor * positive).sum(dim=1) > (anchor * negative).sum(dim=1)).float().mean()
    return {"triplet accuracy": 100.0 * float(right)}
