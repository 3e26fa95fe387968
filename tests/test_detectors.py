import math

import numpy as np
import pytest
from PIL import Image

from cbir.detectors import DETECTORS, DetectionSettings, load_detector
from cbir.detectors.decoding import anchor_count, decode_yolov8, decode_yolox, detect_format
from cbir.detectors.detections import select_detections
from cbir.detectors.letterbox import letterbox
from cbir.evaluation.detection_ap import iou
from tests.conftest import shared_data

NAMES = tuple(f"c{i}" for i in range(80))


def photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


# letterbox -----------------------------------------------------------------------------------
def test_letterbox_top_left_pads_with_114_and_maps_boxes_back():
    image = Image.new("RGB", (200, 100), (10, 20, 30))
    pixels, placement = letterbox(image, (64, 64), centred=False)
    assert pixels.shape == (64, 64, 3) and placement.scale == pytest.approx(0.32)
    assert (pixels[:32] == (10, 20, 30)).all() and (pixels[32:] == 114).all()
    assert placement.to_original(np.array([[32.0, 16.0, 64.0, 32.0]])).tolist() == [[100.0, 50.0, 200.0, 100.0]]


def test_letterbox_centred_splits_the_padding():
    pixels, placement = letterbox(Image.new("RGB", (200, 100), (0, 0, 0)), (64, 64), centred=True)
    assert placement.pad_top == 16 and placement.pad_left == 0
    assert (pixels[:16] == 114).all() and (pixels[16:48] == 0).all() and (pixels[48:] == 114).all()
    assert placement.to_original(np.array([[0.0, 16.0, 64.0, 48.0]])).tolist() == [[0.0, 0.0, 200.0, 100.0]]


# decoding ------------------------------------------------------------------------------------
def test_yolox_decoding_uses_the_cell_and_stride_of_each_row():
    output = np.zeros((anchor_count(416, 416), 85), np.float32)
    row = 52 * 52 + 2 * 26 + 3  # stride 16, cell x=3, y=2
    output[row, :4] = [0.5, 0.5, math.log(4), math.log(2)]
    output[row, 4], output[row, 5 + 7] = 0.9, 0.8
    boxes, scores, classes = decode_yolox(output, (416, 416))
    assert boxes[row].tolist() == pytest.approx([24, 24, 88, 56])  # centre (56, 40), 64 x 32
    assert scores[row] == pytest.approx(0.72) and classes[row] == 7
    assert scores.argmax() == row


def test_yolox_decoded_export_keeps_pixel_boxes():
    output = np.zeros((anchor_count(416, 416), 85), np.float32)
    output[0, :6] = [100, 50, 20, 10, 1.0, 0.5]
    boxes, scores, _ = decode_yolox(output, (416, 416), decoded=True)
    assert boxes[0].tolist() == [90, 45, 110, 55] and scores[0] == 0.5


def test_yolov8_decoding_reads_columns():
    output = np.zeros((84, 8400), np.float32)
    output[:4, 5] = [100, 50, 20, 10]
    output[4 + 2, 5] = 0.6
    boxes, scores, classes = decode_yolov8(output)
    assert boxes[5].tolist() == [90, 45, 110, 55] and scores[5] == pytest.approx(0.6) and classes[5] == 2


def test_format_follows_from_the_output_shape():
    assert detect_format((1, 3549, 85), (416, 416)) == "yolox"
    assert detect_format((1, 84, 8400), (640, 640)) == "yolov8"
    with pytest.raises(ValueError, match="state it"):
        detect_format((1, 10, 10), (416, 416))


# selection -----------------------------------------------------------------------------------
def test_nms_is_class_wise_and_thresholds_clip_and_cap():
    boxes = np.array([[0, 0, 50, 50], [2, 2, 52, 52], [0, 0, 50, 50], [60, 60, 200, 90], [5, 5, 8, 30], [70, 0, 90, 20]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95, 0.1], np.float32)
    classes = np.array([0, 0, 1, 2, 0, 0])
    found = select_detections(boxes, scores, classes, (100, 80), DetectionSettings(0.3, 0.45, 10, 8), NAMES)
    # box 1 suppressed by box 0 (same class), box 2 kept (other class), box 4 too thin, box 5 too weak
    assert found.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert found.labels == ["c0", "c1", "c2"]
    assert found.boxes[2].tolist() == [60, 60, 100, 80]  # clipped to the 100 x 80 image
    capped = select_detections(boxes, scores, classes, (100, 80), DetectionSettings(0.3, 0.45, 2, 8), NAMES)
    assert len(capped) == 2 and capped.best(0.8).scores.tolist() == pytest.approx([0.9])


def test_settings_reject_nonsense():
    with pytest.raises(ValueError, match="between 0 and 1"):
        DetectionSettings(score_threshold=2)
    with pytest.raises(ValueError, match="at least 1"):
        DetectionSettings(max_boxes=0)


# the shipped detector ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def yolox():
    return load_detector()


@pytest.mark.parametrize(
    "name, label, where",
    [("astronaut", "person", (0, 10, 370, 512)), ("coffee", "cup", (170, 15, 410, 305)), ("chelsea", "cat", (0, 0, 451, 300))],
)
def test_shipped_yolox_finds_the_object_where_it_is(yolox, name, label, where):
    found = yolox.detect([photo(name)])[0]
    assert found.labels[0] == label
    assert iou(np.array(where, np.float32), found.boxes[:1])[0] > 0.75


def test_batches_give_the_same_detections_as_single_images(yolox):
    images = [photo("coffee"), photo("astronaut"), photo("chelsea")]
    together = yolox.detect(images)
    for image, batched in zip(images, together):
        alone = yolox.detect([image])[0]
        assert alone.labels == batched.labels
        np.testing.assert_allclose(alone.boxes, batched.boxes, atol=1e-3)


def test_no_object_gives_empty_detections(yolox):
    assert len(yolox.detect([Image.new("RGB", (300, 200), (128, 128, 128))])[0]) == 0


def test_detector_registry_and_errors(tmp_path):
    assert "yolox-nano" in DETECTORS
    assert load_detector().record()["sha256"].startswith("695e750a")
    with pytest.raises(FileNotFoundError, match="neither a known detector"):
        load_detector("yolo-huge")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        load_detector(junk)


@pytest.mark.slow
def test_yolov8_export_is_recognised_and_finds_the_cup():
    detector = load_detector(shared_data("weights/yolov8n_int8") / "yolov8n_int8.onnx")
    assert detector.format == "yolov8" and detector.class_names[41] == "cup"
    found = detector.detect([photo("coffee")])[0]
    assert found.labels[0] == "cup" and iou(np.array([170, 15, 410, 305], np.float32), found.boxes[:1])[0] > 0.75
