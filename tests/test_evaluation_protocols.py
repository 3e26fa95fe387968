"""Protocol readers (labeled, UKBench, Holidays, Oxford, revisited) and scoring with hand-made vectors."""

import os
import pickle

import numpy as np
import pytest

from cbir.evaluation import metrics as m
from cbir.evaluation import protocols
from cbir.evaluation.benchmark import score_queries

P, N, J = m.POSITIVE, m.NEGATIVE, m.JUNK


def touch_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not decoded by the readers")
    return [folder / name for name in names]


def test_labeled_from_class_folders_is_leave_one_out(tmp_path):
    touch_images(tmp_path / "cats", ["a.jpg", "b.jpg"])
    touch_images(tmp_path / "dogs", ["c.png"])
    benchmark = protocols.labeled(tmp_path)
    assert [ref.path.name for ref in benchmark.database] == ["a.jpg", "b.jpg", "c.png"]
    assert benchmark.queries == benchmark.database
    assert benchmark.exclude.tolist() == [0, 1, 2]
    assert benchmark.truths[""].judgement(slice(0, 3)).tolist() == [[P, P, N], [P, P, N], [N, N, P]]


def test_labeled_csv_with_header_and_names(tmp_path):
    touch_images(tmp_path / "images", ["0.jpg", "1.jpg", "2.jpg"])
    (tmp_path / "labels.csv").write_text("filename,class_id,class_name\nimages/0.jpg,0,sea\nimages/1.jpg,0,sea\nimages/2.jpg,1,bus\n")
    benchmark = protocols.labeled(tmp_path, tmp_path / "labels.csv")
    assert benchmark.database[2].path == tmp_path / "images" / "2.jpg"
    assert benchmark.class_names == {"0": "sea", "1": "bus"}
    assert benchmark.query_labels.tolist() == ["0", "0", "1"]


def test_labeled_query_split_takes_the_rest_as_database(tmp_path):
    touch_images(tmp_path, ["0.jpg", "1.jpg", "2.jpg", "3.jpg"])
    (tmp_path / "all.csv").write_text("0.jpg,a\n1.jpg,a\n2.jpg,b\n3.jpg,b\n")
    (tmp_path / "queries.csv").write_text("0.jpg,a\n2.jpg,b\n")
    benchmark = protocols.labeled(tmp_path, tmp_path / "all.csv", queries=tmp_path / "queries.csv")
    assert [ref.path.name for ref in benchmark.queries] == ["0.jpg", "2.jpg"]
    assert [ref.path.name for ref in benchmark.database] == ["1.jpg", "3.jpg"]
    assert benchmark.exclude is None
    assert benchmark.truths[""].judgement(slice(0, 2)).tolist() == [[P, N], [N, P]]


def test_labeled_rejects_a_folder_without_classes(tmp_path):
    touch_images(tmp_path, ["0.jpg"])
    with pytest.raises(ValueError, match="class subfolders"):
        protocols.labeled(tmp_path)


def test_ukbench_groups_of_four_and_ns_score(tmp_path):
    touch_images(tmp_path, [f"ukbench{i:05d}.jpg" for i in range(8)])
    benchmark = protocols.ukbench(tmp_path)
    assert benchmark.query_labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert benchmark.exclude is None  # the query itself counts in the N-S score
    vectors = np.eye(8, dtype=np.float32)
    vectors[:4, 0] = 1.0  # first object: all four views alike
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores, _, _ = score_queries(vectors, vectors, benchmark.truths, None, benchmark.ks)
    summary = protocols.summarise_ukbench(scores)
    # object 0: its four views are the top 4; object 1: only the query itself
    assert summary["N-S"] == pytest.approx((4 * 4 + 4 * 1) / 8)


def test_ukbench_rejects_incomplete_groups(tmp_path):
    touch_images(tmp_path, [f"ukbench{i:05d}.jpg" for i in range(6)])
    with pytest.raises(ValueError, match="groups need 4"):
        protocols.ukbench(tmp_path)


def test_holidays_first_of_each_group_queries_without_itself(tmp_path):
    touch_images(tmp_path, ["100000.jpg", "100001.jpg", "100002.jpg", "100100.jpg", "100101.jpg"])
    benchmark = protocols.holidays(tmp_path)
    assert [ref.path.name for ref in benchmark.queries] == ["100000.jpg", "100100.jpg"]
    assert benchmark.exclude.tolist() == [0, 3]
    # query 0 ranks: itself (excluded), 100100 (wrong), 100001, 100002 -> trapezoid AP
    vectors = np.array([[1, 0, 0], [0.6, 0.8, 0], [0.5, 0, 0.866], [0.9, 0.436, 0], [0, 1, 0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[[0, 3]]
    scores, _, _ = score_queries(queries, vectors, benchmark.truths, benchmark.exclude, benchmark.ks)
    ap = scores[""].trapezoid_average_precision
    expected_first = ((0 / 1 + 1 / 2) / 2 + (1 / 2 + 2 / 3) / 2) / 2  # positives at ranks 1 and 2
    assert ap[0] == pytest.approx(expected_first)


def make_oxford(tmp_path):
    names = ["all_souls_000001", "all_souls_000002", "all_souls_000003", "magdalen_000001", "magdalen_000002"]
    touch_images(tmp_path / "jpg", [f"{name}.jpg" for name in names])
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "all_souls_1_query.txt").write_text("oxc1_all_souls_000001 10.0 20.0 110.5 220.0\n")
    (gt / "all_souls_1_good.txt").write_text("all_souls_000001\nall_souls_000002\n")
    (gt / "all_souls_1_ok.txt").write_text("all_souls_000003\n")
    (gt / "all_souls_1_junk.txt").write_text("magdalen_000002\nnot_in_the_folder\n")
    return tmp_path / "gt", tmp_path / "jpg"


def test_oxford_text_ground_truth(tmp_path):
    benchmark = protocols.oxford(*make_oxford(tmp_path))
    query = benchmark.queries[0]
    assert query.path.name == "all_souls_000001.jpg" and query.box == (10.0, 20.0, 110.5, 220.0)
    assert benchmark.truths[""].judgement(slice(0, 1)).tolist() == [[P, P, P, N, J]]
    assert benchmark.config["ground_truth_images_missing"] == 1


def test_oxford_scoring_ignores_junk(tmp_path):
    benchmark = protocols.oxford(*make_oxford(tmp_path))
    # ranking: all_souls_1, magdalen_2 (junk), magdalen_1 (wrong), all_souls_2, all_souls_3
    database = np.array([[1.0, 0], [0.6, 0.8], [0.5, 0.866], [0.8, 0.6], [0.9, 0.436]], dtype=np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    scores, top, _ = score_queries(np.array([[1.0, 0]], np.float32), database, benchmark.truths, None, (1, 5))
    assert top[0].tolist() == [0, 4, 3, 1, 2]
    # without junk: P N P P -> trapezoid steps
    expected = ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2 + (2 / 3 + 3 / 4) / 2) / 3
    assert scores[""].trapezoid_average_precision[0] == pytest.approx(expected)
    assert protocols.summarise_trapezoid(scores)["mAP"] == pytest.approx(100 * expected)


def write_revisited(tmp_path):
    names = ["a", "b", "c", "d", "e"]
    touch_images(tmp_path / "jpg", [f"{name}.jpg" for name in names])
    gnd = {
        "imlist": names,
        "qimlist": ["a"],
        "gnd": [{"bbx": np.array([1.0, 2.0, 30.0, 40.0]), "easy": np.array([0]), "hard": np.array([1, 2]), "junk": np.array([3])}],
    }
    path = tmp_path / "gnd_rtest.pkl"
    path.write_bytes(pickle.dumps(gnd))
    return path, tmp_path / "jpg"


def test_revisited_setups(tmp_path):
    benchmark = protocols.oxford(*write_revisited(tmp_path))
    assert benchmark.queries[0].box == (1.0, 2.0, 30.0, 40.0)
    judged = {setup: truth.judgement(slice(0, 1))[0].tolist() for setup, truth in benchmark.truths.items()}
    assert judged == {"Easy": [P, J, J, J, N], "Medium": [P, P, P, J, N], "Hard": [J, P, P, J, N]}


def test_revisited_summary_names(tmp_path):
    benchmark = protocols.oxford(*write_revisited(tmp_path))
    vectors = np.eye(5, dtype=np.float32)
    vectors[1, 0] = vectors[2, 0] = 0.5
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores, _, _ = score_queries(vectors[:1], vectors, benchmark.truths, None, (1, 5, 10))
    summary = protocols.summarise_revisited(scores)
    assert summary["Easy mAP"] == pytest.approx(100.0)
    assert summary["Hard mAP"] == pytest.approx(100.0)  # the easy image at rank 1 is junk for Hard
    assert set(summary) >= {"Medium mAP", "Medium mP@10", "Hard mP@1"}


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo unsafe",))


def test_revisited_reader_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "gnd_evil.pkl"
    path.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [Exploit()]}))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        protocols.read_revisited(path)
