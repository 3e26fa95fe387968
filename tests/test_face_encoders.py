"""Face encoders: MobileFaceNet (shipped ONNX file), the standard five-point alignment, fused
encoders rebuilt from their record, and collections that refuse another encoder.

Faces are the packaged photos of ``tests/test_faces.py`` (the astronaut, Grace Hopper, a
scikit-image LFW sample face) and edited copies made here.
"""

from __future__ import annotations

import json
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageEnhance, ImageOps
from typer.testing import CliRunner

pytest.importorskip("dlib")
pytest.importorskip("face_recognition_models")
pytest.importorskip("onnxruntime")

from cbir.cli import app  # noqa: E402
from cbir.collection.collection import Collection  # noqa: E402
from cbir.faces import (  # noqa: E402
    DlibResNetEncoder,
    FaceAnalyzer,
    FacePipeline,
    FaceSpec,
    FusedFaceEncoder,
    MobileFaceNetEncoder,
    People,
    make_face_encoder,
)
from cbir.faces.alignment import REFERENCE_POINTS, View, five_points, similarity_chips  # noqa: E402
from cbir.faces.calibration import Calibration  # noqa: E402
from cbir.faces.encoders import face_encoder_from_record  # noqa: E402
from cbir.faces.fusion import DEFAULT_THRESHOLD, DEFAULT_WEIGHTS  # noqa: E402
from cbir.faces.mobilefacenet import PACKAGED_MODEL  # noqa: E402
from cbir.faces.models import FaceError  # noqa: E402
from tests.conftest import shared_data  # noqa: E402
from tests.test_faces import STRANGERS, astronaut, hopper, stranger  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mobilefacenet() -> FaceAnalyzer:
    return FaceAnalyzer(FaceSpec(encoder="mobilefacenet"))


def _faces(analyzer: FaceAnalyzer, image):
    """(pixels, landmarks) of the largest face of ``image``."""
    pixels = analyzer.pixels(image)
    detection = analyzer.locate_main_face(pixels)
    return pixels, analyzer.face_landmarks(pixels, [detection])


# alignment -------------------------------------------------------------------------------------
def test_five_points_from_dlibs_68_point_shape(mobilefacenet):
    pixels, faces = _faces(mobilefacenet, astronaut())
    points = five_points(pixels, faces[0])
    left, top, right, bottom = faces[0].box
    assert points.shape == (5, 2)
    assert all(left - 5 <= x <= right + 5 and top - 5 <= y <= bottom + 5 for x, y in points)
    # eyes above the nose above the mouth; left before right, as seen
    assert points[0, 0] < points[2, 0] < points[1, 0] and points[3, 0] < points[4, 0]
    assert max(points[0, 1], points[1, 1]) < points[2, 1] < min(points[3, 1], points[4, 1])


def test_similarity_chips_put_the_points_on_the_reference():
    # a synthetic image: five bright dots where a face's points would be, turned and scaled
    turn, scale, offset = np.radians(12.0), 1.7, np.array([40.0, 25.0])
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    points = (REFERENCE_POINTS @ rotation.T) * scale + offset
    image = np.zeros((260, 260, 3), dtype=np.uint8)
    for x, y in points:
        image[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2] = 255
    plain, mirrored = similarity_chips(image, [points], views=(View(), View(mirror=True)))
    assert plain.shape == (112, 112, 3)
    for x, y in REFERENCE_POINTS:
        assert plain[round(y), round(x)].max() > 100  # each dot lands on its reference point
    assert np.array_equal(mirrored, plain[:, ::-1])


# MobileFaceNet ---------------------------------------------------------------------------------
def test_mobilefacenet_same_person_closer_than_different_people(mobilefacenet):
    encoder = mobilefacenet.encoder
    assert isinstance(encoder, MobileFaceNetEncoder) and PACKAGED_MODEL.is_file()
    original = mobilefacenet.scan(astronaut()).faces[0].vector
    views = [ImageOps.mirror(astronaut()).resize((170, 170)), ImageEnhance.Brightness(astronaut()).enhance(0.7)]
    same = [original @ mobilefacenet.scan(view).faces[0].vector for view in views]
    others = [mobilefacenet.scan(image).faces[0].vector for image in (hopper(), stranger(STRANGERS[0]))]
    different = [original @ other for other in others] + [others[0] @ others[1]]
    assert original.shape == (128,) and abs(np.linalg.norm(original) - 1) < 1e-5
    assert min(same) > encoder.default_threshold > max(different), (same, different)
    assert min(same) - max(different) > 0.3


def test_mobilefacenet_runs_a_batch_as_it_runs_one_face(mobilefacenet):
    pixels, faces = _faces(mobilefacenet, hopper())
    chips = similarity_chips(pixels, [five_points(pixels, faces[0])], views=(View(), View(mirror=True), View(angle=3.0)))
    together = mobilefacenet.encoder.encode(chips)
    apart = np.concatenate([mobilefacenet.encoder.encode([chip]) for chip in chips])
    assert together.shape == (3, 128) and np.abs(together - apart).max() < 1e-4
    assert mobilefacenet.encoder.encode([]).shape == (0, 128)


def test_detector_points_are_used_when_given(mobilefacenet):
    pixels, faces = _faces(mobilefacenet, astronaut())
    from_68 = mobilefacenet.encoder.describe(pixels, faces, (View(),))
    faces[0].points = five_points(pixels, faces[0]) + np.array([6.0, 0.0])  # the face as if seen 6 px to the right
    moved = mobilefacenet.encoder.describe(pixels, faces, (View(),))
    assert 0.5 < float(from_68[0] @ moved[0]) < 0.9999


def test_shipped_model_is_the_published_one_with_a_free_batch():
    import onnxruntime

    original = shared_data("weights/mobilefacenet") / "MobileFaceNet.onnx"
    chips = np.random.default_rng(0).normal(size=(3, 3, 112, 112)).astype(np.float32)
    published = onnxruntime.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    shipped = onnxruntime.InferenceSession(str(PACKAGED_MODEL), providers=["CPUExecutionProvider"])
    expected = np.concatenate([published.run(None, {"input0": chip[None]})[0] for chip in chips])
    assert np.abs(shipped.run(None, {"input0": chips})[0] - expected).max() < 1e-4


def test_model_and_licence_ship_as_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cbir"]
    folder = PACKAGED_MODEL.parent
    for name in ("MobileFaceNet.onnx", "LICENSE", "PROVENANCE.md"):
        relative = (folder / name).relative_to(ROOT / "cbir").as_posix()
        assert (folder / name).is_file() and any(fnmatch(relative, pattern) for pattern in patterns), relative
    assert "Apache License" in (folder / "LICENSE").read_text()


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FaceError, match="not found"):
        MobileFaceNetEncoder(tmp_path / "none.onnx")
    with pytest.raises(FaceError, match="unknown face encoder 'magic'"):
        make_face_encoder("magic")


# fusion ----------------------------------------------------------------------------------------
def test_fused_similarity_is_the_weighted_mean_of_the_parts():
    parts = [DlibResNetEncoder(), MobileFaceNetEncoder()]
    fused = FusedFaceEncoder(parts, (3.0, 1.0))
    analyzer = FaceAnalyzer(FaceSpec(tta="none"), encoder=fused)
    pixels_a, faces_a = _faces(analyzer, astronaut())
    pixels_b, faces_b = _faces(analyzer, hopper())
    a, b = fused.describe(pixels_a, faces_a, (View(),))[0], fused.describe(pixels_b, faces_b, (View(),))[0]
    cosines = [float(p.describe(pixels_a, faces_a, (View(),))[0] @ p.describe(pixels_b, faces_b, (View(),))[0]) for p in parts]
    assert a.shape == (256,) and abs(np.linalg.norm(a) - 1) < 1e-5
    assert abs(float(a @ b) - (0.75 * cosines[0] + 0.25 * cosines[1])) < 1e-5
    assert abs(fused.default_threshold - (0.75 * parts[0].default_threshold + 0.25 * parts[1].default_threshold)) < 1e-9
    default = make_face_encoder("fusion")  # the default weights: the threshold measured for them
    assert default.weights == DEFAULT_WEIGHTS and default.default_threshold == DEFAULT_THRESHOLD
    assert FusedFaceEncoder(parts, [2 * w for w in DEFAULT_WEIGHTS]).default_threshold == DEFAULT_THRESHOLD
    with pytest.raises(FaceError, match="one weight per part"):
        FusedFaceEncoder(parts, (1.0,))
    with pytest.raises(FaceError, match="non-negative"):
        FusedFaceEncoder(parts, (1.0, -1.0))


def test_fusion_weights_are_read_from_the_encoder_record(tmp_path):
    fused = FusedFaceEncoder([DlibResNetEncoder(), MobileFaceNetEncoder()], (0.8, 0.2))
    (tmp_path / "photos").mkdir()
    hopper().save(tmp_path / "photos" / "hopper.png")
    with Collection.create(tmp_path / "c") as store:
        report = store.add([tmp_path / "photos"], pipeline=FacePipeline(FaceAnalyzer(FaceSpec(tta="none"), encoder=fused)), workers=0)
        assert report.added == 1 and store.manifest.spaces["face"].dim == 256
    with Collection.open(tmp_path / "c") as store:
        record = store.manifest.spaces["face"].encoder
        assert record["type"] == "fusion" and record["weights"] == [0.8, 0.2] and record["tta"] == "none"
        rebuilt = People(store).analyzer.encoder
    assert isinstance(rebuilt, FusedFaceEncoder) and rebuilt.weights == (0.8, 0.2)
    assert [part.record()["type"] for part in rebuilt.parts] == ["dlib_resnet_v1", "mobilefacenet"]
    record["weights"] = [1.0, 3.0]
    assert face_encoder_from_record(record).weights == (1.0, 3.0)
    assert make_face_encoder("fusion").record() == FusedFaceEncoder([DlibResNetEncoder(), MobileFaceNetEncoder()], DEFAULT_WEIGHTS).record()


def test_fusion_with_other_weights_is_another_encoder(tmp_path):
    weights = (0.9, 0.1) if tuple(DEFAULT_WEIGHTS) != (0.9, 0.1) else (0.1, 0.9)
    fused = FusedFaceEncoder([DlibResNetEncoder(), MobileFaceNetEncoder()], weights)
    (tmp_path / "photos").mkdir()
    hopper().save(tmp_path / "photos" / "hopper.png")
    with Collection.create(tmp_path / "c") as store:
        store.add([tmp_path / "photos"], pipeline=FacePipeline(FaceAnalyzer(FaceSpec(tta="none"), encoder=fused)), workers=0)
    with Collection.open(tmp_path / "c") as store:
        assert People(store).analyzer.encoder.weights == weights  # no choice: the collection's weights
        with pytest.raises(FaceError, match="cannot be compared") as refused:
            People(store, FaceSpec(encoder="fusion"))  # the default weights
    assert f"'weights': {list(weights)}" in str(refused.value) and f"'weights': {list(DEFAULT_WEIGHTS)}" in str(refused.value)


# one encoder per collection ---------------------------------------------------------------------
def test_collection_refuses_another_face_encoder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut().save(photos / "astronaut.jpg", quality=95)
    collection = tmp_path / "c"
    runner = CliRunner()
    indexed = runner.invoke(app, ["faces", "index", str(photos), "-c", str(collection), "--face-encoder", "mobilefacenet", "--json"])
    assert indexed.exit_code == 0, indexed.output
    assert json.loads(indexed.stdout)["faces"]["faces"] == 1
    refused = runner.invoke(app, ["faces", "identify", str(photos / "astronaut.jpg"), "-c", str(collection), "--face-encoder", "dlib_resnet_v1"])
    assert refused.exit_code == 2
    message = " ".join(refused.output.split())
    assert "encoded with the face encoder mobilefacenet, not dlib_resnet_v1" in message
    assert "new collection" in message and "--face-encoder dlib_resnet_v1 -c NEW" in message
    with Collection.open(collection) as store:
        with pytest.raises(FaceError, match="cannot be compared"):
            People(store, analyzer=FaceAnalyzer(encoder=DlibResNetEncoder()))
        assert isinstance(People(store).analyzer.encoder, MobileFaceNetEncoder)  # without a choice: the collection's


def test_calibrations_are_kept_per_encoder(tmp_path):
    folder = tmp_path / "people"
    for name, images in {"astronaut": [astronaut(), ImageOps.mirror(astronaut())], "hopper": [hopper(), ImageOps.mirror(hopper())]}.items():
        (folder / name).mkdir(parents=True)
        for number, image in enumerate(images):
            image.save(folder / name / f"{number}.png")
    with Collection.create(tmp_path / "c") as store:
        made = {}
        for name in ("dlib_resnet_v1", "mobilefacenet"):
            made[name], _ = People(store, FaceSpec(encoder=name, tta="none")).calibrate_folder(folder, target_far=0.1)
        assert made["dlib_resnet_v1"].threshold != made["mobilefacenet"].threshold
        for name, calibration in made.items():
            people = People(store, FaceSpec(encoder=name, tta="none"))
            assert people.threshold().similarity == calibration.threshold and "calibrated" in people.threshold().source
            assert Calibration.load(store.path, people.analyzer.space_record()) == calibration
        uncalibrated = People(store, FaceSpec(encoder="fusion", tta="none")).threshold()
        assert uncalibrated.similarity == make_face_encoder("fusion").default_threshold and "default" in uncalibrated.source


def test_yunet_points_align_mobilefacenet():
    model = shared_data("weights/yunet_face_detector")
    yunet = FaceAnalyzer(FaceSpec(detector="yunet", detector_model=str(model), encoder="mobilefacenet"))
    pixels = yunet.pixels(astronaut())
    detection = yunet.locate_main_face(pixels)
    assert detection.detector == "yunet" and detection.points.shape == (5, 2)
    faces = yunet.face_landmarks(pixels, [detection])
    from_68 = five_points(pixels, type(faces[0])(faces[0].box, faces[0].shape))
    assert np.abs(faces[0].points - from_68).max() < 8  # YuNet's points and dlib's agree within a few pixels
    hog = FaceAnalyzer(FaceSpec(encoder="mobilefacenet")).scan(astronaut()).faces[0].vector
    assert yunet.scan(astronaut()).faces[0].vector @ hog > 0.8
