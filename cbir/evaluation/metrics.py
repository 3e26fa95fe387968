"""Retrieval metrics from ranked lists whose items are positive, negative or junk.

Ground truth is a *judgement* per (query, database item): ``POSITIVE``,
``NEGATIVE`` or ``JUNK``. Junk items are removed from a ranking before any
metric is computed, as in the Oxford/Paris evaluation code: they neither
count as hits nor push later items down. Leave-one-out protocols mark each
query's own image junk.

Every metric is computed from ``RankedHits``: where each query's positives
landed once junk is removed. A ranking may be cut short (top-k search);
positives it does not reach count as never retrieved.

Two averages of precision are provided:

* ``average_precision``: the usual non-interpolated AP, the mean over all
  positives of the precision at each positive's rank (0 for those missed).
* ``trapezoid_average_precision``: the area under the precision-recall
  steps by the trapezoid rule, as the Oxford/Paris (and revisited) and INRIA
  Holidays evaluation code computes it.

Metrics are per query (arrays); queries without positives get NaN where a
metric is undefined for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITIVE, NEGATIVE, JUNK = 1, 0, -1


@dataclass(frozen=True)
class RankedHits:
    """The positives found in each query's ranking: one entry per found positive, in rank order."""

    query: np.ndarray  # query row of the positive
    order: np.ndarray  # 0-based index of the positive among its query's found positives
    rank: np.ndarray  # 0-based rank once junk is removed
    n_positive: np.ndarray  # positives of each query, found or not

    @property
    def n_queries(self) -> int:
        return len(self.n_positive)

    def per_query(self, weights: np.ndarray) -> np.ndarray:
        """Sum of ``weights`` (one per found positive) for each query."""
        return np.bincount(self.query, weights=weights, minlength=self.n_queries)

    def divided(self, totals: np.ndarray, denominators: np.ndarray) -> np.ndarray:
        """``totals / denominators``, NaN for queries without positives."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_positive > 0, totals / np.maximum(denominators, 1), np.nan)


def ranked_hits(ranking: np.ndarray, judgement: np.ndarray) -> RankedHits:
    """Locate the positives of each query in its ranking, junk removed.

    ``ranking`` (Q x K) holds database indices best first (K may be smaller
    than the database); ``judgement`` (Q x N) judges every database item for
    every query.
    """
    judgement = np.asarray(judgement)
    ranked = np.take_along_axis(judgement, np.asarray(ranking), axis=1)
    counted = ranked != JUNK
    ranks = np.cumsum(counted, axis=1) - 1
    query, column = np.nonzero(ranked == POSITIVE)
    starts = np.searchsorted(query, np.arange(len(ranked)))
    order = np.arange(len(query)) - starts[query]
    return RankedHits(query, order, ranks[query, column], (judgement == POSITIVE).sum(axis=1))


def _precision_at_hit(hits: RankedHits) -> np.ndarray:
    return (hits.order + 1.0) / (hits.rank + 1.0)


def average_precision(hits: RankedHits) -> np.ndarray:
    """Non-interpolated AP: precision summed at each positive, divided by the number of positives."""
    return hits.divided(hits.per_query(_precision_at_hit(hits)), hits.n_positive)


def trapezoid_average_precision(hits: RankedHits) -> np.ndarray:
    """AP as the Oxford/Paris and Holidays code computes it (trapezoids under the PR steps).

    The j-th positive (0-based) at rank r (0-based, junk removed) adds
    ``(p0 + p1) / 2 / n_positive`` with ``p0 = j / r`` (1 when r = 0) and
    ``p1 = (j + 1) / (r + 1)``.
    """
    left = np.where(hits.rank == 0, 1.0, hits.order / np.maximum(hits.rank, 1.0))
    area = (left + _precision_at_hit(hits)) / 2.0
    return hits.divided(hits.per_query(area), hits.n_positive)


def hits_at_k(hits: RankedHits, k: int) -> np.ndarray:
    """Number of positives among the first ``k`` results."""
    return hits.per_query((hits.rank < k).astype(float))


def precision_at_k(hits: RankedHits, k: int) -> np.ndarray:
    """Fraction of the first ``k`` results that are positive."""
    return hits_at_k(hits, k) / float(k)


def recall_at_k(hits: RankedHits, k: int) -> np.ndarray:
    """Recall@k in the metric-learning sense: 1 when a positive is among the first ``k``, else 0."""
    return (hits_at_k(hits, k) > 0).astype(float)


def average_precision_at_k(hits: RankedHits, k: int) -> np.ndarray:
    """mAP@k as the image-hashing and medical retrieval literature computes it (and
    pytorch-metric-learning's mean_average_precision): the precision at each positive within
    the first ``k``, averaged over those positives; 0 when none is within ``k``.

    It does not penalise missing positives that do fit in ``k``; MAP@R does.
    """
    within = hits.rank < k
    found = hits.per_query(within.astype(float))
    totals = hits.per_query(np.where(within, _precision_at_hit(hits), 0.0))
    return hits.divided(totals, found)


def map_at_r(hits: RankedHits) -> np.ndarray:
    """MAP@R (Musgrave et al. 2020): AP over the first R results, R = number of positives, divided by R."""
    within = np.where(hits.rank < hits.n_positive[hits.query], _precision_at_hit(hits), 0.0)
    return hits.divided(hits.per_query(within), hits.n_positive)


def revisited_precision_at_k(hits: RankedHits, k: int) -> np.ndarray:
    """mP@k of the revisited Oxford/Paris code: when the last positive found sits at 1-based
    rank L < k, the positives are divided by L instead of k."""
    last = np.zeros(hits.n_queries)
    np.maximum.at(last, hits.query, hits.rank + 1.0)
    cutoff = np.minimum(last, k)
    counted = hits.per_query((hits.rank + 1.0 <= cutoff[hits.query]).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cutoff > 0, counted / np.maximum(cutoff, 1), np.where(hits.n_positive > 0, 0.0, np.nan))


def interpolated_precision(hits: RankedHits, levels: np.ndarray) -> np.ndarray:
    """Interpolated precision (best precision at recall >= level) per query (rows) and recall level."""
    width = int(hits.n_positive.max(initial=0))
    precision = np.zeros((hits.n_queries, width + 1))
    precision[hits.query, hits.order] = _precision_at_hit(hits)
    best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    needed = np.ceil(np.outer(hits.n_positive, levels) - 1e-9).astype(np.int64)
    position = np.clip(needed - 1, 0, width)
    curves = np.take_along_axis(best_after, position, axis=1)
    return np.where(hits.n_positive[:, None] > 0, curves, np.nan)


def majority_vote_hits(top_labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """1 where the most frequent label among a query's first results (Q x k) is its own label, else 0.

    A tie counts as a hit when the query's label is among the tied labels (Mahbod et al. 2024's mMV@k).
    """
    hits = np.zeros(len(query_labels))
    for row, (labels, own) in enumerate(zip(np.asarray(top_labels), np.asarray(query_labels))):
        values, counts = np.unique(labels, return_counts=True)
        hits[row] = float(own in values[counts == counts.max()])
    return hits
