"""Hard-negative mining from a re-sampled pool (Radenovic et al., 2016/2018), and tuple batches.

Every epoch a pool of training images is drawn at random and embedded with
the current network. Each query image gets a random positive of its class
and the ``negatives`` pool images of other classes closest to it, at most
one per class when there are enough classes (near-duplicates of one class
would otherwise fill the list). Training then runs on these tuples.

Tuples are turned into the index tuples pytorch-metric-learning losses
take: pairs ``(a1, p, a2, n)`` for the contrastive loss, triplets
``(a, p, n)`` for the triplet loss.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


class PoolHardNegatives:
    """Builds ``(query, positive, negative_1..k)`` tuples with hard negatives from a fresh pool."""

    def __init__(self, negatives: int = 5, pool_size: int = 2000, queries: int | None = None):
        if negatives < 1:
            raise ValueError("pool mining needs at least one negative per query")
        self.negatives = negatives
        self.pool_size = pool_size
        self.queries = queries

    def tuples(
        self, labels: np.ndarray, train: np.ndarray, embed: Callable[[np.ndarray], torch.Tensor], rng: np.random.Generator
    ) -> np.ndarray:
        """Rows of image indices: query, positive, then ``negatives`` hard negatives."""
        train_labels = labels[train]
        counts = {label: int((train_labels == label).sum()) for label in np.unique(train_labels)}
        eligible = train[np.array([counts[label] > 1 for label in train_labels], dtype=bool)]
        if len(counts) < 2 or not len(eligible):
            raise ValueError("pool mining needs at least two classes and a class with two images")
        queries = rng.permutation(eligible)[: self.queries or len(eligible)]
        pool = rng.permutation(train)[: self.pool_size]
        pool_vectors = embed(pool)
        query_vectors = embed(queries)
        similarity = (query_vectors @ pool_vectors.T).numpy()
        one_per_class = len(counts) - 1 >= self.negatives
        rows = []
        for row, query in enumerate(queries):
            label = labels[query]
            same = train[(train_labels == label) & (train != query)]
            positive = int(rng.choice(same))
            chosen: list[int] = []
            seen_classes: set[int] = set()
            for column in np.argsort(-similarity[row]):
                candidate = int(pool[column])
                candidate_label = int(labels[candidate])
                if candidate_label == label or (one_per_class and candidate_label in seen_classes):
                    continue
                chosen.append(candidate)
                seen_classes.add(candidate_label)
                if len(chosen) == self.negatives:
                    break
            if chosen:
                chosen += [chosen[-1]] * (self.negatives - len(chosen))
                rows.append([int(query), positive, *chosen])
        return np.array(rows, dtype=np.int64)


def index_tuple(rows: np.ndarray, kind: str, loss: str) -> tuple[torch.Tensor, ...]:
    """pytorch-metric-learning index tuples for a batch whose images are ``np.unique(rows)`` in order.

    ``kind`` is ``pairs`` (rows ``a, b, same``) or ``tuples`` (rows ``query,
    positive, negative...``, which includes triplets files).
    """
    images, inverse = np.unique(rows[:, :2] if kind == "pairs" else rows, return_inverse=True)
    positions = torch.from_numpy(inverse.reshape(len(rows), -1))
    if kind == "pairs":
        same = torch.from_numpy(rows[:, 2] == 1)
        first, second = positions[:, 0], positions[:, 1]
        if loss != "contrastive":
            raise ValueError("a pairs file trains the contrastive loss (--loss contrastive); give triplets for the triplet loss")
        return first[same], second[same], first[~same], second[~same]
    query, positive, negatives = positions[:, 0], positions[:, 1], positions[:, 2:]
    count = negatives.shape[1]
    if loss == "contrastive":
        return query, positive, query.repeat_interleave(count), negatives.reshape(-1)
    return query.repeat_interleave(count), positive.repeat_interleave(count), negatives.reshape(-1)


def batch_images(rows: np.ndarray, kind: str) -> np.ndarray:
    """The distinct images of a batch of tuples, in the order ``index_tuple`` assumes."""
    return np.unique(rows[:, :2] if kind == "pairs" else rows)
