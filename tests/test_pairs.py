import numpy as np
import pytest

from cbir.evaluation.pairs import best_threshold, read_pairs, score_pairs, tar_at_far, verification_report


def test_read_lfw_format(tmp_path):
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t3\nCid\t2\t4\nBob\t1\tCid\t1\n")
    pairs = read_pairs(tmp_path / "pairs.txt", tmp_path / "img")
    assert [p.same for p in pairs] == [True, False, True, False]
    assert [p.fold for p in pairs] == [0, 0, 1, 1]
    assert pairs[1].second == tmp_path / "img" / "Bob" / "Bob_0003.jpg"


def test_read_rejects_wrong_counts(tmp_path):
    (tmp_path / "pairs.txt").write_text("2\t1\nAnn\t1\t2\n")
    with pytest.raises(ValueError, match="header promises"):
        read_pairs(tmp_path / "pairs.txt", tmp_path)


def test_headerless_pairs_file(tmp_path):
    (tmp_path / "p.txt").write_text("a.jpg b.jpg 1\na.jpg c.jpg 0\n")
    pairs = read_pairs(tmp_path / "p.txt", tmp_path)
    assert [p.same for p in pairs] == [True, False]


def test_best_threshold_separates():
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    same = np.array([True, True, False, False])
    threshold = best_threshold(scores, same)
    assert 0.3 < threshold <= 0.8


def test_verification_report_by_hand():
    # fold 0: perfectly separable at 0.5; fold 1 has one same pair scored low.
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.3, 0.2, 0.1])
    same = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    report = verification_report(scores, same, folds, far=0.25)
    # threshold from fold 1 (best between 0.2 and 0.3 -> 0.25) gives fold 0 4/4;
    # threshold from fold 0 (0.2..0.8 -> midpoint 0.5 or 0.15..) on fold 1: 0.3 misses -> 3/4.
    assert report["fold_accuracies"][0] == 100.0
    assert report["fold_accuracies"][1] == 75.0
    assert report["accuracy"] == 87.5
    assert report["roc_auc"] == 100.0  # every same pair outscores every different one


def test_tar_at_far():
    scores = np.array([0.9, 0.6, 0.4, 0.5, 0.1])
    same = np.array([1, 1, 1, 0, 0], bool)
    tar, threshold = tar_at_far(scores, same, far=0.0)
    assert tar == pytest.approx(2 / 3) and threshold == pytest.approx(0.6)


def test_score_pairs_reports_missing_embeddings(tmp_path):
    (tmp_path / "p.txt").write_text("a b 1\na c 0\n")
    pairs = read_pairs(tmp_path / "p.txt", tmp_path)
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 0.1]), "c": None}
    scores, failed = score_pairs(pairs, lambda path: vectors[path.name])
    assert scores[0] == pytest.approx(1 / np.sqrt(1.01))
    assert np.isnan(scores[1]) and failed == [pairs[1]]
