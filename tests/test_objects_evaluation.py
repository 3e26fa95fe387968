import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from cbir.detectors import Detections, coco_class_names
from cbir.evaluation import metrics
from cbir.evaluation.detection_ap import ClassDetections, class_average_precision
from cbir.evaluation.objects import (
    AnnotatedObject, ObjectSet, PhotoIndex, multiclass_judgement, multiclass_queries, object_judgement,
    query_object_vectors, read_objects, score_objects,
)
from cbir.search.regions import best_match, match_all

CAT, DOG, BACKGROUND = np.eye(3, dtype=np.float32)
COCO = coco_class_names()


def test_best_match_takes_the_best_item_of_each_photo():
    whole = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    regions = np.array([[0.0, 1.0], [0.8, 0.6], [1.0, 0.0]], np.float32)
    region_photo = np.array([0, 2, 2])
    scores = best_match(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), whole, regions, region_photo)
    np.testing.assert_allclose(scores, [[1.0, 0.0, 1.0], [1.0, 1.0, 0.8]], atol=1e-6)


def test_match_all_scores_the_weakest_object():
    whole = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]], np.float32)
    regions = np.stack([CAT, DOG, CAT])
    region_photo = np.array([0, 0, 1])  # photo 0: a cat and a dog; photo 1: a cat only
    scores = match_all(np.stack([CAT, DOG]), whole, regions, region_photo)
    assert scores.tolist() == pytest.approx([1.0, 0.0])


def test_voc_average_precision_by_hand():
    truth = {0: np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)}
    flags = {0: np.array([False, False])}
    found = ClassDetections(
        np.array([0, 0, 0]), np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], np.float32), np.array([0.9, 0.8, 0.7])
    )
    # hit, miss, hit: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3
    assert class_average_precision(found, truth, flags) == pytest.approx(0.5 + 1 / 3)
    # the same box found twice: the second is a miss; a difficult box is neither
    twice = ClassDetections(np.array([0, 0]), np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32), np.array([0.9, 0.8]))
    assert class_average_precision(twice, truth, flags) == pytest.approx(0.5)
    hard = {0: np.array([False, True])}
    assert class_average_precision(twice, truth, hard) == pytest.approx(1.0)
    assert math.isnan(class_average_precision(twice, truth, {0: np.array([True, True])}))


def three_photos() -> tuple[ObjectSet, PhotoIndex]:
    """Photo 0 holds a cat, photo 1 a cat and a dog, photo 2 a dog whose whole image looks like a cat scene."""
    boxes = {"cat": (0.0, 0.0, 10.0, 10.0), "dog": (10.0, 10.0, 20.0, 20.0)}
    objects = ObjectSet(
        [Path("p0.jpg"), Path("p1.jpg"), Path("p2.jpg")],
        [[AnnotatedObject("cat", boxes["cat"], False)],
         [AnnotatedObject("cat", boxes["cat"], False), AnnotatedObject("dog", boxes["dog"], False)],
         [AnnotatedObject("dog", boxes["dog"], False)]],
    )
    catlike, doglike = np.array([0.6, 0, 0.8], np.float32), np.array([0, 0.6, 0.8], np.float32)
    ids = {"cat": COCO.index("cat"), "dog": COCO.index("dog")}

    def found(*names: str) -> Detections:
        return Detections(np.array([boxes[n] for n in names], np.float32).reshape(-1, 4), np.full(len(names), 0.9, np.float32),
                          np.array([ids[n] for n in names], np.int64), COCO)

    detections = [found("cat"), found("cat", "dog"), found("dog")]
    queries = np.stack([CAT, CAT, DOG, DOG])
    index = PhotoIndex(
        whole=np.stack([catlike, doglike, catlike]),
        detections=detections,
        regions=detections,
        region_photo=np.array([0, 1, 1, 2]),
        region_vectors={"pooled": np.stack([CAT, CAT, DOG, DOG])},
        query_photo=np.array([0, 1, 1, 2]),
        query_objects=[o for photo in objects.objects for o in photo],
        crop_queries=queries,
        pooled_queries=queries,
    )
    return objects, index


def test_object_judgement_marks_own_photo_and_difficult_only_photos_junk():
    objects, index = three_photos()
    objects.objects[2].append(AnnotatedObject("cat", (0, 0, 5, 5), True))
    table = object_judgement(objects, index)
    P, N, J = metrics.POSITIVE, metrics.NEGATIVE, metrics.JUNK
    assert table.tolist() == [[J, P, J], [P, J, J], [N, J, P], [N, P, J]]


def test_protocol_on_a_tiny_set_with_known_answers():
    objects, index = three_photos()
    scores = score_objects(objects, index, "pooled")
    # whole-image ranking: cat queries of photo 0 and dog queries of photo 1 meet the cat-like photo 2 first
    assert scores.metrics["object_mAP_image"] == pytest.approx(75.0)
    assert scores.metrics["object_mAP_region"] == pytest.approx(100.0)
    assert scores.metrics["object_P@10_region"] == pytest.approx(10.0)
    assert scores.detector_ap_by_class == {"cat": 100.0, "dog": 100.0} and scores.metrics["detector_AP50"] == 100.0
    assert math.isnan(scores.metrics["multiclass_mAP_region"])  # photo 1 is the only one with two classes
    assert scores.counts == {"photos": 3, "object_queries": 4, "multiclass_queries": 1, "regions": 4, "photos_without_regions": 0}


def test_multiclass_queries_need_every_class():
    objects = ObjectSet(
        [Path(f"p{i}.jpg") for i in range(4)],
        [[AnnotatedObject("cat", (0, 0, 1, 1), False), AnnotatedObject("dog", (0, 0, 1, 1), False)],
         [AnnotatedObject("cat", (0, 0, 1, 1), False), AnnotatedObject("dog", (0, 0, 1, 1), False), AnnotatedObject("car", (0, 0, 1, 1), False)],
         [AnnotatedObject("cat", (0, 0, 1, 1), False), AnnotatedObject("dog", (0, 0, 1, 1), True)],
         [AnnotatedObject("dog", (0, 0, 1, 1), False)]],
    )
    queries = multiclass_queries(objects)
    assert queries == [0, 1]
    P, N, J = metrics.POSITIVE, metrics.NEGATIVE, metrics.JUNK
    assert multiclass_judgement(objects, queries).tolist() == [[J, P, J, N], [N, J, N, N]]


def test_query_objects_are_one_region_per_detected_class():
    _, index = three_photos()
    assert query_object_vectors(index, 1, "pooled").tolist() == [CAT.tolist(), DOG.tolist()]
    index.regions[0] = Detections.empty(COCO)
    index.region_photo = np.array([1, 1, 2])
    index.region_vectors = {"pooled": np.stack([CAT, DOG, DOG])}
    assert query_object_vectors(index, 0, "pooled").tolist() == [index.whole[0].tolist()]


def test_reading_objects_reports_what_is_wrong(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    good = tmp_path / "objects.csv"
    good.write_text("filename,class_name,xmin,ymin,xmax,ymax,difficult\na.jpg,cat,1,1,10,20,0\nmissing.jpg,dog,1,1,5,5,1\n")
    objects, skipped = read_objects(good, tmp_path)
    assert objects.objects == [[AnnotatedObject("cat", (0.0, 0.0, 10.0, 20.0), False)]]
    assert skipped == [(tmp_path / "missing.jpg", "listed in the objects file but not found")]
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,label,xmin,ymin,xmax,ymax\n")
    with pytest.raises(ValueError, match="lacks the columns class_name"):
        read_objects(bad, tmp_path)
    with pytest.raises(FileNotFoundError, match="columns filename"):
        read_objects(tmp_path / "nope.csv", tmp_path)


def paste_scene(path: Path, parts: list[tuple[Image.Image, tuple[int, int]]], seed: int) -> list[tuple[float, float, float, float]]:
    rng = np.random.default_rng(seed)
    canvas = Image.fromarray(rng.integers(90, 160, (480, 640, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(4))
    boxes = []
    for image, (x, y) in parts:
        canvas.paste(image, (x, y))
        boxes.append((x, y, x + image.width, y + image.height))
    canvas.save(path, quality=92)
    return boxes


@pytest.mark.slow
def test_cli_evaluates_objects_on_composed_photos(tmp_path):
    import skimage.data
    from typer.testing import CliRunner

    from cbir.cli import app

    person = Image.fromarray(skimage.data.astronaut()).crop((0, 10, 370, 512)).resize((185, 251))
    cup = Image.fromarray(skimage.data.coffee()).crop((150, 0, 430, 320)).resize((175, 200))
    cat = Image.fromarray(skimage.data.chelsea()).resize((300, 200))
    layout = {
        "a.jpg": [("person", person, (20, 200)), ("cat", cat, (300, 40))],
        "b.jpg": [("person", person, (400, 200)), ("cup", cup, (40, 40))],
        "c.jpg": [("cat", cat, (20, 250)), ("cup", cup, (420, 60))],
        "d.jpg": [("person", person, (200, 100)), ("cat", cat, (330, 260))],
    }
    voc_name = {"person": "person", "cat": "cat", "cup": "cup"}
    rows = ["filename,class_name,xmin,ymin,xmax,ymax,difficult"]
    for seed, (name, parts) in enumerate(layout.items()):
        boxes = paste_scene(tmp_path / name, [(image, at) for _, image, at in parts], seed)
        rows += [f"{name},{voc_name[label]},{x0 + 1},{y0 + 1},{x1},{y1},0" for (label, _, _), (x0, y0, x1, y1) in zip(parts, boxes)]
    (tmp_path / "objects.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "result.json"
    result = CliRunner().invoke(app, ["evaluate", "objects", str(tmp_path), "--objects", str(tmp_path / "objects.csv"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["protocol"] == "objects"
    found = document["metrics"]
    assert set(found) >= {"object_mAP_image", "object_mAP_region", "multiclass_mAP_image", "multiclass_mAP_region", "detector_AP50"}
    assert document["config"]["detector"]["detector"] == "yolox-nano"
    assert document["config"]["detector_AP50_by_class"]["person"] == 100.0 and document["config"]["detector_AP50_by_class"]["cat"] == 100.0
    assert document["config"]["queries"] == 8 and document["config"]["multiclass_queries"] == 4
    assert found["object_mAP_region"] >= found["object_mAP_image"] - 1e-6
    assert all(0.0 <= value <= 100.0 for value in found.values())
