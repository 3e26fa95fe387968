"""Face detection, alignment, encoding, collections of faces, people and thresholds.

The faces come from photos packaged with scikit-image and matplotlib (the
astronaut Eileen Collins, Grace Hopper) and from scikit-image's tiny LFW
sample (as people nobody enrolled); every picture is built here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from typer.testing import CliRunner

pytest.importorskip("dlib")
pytest.importorskip("face_recognition_models")

from cbir.cli import app  # noqa: E402
from cbir.collection.collection import Collection  # noqa: E402
from cbir.faces import FaceAnalyzer, FacePipeline, FaceSpec, People, face_embedder  # noqa: E402
from cbir.faces.analyzer import DEFAULT_FACE_ENCODER  # noqa: E402
from cbir.faces.annotate import KNOWN, UNKNOWN, annotate_faces  # noqa: E402
from cbir.faces.calibration import Calibration, labeled_pair_scores, threshold_for_far  # noqa: E402
from cbir.faces.models import FaceError  # noqa: E402
from cbir.faces.people import best_matches  # noqa: E402
from tests.conftest import pattern_image, shared_data  # noqa: E402

# scikit-image's LFW sample faces least like either packaged person (checked once; any face
# far below the threshold would do).
STRANGERS = (26, 83)


def astronaut() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut()).crop((100, 0, 350, 250))


def hopper() -> Image.Image:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as stream:
        return Image.open(stream).convert("RGB").crop((100, 60, 450, 410))


def stranger(number: int) -> Image.Image:
    """A 25 x 25 LFW sample face, enlarged and framed so a detector finds it."""
    import skimage.data

    face = Image.fromarray((skimage.data.lfw_subset()[number] * 255).astype(np.uint8)).resize((110, 110), Image.BICUBIC)
    canvas = Image.new("RGB", (180, 180), (120, 120, 120))
    canvas.paste(face.convert("RGB"), (35, 35))
    return canvas


def group_photo() -> tuple[Image.Image, list[tuple[float, str]]]:
    """Edited copies of the faces side by side, with the expected name of each, left to right."""
    tiles = [
        (ImageOps.mirror(astronaut()).resize((200, 200)), "astronaut"),
        (ImageEnhance.Brightness(hopper()).enhance(0.75).resize((230, 230)), "hopper"),
        (stranger(STRANGERS[0]).resize((200, 200)), "unknown"),
        (ImageOps.grayscale(hopper()).convert("RGB").resize((190, 190)), "hopper"),
        (ImageEnhance.Contrast(astronaut()).enhance(1.4).resize((180, 180)), "astronaut"),
    ]
    canvas = Image.new("RGB", (sum(tile.width for tile, _ in tiles) + 20 * (len(tiles) + 1), 300), (70, 90, 110))
    x, expected = 20, []
    for tile, name in tiles:
        canvas.paste(tile, (x, 40 + (240 - tile.height) // 2))
        expected.append((x + tile.width / 2, name))
        x += tile.width + 20
    return canvas, expected


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    """dlib's descriptor alone (the default fuses it with MobileFaceNet; tests/test_face_encoders.py)."""
    return FaceAnalyzer(FaceSpec(encoder="dlib_resnet_v1"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {
        "astronaut": folder / "astronaut.jpg",
        "hopper": folder / "hopper.png",
        "stranger": folder / "stranger.png",
        "group": folder / "group.jpg",
        "empty": folder / "no_face.jpg",
    }
    astronaut().save(paths["astronaut"], quality=95)
    hopper().save(paths["hopper"])
    stranger(STRANGERS[1]).save(paths["stranger"])
    group_photo()[0].save(paths["group"], quality=95)
    pattern_image(3, (320, 240)).save(paths["empty"], quality=90)
    return paths


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, photos) -> Path:
    """A collection where the astronaut and Grace Hopper are enrolled from one photo each."""
    path = tmp_path_factory.mktemp("people") / "collection"
    with Collection.create(path) as store:
        people = People(store)
        people.enroll("astronaut", [photos["astronaut"]])
        people.enroll("hopper", [photos["hopper"]])
    return path


def _iou(a, b) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


# detection, alignment, encoding ---------------------------------------------------------------
def test_finds_one_face_and_encodes_it(analyzer):
    scan = analyzer.scan(astronaut())
    assert len(scan.faces) == 1
    face = scan.faces[0]
    assert _iou(face.box, (76, 76, 166, 167)) > 0.7
    assert len(face.landmarks) == 5
    assert face.vector.shape == (128,) and abs(np.linalg.norm(face.vector) - 1) < 1e-5
    left, top, right, bottom = face.box
    assert all(left - 5 <= x <= right + 5 and top - 5 <= y <= bottom + 5 for x, y in face.landmarks)


def test_same_person_is_closer_than_different_people(analyzer):
    original = analyzer.scan(astronaut()).faces[0].vector
    edited = analyzer.scan(ImageOps.mirror(astronaut()).resize((170, 170))).faces[0].vector
    other = analyzer.scan(hopper()).faces[0].vector
    assert original @ edited > 0.97
    assert original @ other < 0.9


def test_cnn_detector_agrees_with_hog():
    cnn = FaceAnalyzer(FaceSpec(detector="cnn", upsample=0))
    faces = cnn.scan(astronaut()).faces
    assert len(faces) == 1 and _iou(faces[0].box, (76, 76, 166, 167)) > 0.5


def test_chips_are_the_chips_dlibs_model_expects(analyzer):
    import dlib

    from cbir.faces.alignment import View, aligned_chips, landmarks

    pixels = np.asarray(astronaut())
    shape = landmarks(pixels, [analyzer.scan(pixels).faces[0].box])[0]
    plain, mirrored, zoomed_out = aligned_chips(pixels, [shape], views=(View(), View(mirror=True), View(scale=1.04)))
    assert np.array_equal(plain, dlib.get_face_chip(pixels, shape, 150, 0.25))
    assert np.array_equal(mirrored, plain[:, ::-1])
    # zooming out 4 % is padding the chip more: (1 + 2 * 0.28) = 1.04 * (1 + 2 * 0.25)
    wider = dlib.get_face_chip(pixels, shape, 150, 0.28)
    assert np.abs(zoomed_out.astype(int) - wider.astype(int)).mean() < 1.0
    assert np.abs(plain.astype(int) - wider.astype(int)).mean() > 5.0


def test_shifted_views_move_the_chip_and_random_views_are_fixed(analyzer):
    from cbir.faces.alignment import View, aligned_chips, landmarks, random_views

    pixels = np.asarray(astronaut())
    shape = landmarks(pixels, [analyzer.scan(pixels).faces[0].box])[0]
    plain, moved = aligned_chips(pixels, [shape], views=(View(), View(shift=(0.02, 0.0))))
    # the centre moves 3 px (2 % of 150) along the chip's x axis: the content moves 3 px left
    assert np.abs(moved[:, :-3].astype(int) - plain[:, 3:].astype(int)).mean() < 0.5 * np.abs(moved.astype(int) - plain.astype(int)).mean()
    views = random_views(32)
    assert views == random_views(32) and len(set(views)) == 32 and sum(v.mirror for v in views) == 16
    assert all(abs(v.angle) <= 3 and 1 <= v.scale <= 1 / 0.97 and max(map(abs, v.shift)) <= 0.02 for v in views)


def test_test_time_views_change_the_vector_and_the_space(analyzer):
    single = FaceAnalyzer(FaceSpec(tta="none", encoder="dlib_resnet_v1"))
    jitter = FaceAnalyzer(FaceSpec(tta="jitter", encoder="dlib_resnet_v1"))
    vectors = [a.scan(hopper()).faces[0].vector for a in (single, analyzer, jitter)]
    for vector in vectors:
        assert abs(np.linalg.norm(vector) - 1) < 1e-5
    assert 0.98 < vectors[0] @ vectors[1] < 0.99999 and 0.98 < vectors[1] @ vectors[2] < 0.99999
    assert analyzer.space_record()["tta"] == "flip" and jitter.space_record()["tta"] == "jitter"
    with pytest.raises(FaceError, match="unknown test-time augmentation"):
        FaceAnalyzer(FaceSpec(tta="magic"))


def test_unknown_detector_is_a_clear_error():
    with pytest.raises(FaceError, match="unknown face detector"):
        FaceSpec(detector="magic") and FaceAnalyzer(FaceSpec(detector="magic"))
    with pytest.raises(FaceError, match="needs its model file"):
        FaceAnalyzer(FaceSpec(detector="yunet"))


# bad input ------------------------------------------------------------------------------------
def test_no_face_is_an_empty_scan(analyzer):
    scan = analyzer.scan(pattern_image(1, (300, 200)))
    assert scan.faces == [] and scan.describe() == "0 faces"
    assert analyzer.main_face(pattern_image(1, (300, 200))) is None


def test_greyscale_and_16_bit_photos(analyzer, tmp_path):
    colour = analyzer.scan(hopper()).faces[0].vector
    grey = ImageOps.grayscale(hopper())
    grey.save(tmp_path / "grey.png")
    Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257).save(tmp_path / "grey16.png")
    for name in ("grey.png", "grey16.png"):
        faces = analyzer.scan(tmp_path / name).faces
        assert len(faces) == 1 and faces[0].vector @ colour > 0.95
    assert len(analyzer.scan(np.asarray(grey)).faces) == 1


def test_huge_photo_is_searched_at_reduced_size(analyzer):
    canvas = Image.new("RGB", (6000, 4000), (200, 190, 180))
    canvas.paste(astronaut().resize((500, 500)), (4200, 2500))
    scan = analyzer.scan(canvas)
    assert len(scan.faces) == 1
    expected = (4200 + 76 * 2, 2500 + 76 * 2, 4200 + 166 * 2, 2500 + 167 * 2)
    assert _iou(scan.faces[0].box, expected) > 0.6
    assert scan.faces[0].vector @ analyzer.scan(astronaut()).faces[0].vector > 0.95


def test_tiny_faces_are_counted_not_encoded():
    strict = FaceAnalyzer(FaceSpec(min_face=120))
    scan = strict.scan(astronaut())
    assert scan.faces == [] and scan.too_small == 1
    assert "1 too small" in scan.describe()


def test_many_faces_are_all_found_and_capped(analyzer):
    photo, expected = group_photo()
    assert len(analyzer.scan(photo).faces) == len(expected)
    capped = FaceAnalyzer(FaceSpec(max_faces=2)).scan(photo)
    assert len(capped.faces) == 2 and capped.over_limit == len(expected) - 2
    assert capped.faces[0].area >= capped.faces[1].area


def test_bad_arrays_are_refused(analyzer):
    with pytest.raises(ValueError, match="image array"):
        analyzer.scan(np.zeros((4, 4, 7), dtype=np.uint8))


# pairs-protocol embedder ------------------------------------------------------------------------
def test_face_embedder_on_face_photos_and_non_faces(tmp_path, analyzer):
    hopper().save(tmp_path / "hopper.png")
    pattern_image(5).save(tmp_path / "pattern.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    strict = face_embedder(analyzer, face_crop=False)
    lenient = face_embedder(analyzer)
    assert strict(tmp_path / "hopper.png") @ lenient(tmp_path / "hopper.png") > 0.999
    assert strict(tmp_path / "pattern.png") is None
    assert lenient(tmp_path / "pattern.png").shape == (128,)
    assert analyzer.main_face(tmp_path / "pattern.png", face_crop=True).assumed
    assert lenient(tmp_path / "broken.jpg") is None


def test_face_crop_takes_the_face_covering_the_centre(analyzer):
    canvas = Image.new("RGB", (640, 300), (90, 90, 90))
    canvas.paste(hopper().resize((260, 260)), (0, 20))  # the larger face, off-centre
    canvas.paste(astronaut().resize((200, 200)), (223, 53))  # its face covers the centre
    largest = analyzer.main_face(canvas)
    central = analyzer.main_face(canvas, face_crop=True)
    assert largest.vector @ analyzer.scan(hopper()).faces[0].vector > 0.95
    assert central.vector @ analyzer.scan(astronaut()).faces[0].vector > 0.95


# collections of faces ---------------------------------------------------------------------------
def test_index_faces_into_a_collection_and_search_by_face(tmp_path, photos, analyzer):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("group", "empty", "stranger"):
        (folder / photos[name].name).write_bytes(photos[name].read_bytes())
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with Collection.create(tmp_path / "c") as store:
        pipeline = FacePipeline(analyzer)
        report = store.add([folder], pipeline=pipeline)
        assert report.added == 3 and len(report.skipped) == 1 and "corrupt.jpg" in report.skipped[0][0]
        assert pipeline.counts.faces == 6 and pipeline.counts.without_face == 1 and pipeline.counts.photos == 3
        assert store.info()["by_kind"] == {"face": 6}
        again = store.add([folder], pipeline=FacePipeline(analyzer))
        assert again.added == 0 and again.unchanged == 3
        query = analyzer.scan(photos["hopper"]).faces[0].vector
        hits = store.search_vectors(query[None], k=3, space="face")[0]
    photo, expected = group_photo()
    hopper_x = [x for x, name in expected if name == "hopper"]
    for hit in hits[:2]:
        assert hit.kind == "face" and hit.uri.endswith("group.jpg")
        centre = (hit.box[0] + hit.box[2]) / 2
        assert min(abs(centre - x) for x in hopper_x) < 40
        assert hit.metadata["image_width"] == photo.width and len(hit.metadata["landmarks"]) == 5


# people -----------------------------------------------------------------------------------------
def test_group_photo_is_annotated_with_the_right_names(enrolled, photos, tmp_path):
    photo, expected = group_photo()
    with Collection.open(enrolled) as store:
        found, scan, threshold = People(store).identify(photo)
    assert len(found) == len(expected)
    by_position = sorted(found, key=lambda f: f.face.box[0])
    for identification, (x, name) in zip(by_position, expected):
        left, _, right, _ = identification.face.box
        assert left < x < right
        assert identification.label == name, (name, identification.similarity, threshold)
    picture = annotate_faces(photo, found, tmp_path / "annotated.png")
    assert (tmp_path / "annotated.png").is_file()
    pixels = np.asarray(picture)
    for identification in found:
        left, top, _, _ = (int(v) for v in identification.face.box)
        colour = KNOWN if identification.name else UNKNOWN
        assert tuple(pixels[top + 1, left + 1]) == colour


def test_enrol_list_remove(tmp_path, photos):
    with Collection.create(tmp_path / "c") as store:
        people = People(store)
        with pytest.raises(FaceError, match="nobody is enrolled"):
            people.identify(photos["hopper"])
        first = people.enroll("Grace Hopper", [photos["hopper"], photos["empty"], photos["group"]])
        assert first.faces == 2 and first.report.added == 2
        assert [uri for uri, _ in first.report.skipped] == [str(photos["empty"].resolve())]
        assert "no face found" in first.report.skipped[0][1]
        assert first.notes and "enrolled the largest" in first.notes[0][1]
        again = people.enroll("Grace Hopper", [photos["hopper"]])
        assert again.report.unchanged == 1 and again.faces == 0
        people.enroll("astronaut", [photos["astronaut"]])
        assert people.people() == {"Grace Hopper": 2, "astronaut": 1}
        vectors, names = people.gallery()
        assert vectors.shape == (3, people.analyzer.encoder.dim) and sorted(names) == ["Grace Hopper", "Grace Hopper", "astronaut"]
        assert people.remove("Grace Hopper") == 2
        assert people.people() == {"astronaut": 1}
        assert store.catalog.count_items("face") == 1 and len(store.index("face")) == 1
        with pytest.raises(FaceError, match="not enrolled"):
            people.remove("Grace Hopper")
        with pytest.raises(FaceError, match="non-empty name"):
            people.enroll("  ", [photos["hopper"]])


def test_best_matches_takes_each_persons_closest_face():
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0]], dtype=np.float32)
    names, similarities = best_matches(np.array([[0.6, 0.8, 0.0], [0, 0, 1.0]], dtype=np.float32), gallery, ["a", "b", "a"])
    assert names[0] == "a" and similarities[0] == pytest.approx(1.0)
    assert similarities[1] == pytest.approx(0.0)


def test_verify_same_and_different(enrolled, photos):
    with Collection.open(enrolled) as store:
        people = People(store)
        same = people.verify(photos["hopper"], photos["group"])  # the group photo's largest face is Hopper
        different = people.verify(photos["hopper"], photos["astronaut"])
        with pytest.raises(FaceError, match="no face found"):
            people.verify(photos["hopper"], photos["empty"])
    assert same.same and same.similarity > same.threshold.similarity + 0.02 and same.faces == (1, 5)
    assert not different.same and different.similarity < same.threshold.similarity
    assert different.distance == pytest.approx(np.sqrt(2 - 2 * different.similarity))


# thresholds -------------------------------------------------------------------------------------
def test_threshold_for_far_by_hand():
    scores = np.array([0.95, 0.9, 0.8, 0.85, 0.7, 0.6, 0.5, 0.4])
    same = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    threshold, far, tar = threshold_for_far(scores, same, 0.0)
    assert 0.85 < threshold < 0.9 and far == 0 and tar == pytest.approx(2 / 3)
    threshold, far, tar = threshold_for_far(scores, same, 0.2)  # one of five different pairs may pass
    assert 0.7 < threshold <= 0.8 and far == pytest.approx(0.2) and tar == 1.0
    with pytest.raises(ValueError, match="both"):
        threshold_for_far(scores[:3], same[:3], 0.1)


def test_labeled_pair_scores_counts_pairs():
    vectors = np.eye(4, dtype=np.float32)
    scores, same = labeled_pair_scores(vectors, ["a", "a", "b", "b"])
    assert same.sum() == 2 and (~same).sum() == 4 and np.all(scores == 0)
    scores, same = labeled_pair_scores(vectors, ["a", "a", "b", "b"], max_different=2)
    assert (~same).sum() == 2


def test_calibration_is_stored_and_used(tmp_path, enrolled, photos):
    folder = tmp_path / "people"
    variants = {
        "astronaut": [astronaut(), ImageOps.mirror(astronaut()), astronaut().resize((180, 180))],
        "hopper": [hopper(), ImageOps.mirror(hopper()), ImageOps.grayscale(hopper())],
        "stranger": [stranger(STRANGERS[0]), ImageOps.mirror(stranger(STRANGERS[0]))],
    }
    for name, images in variants.items():
        (folder / name).mkdir(parents=True)
        for number, image in enumerate(images):
            image.save(folder / name / f"{number}.png")
    copy = tmp_path / "collection"
    copy.mkdir()
    for file in enrolled.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    with Collection.open(copy) as store:
        people = People(store)
        assert people.threshold().source.startswith("default")
        calibration, report = people.calibrate_folder(folder, target_far=1e-3)
        assert report == {"images": 8, "people": 3, "skipped": 0}
        assert calibration.same_pairs == 3 + 3 + 1 and calibration.different_pairs == 28 - 7
        assert calibration.far == 0 and calibration.tar == 1.0
        assert "no finer than" in calibration.describe()
        assert Calibration.load(copy, people.analyzer.space_record()).threshold == calibration.threshold
        in_force = people.threshold()
        assert in_force.similarity == calibration.threshold and "calibrated" in in_force.source
        assert people.threshold(0.5).similarity == 0.5


# command line -----------------------------------------------------------------------------------
def test_cli_enrol_identify_verify_list_remove(tmp_path, photos):
    runner = CliRunner()
    collection = str(tmp_path / "c")

    def run(*args: str) -> dict:
        result = runner.invoke(app, list(args) + ["--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    enrolled = run("faces", "enroll", "hopper", str(photos["hopper"]), "-c", collection)
    assert enrolled["photos_enrolled"] == 1
    run("faces", "enroll", "astronaut", str(photos["astronaut"]), "-c", collection)
    annotated = tmp_path / "annotated.png"
    identified = run("faces", "identify", str(photos["group"]), "-c", collection, "--annotate", str(annotated))
    names = [face["name"] for face in sorted(identified["faces"], key=lambda f: f["box"][0])]
    assert names == [name for _, name in group_photo()[1]]
    assert identified["threshold"]["source"].startswith("default") and annotated.is_file()
    verified = run("faces", "verify", str(photos["hopper"]), str(photos["astronaut"]))
    assert verified["same"] is False and verified["threshold"]["similarity"] > verified["similarity"]
    assert run("faces", "list", "-c", collection)["people"] == {"astronaut": 1, "hopper": 1}
    removed = runner.invoke(app, ["faces", "remove", "hopper", "-c", collection])
    assert removed.exit_code == 0 and "removed hopper" in removed.output
    missing = runner.invoke(app, ["faces", "remove", "hopper", "-c", collection])
    assert missing.exit_code == 2 and "not enrolled" in missing.output
    no_face = runner.invoke(app, ["faces", "verify", str(photos["empty"]), str(photos["hopper"])])
    assert no_face.exit_code == 2 and "no face found" in no_face.output


def test_cli_evaluate_pairs_with_faces(tmp_path):
    images = tmp_path / "people"
    for name, pictures in (
        ("astro", (astronaut(), ImageOps.mirror(astronaut()).resize((180, 180)))),
        ("hopper", (hopper(), ImageEnhance.Brightness(hopper()).enhance(0.8).resize((260, 260)))),
    ):
        (images / name).mkdir(parents=True)
        for number, picture in enumerate(pictures, 1):
            picture.save(images / name / f"{name}_{number:04d}.jpg", quality=95)
    (tmp_path / "pairs.txt").write_text("1\t2\nastro\t1\t2\nhopper\t1\t2\nastro\t1\thopper\t1\nastro\t2\thopper\t2\n")
    out = tmp_path / "pairs.json"
    args = ["evaluate", "pairs", str(tmp_path / "pairs.txt"), "--images", str(images), "--json", str(out)]
    result = CliRunner().invoke(app, args + ["--faces", "--tta", "none"])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["metrics"]["accuracy"] == 100.0 and written["config"]["pairs"] == 4
    assert written["config"]["encoder"]["tta"] == "none" and written["config"]["encoder"]["detector"]["detector"] == "hog"
    assert written["config"]["encoder"]["type"] == DEFAULT_FACE_ENCODER
    refused = CliRunner().invoke(app, args + ["--tta", "jitter"])
    assert refused.exit_code != 0 and "add --faces" in refused.output
    refused = CliRunner().invoke(app, args + ["--face-encoder", "mobilefacenet"])
    assert refused.exit_code != 0 and "add --faces" in refused.output


def test_cli_index_and_search_by_face(tmp_path, photos):
    album = tmp_path / "album"
    album.mkdir()
    for name in ("group", "empty", "astronaut"):
        (album / photos[name].name).write_bytes(photos[name].read_bytes())
    collection = str(tmp_path / "c")
    indexed = CliRunner().invoke(app, ["index", str(album), "--faces", "-c", collection, "--json"])
    assert indexed.exit_code == 0, indexed.output
    report = json.loads(indexed.stdout)
    assert report["added"] == 3 and report["faces"] == {"photos": 3, "faces": 6, "without_face": 1, "too_small": 0, "over_limit": 0}
    grid = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["search", str(photos["hopper"]), "--faces", "-c", collection, "--json", "--grid", str(grid)])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert len(found["faces"]) == 1
    results = found["faces"][0]["results"]
    assert results[0]["uri"].endswith("group.jpg") and len(results) == 2  # one hit per photo
    threshold = FaceAnalyzer().encoder.default_threshold
    assert results[0]["score"] > threshold + 0.02 and results[1]["score"] < threshold and grid.is_file()
    table = CliRunner().invoke(app, ["search", str(photos["hopper"]), "--faces", "-c", collection])
    assert table.exit_code == 0, table.output
    assert "face 1 at" in table.stdout and "group.jpg" in "".join(table.stdout.replace("│", " ").split())  # long paths fold
    empty = CliRunner().invoke(app, ["search", str(photos["empty"]), "--faces", "-c", collection])
    assert empty.exit_code == 2 and "no face found" in empty.output


# benchmark data (skipped where ../shared/data is absent) ---------------------------------------
def test_yunet_detector_agrees_with_hog(analyzer):

    model = shared_data("weights/yunet_face_detector")
    yunet = FaceAnalyzer(FaceSpec(detector="yunet", detector_model=str(model), encoder="dlib_resnet_v1"))
    faces = yunet.scan(astronaut()).faces
    assert len(faces) == 1 and faces[0].detector == "yunet"
    assert _iou(faces[0].box, analyzer.scan(astronaut()).faces[0].box) > 0.4
    assert faces[0].vector @ analyzer.scan(astronaut()).faces[0].vector > 0.95
    assert yunet.scan(pattern_image(2, (300, 200))).faces == []


def test_lfw_pairs_sample():
    from cbir.evaluation.pairs import read_pairs, score_pairs

    folder = shared_data("lfw_dev")
    pairs = read_pairs(folder / "pairs.txt", folder / "lfw-deepfunneled")
    sample = pairs[:8] + pairs[300:308]
    default = FaceAnalyzer()
    scores, failed = score_pairs(sample, face_embedder(default))
    assert not failed
    correct = (scores >= default.encoder.default_threshold) == np.array([p.same for p in sample])
    assert correct.all(), [(p.first.name, p.second.name, s) for p, s, ok in zip(sample, scores, correct) if not ok]


def test_orl_identification_sample(tmp_path):

    folder = shared_data("orl_faces") / "orl_faces"
    with Collection.create(tmp_path / "c") as store:
        people = People(store)
        for person in ("s1", "s7", "s13", "s24", "s38"):
            report = people.enroll(person, [folder / person / f"{n}.pgm" for n in (1, 2, 3)], face_crop=True)
            assert report.faces == 3
        for person in ("s1", "s7", "s13", "s24", "s38"):
            for number in (8, 9):
                face = people.analyzer.main_face(folder / person / f"{number}.pgm", face_crop=True)
                names, similarities = best_matches(face.vector[None], *people.gallery())
                assert names[0] == person and similarities[0] >= people.threshold().similarity
