"""Retrieval metrics on small rankings computed by hand."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cbir.evaluation import metrics as m

P, N, J = m.POSITIVE, m.NEGATIVE, m.JUNK


def hits_of(*rows, n_positive=None):
    """RankedHits for rows of judgements already in rank order."""
    width = max(len(row) for row in rows)
    judgement = np.full((len(rows), width), N, dtype=np.int8)
    for i, row in enumerate(rows):
        judgement[i, : len(row)] = row
    ranking = np.tile(np.arange(width), (len(rows), 1))
    hits = m.ranked_hits(ranking, judgement)
    if n_positive is not None:
        hits = m.RankedHits(hits.query, hits.order, hits.rank, np.asarray(n_positive))
    return hits


def test_ranked_hits_follow_the_ranking_and_skip_junk():
    judgement = np.array([[N, P, J, P, N]])
    ranking = np.array([[1, 2, 0, 3, 4]])  # -> P J N P N -> without junk: P N P N
    hits = m.ranked_hits(ranking, judgement)
    assert hits.rank.tolist() == [0, 2]
    assert hits.order.tolist() == [0, 1]
    assert hits.n_positive.tolist() == [2]


def test_average_precision_by_hand():
    hits = hits_of([P, N, P, N, N])
    assert m.average_precision(hits)[0] == pytest.approx((1 + 2 / 3) / 2)


def test_junk_is_removed_not_counted_as_wrong():
    with_junk = hits_of([P, J, N, P])
    assert m.average_precision(with_junk)[0] == pytest.approx((1 + 2 / 3) / 2)
    assert m.precision_at_k(with_junk, 3)[0] == pytest.approx(2 / 3)
    as_negative = hits_of([P, N, N, P])
    assert m.average_precision(as_negative)[0] == pytest.approx((1 + 2 / 4) / 2)


def test_junk_before_every_positive_shifts_nothing():
    hits = hits_of([J, J, P, J, P])
    assert m.average_precision(hits)[0] == pytest.approx(1.0)
    assert m.trapezoid_average_precision(hits)[0] == pytest.approx(1.0)


def test_trapezoid_average_precision_matches_oxford_steps():
    # positives at ranks 0 and 2 of 2: (1 + 1)/2 * 1/2 + (1/2 + 2/3)/2 * 1/2
    hits = hits_of([P, N, P])
    expected = (1 + 1) / 2 / 2 + (1 / 2 + 2 / 3) / 2 / 2
    assert m.trapezoid_average_precision(hits)[0] == pytest.approx(expected)
    # junk in between is skipped exactly as the reference code shifts ranks
    assert m.trapezoid_average_precision(hits_of([P, J, J, N, P]))[0] == pytest.approx(expected)


def test_positives_not_reached_count_as_missed():
    hits = hits_of([P, N, P], n_positive=[3])
    assert m.average_precision(hits)[0] == pytest.approx((1 + 2 / 3) / 3)


def test_query_without_positives_is_nan():
    hits = hits_of([N, N, N], [P, N, N])
    ap = m.average_precision(hits)
    assert np.isnan(ap[0]) and ap[1] == 1.0
    assert np.isnan(m.map_at_r(hits)[0])


def test_precision_recall_and_hits_at_k():
    hits = hits_of([P, N, P, N, N], [N, N, P, N, N])
    assert m.precision_at_k(hits, 1).tolist() == [1.0, 0.0]
    assert m.precision_at_k(hits, 5).tolist() == [0.4, 0.2]
    assert m.hits_at_k(hits, 3).tolist() == [2, 1]
    assert m.recall_at_k(hits, 2).tolist() == [1.0, 0.0]
    assert m.recall_at_k(hits, 3).tolist() == [1.0, 1.0]


def test_average_precision_at_k_and_map_at_r():
    hits = hits_of([P, N, P, N, N])
    assert m.average_precision_at_k(hits, 2)[0] == pytest.approx(1.0)  # one positive in the top 2, at rank 1
    assert m.average_precision_at_k(hits, 3)[0] == pytest.approx((1 + 2 / 3) / 2)
    many = hits_of([N, P, P, N, P], n_positive=[10])
    assert m.average_precision_at_k(many, 3)[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m.average_precision_at_k(hits_of([N, N, P]), 2)[0] == 0.0
    # R = 2: of the first 2 results only the first is positive
    assert m.map_at_r(hits)[0] == pytest.approx(1 / 2)


def test_revisited_precision_divides_by_last_positive_rank():
    hits = hits_of([P, N, P, N, N, N])
    assert m.revisited_precision_at_k(hits, 1)[0] == pytest.approx(1.0)
    assert m.revisited_precision_at_k(hits, 2)[0] == pytest.approx(1 / 2)
    assert m.revisited_precision_at_k(hits, 5)[0] == pytest.approx(2 / 3)  # last positive at rank 3
    assert m.precision_at_k(hits, 5)[0] == pytest.approx(2 / 5)


def test_interpolated_precision():
    hits = hits_of([P, N, P])
    curve = m.interpolated_precision(hits, np.array([0.0, 0.5, 0.75, 1.0]))
    assert curve[0] == pytest.approx([1.0, 1.0, 2 / 3, 2 / 3])
    missed = m.interpolated_precision(hits_of([P, N], n_positive=[2]), np.array([0.5, 1.0]))
    assert missed[0] == pytest.approx([1.0, 0.0])


def test_average_precision_agrees_with_scikit_learn():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(20, 60))
    judgement = (rng.random((20, 60)) < 0.2).astype(np.int8)
    judgement[:, 0] = P
    ranking = np.argsort(-scores, axis=1)
    ours = m.average_precision(m.ranked_hits(ranking, judgement))
    reference = [average_precision_score(judgement[q], scores[q]) for q in range(20)]
    assert ours == pytest.approx(reference)
