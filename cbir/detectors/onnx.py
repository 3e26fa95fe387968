"""YOLO-family detectors run with onnxruntime: YOLOX (the shipped YOLOX-Nano) and YOLOv8-style exports.

The format follows from the output's shape (``cbir.detectors.decoding.detect_format``) or is
stated. Preprocessing follows each family's own export: YOLOX takes BGR pixels 0-255, not
normalised, letterboxed to the top-left corner; YOLOv8 takes RGB scaled to 0-1, letterboxed
to the centre; both pad with 114.
"""

from __future__ import annotations

import ast
import copy
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from cbir.detectors.decoding import FORMATS, class_count, decode, detect_format
from cbir.detectors.detections import DetectionSettings, Detections, select_detections
from cbir.detectors.detector import DETECTORS, Detector
from cbir.detectors.letterbox import letterbox

DEFAULT_DETECTOR = "yolox-nano"


def shipped_model(name: str) -> Path:
    """Path of a file shipped in ``cbir/detectors/models``."""
    return Path(str(resources.files("cbir.detectors") / "models" / name))


def coco_class_names() -> tuple[str, ...]:
    """The 80 COCO class names, in the order COCO detectors score them."""
    lines = shipped_model("coco_labels.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


class OnnxDetector:
    """A YOLOX or YOLOv8-style ONNX export; ``detect`` runs images in batches when the export allows it."""

    def __init__(
        self,
        path: str | Path,
        format: str | None = None,
        class_names: Sequence[str] | None = None,
        settings: DetectionSettings = DetectionSettings(),
        threads: int | None = None,
        name: str | None = None,
        batch_size: int = 8,
    ):
        try:
            import onnxruntime
        except ImportError:
            raise ImportError("object detection runs with onnxruntime: pip install 'cbir[objects]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"detector file {self.path} does not exist: give an ONNX export (YOLOX or YOLOv8) or omit it for {DEFAULT_DETECTOR}")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for foreign files
            raise ValueError(f"{self.path} is not a readable ONNX model ({error.__class__.__name__}): give a YOLOX or YOLOv8 ONNX export") from None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        batch, channels, height, width = (list(model_input.shape) + [None] * 4)[:4]
        if not (isinstance(height, int) and isinstance(width, int)) or channels not in (3, None):
            raise ValueError(f"{self.path}: expected a fixed 1x3xHxW image input, found {model_input.shape}")
        self.input_size = (height, width)
        self.batch_size = batch_size if not isinstance(batch, int) else batch
        output_shape = tuple(self.session.get_outputs()[0].shape)
        if format is None:
            format = detect_format(output_shape, self.input_size)
        if format not in FORMATS:
            raise ValueError(f"unknown detector format {format!r}: choose one of {', '.join(FORMATS)}")
        self.format = format
        n_classes = class_count(output_shape, format)
        self.class_names = tuple(class_names) if class_names is not None else self._class_names(n_classes)
        if len(self.class_names) != n_classes:
            raise ValueError(f"{self.path} scores {n_classes} classes but {len(self.class_names)} class names were given")
        self.settings = settings
        self.name = name or self.path.name

    def _class_names(self, n_classes: int) -> tuple[str, ...]:
        """Names from the export's metadata (Ultralytics ``names``), else COCO's for 80 classes, else ``class N``."""
        stored = self.session.get_modelmeta().custom_metadata_map.get("names")
        if stored:
            try:
                names = ast.literal_eval(stored)
                if isinstance(names, dict) and len(names) == n_classes:
                    return tuple(str(names[i]) for i in range(n_classes))
            except (ValueError, SyntaxError, KeyError):
                pass
        if n_classes == 80:
            return coco_class_names()
        return tuple(f"class {i}" for i in range(n_classes))

    def preprocess(self, image: Image.Image) -> tuple[np.ndarray, object]:
        """3 x H x W float32 network input of one RGB image, and its letterbox placement."""
        yolox = self.format.startswith("yolox")
        pixels, placement = letterbox(image, self.input_size, centred=not yolox)
        if yolox:
            array = pixels[:, :, ::-1].astype(np.float32)
        else:
            array = pixels.astype(np.float32) / 255.0
        return np.ascontiguousarray(array.transpose(2, 0, 1)), placement

    def detect(self, images: Sequence[Image.Image]) -> list[Detections]:
        """The detections of each RGB image, best first, boxes in the image's own pixels."""
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            prepared = [self.preprocess(image) for image in chunk]
            outputs = self.session.run(None, {self.input_name: np.stack([array for array, _ in prepared])})[0]
            for image, (_, placement), output in zip(chunk, prepared, outputs):
                boxes, scores, class_ids = decode(output, self.format, self.input_size)
                boxes = placement.to_original(boxes)
                results.append(select_detections(boxes, scores, class_ids, image.size, self.settings, self.class_names))
        return results

    def with_settings(self, settings: DetectionSettings) -> "OnnxDetector":
        """This detector with other settings; the ONNX session is shared."""
        other = copy.copy(self)
        other.settings = settings
        return other

    def record(self) -> dict:
        from cbir.encoders.encoder import file_sha256

        return {
            "detector": self.name,
            "sha256": file_sha256(self.path),
            "format": self.format,
            "input_size": list(self.input_size),
            "classes": len(self.class_names),
            "score_threshold": self.settings.score_threshold,
            "iou_threshold": self.settings.iou_threshold,
            "max_boxes": self.settings.max_boxes,
            "min_size": self.settings.min_size,
        }


@DETECTORS.register(DEFAULT_DETECTOR)
def yolox_nano(settings: DetectionSettings = DetectionSettings(), threads: int | None = None) -> OnnxDetector:
    """YOLOX-Nano (COCO, 80 classes, 416x416), shipped with the package (Apache-2.0)."""
    return OnnxDetector(shipped_model("yolox_nano.onnx"), "yolox", coco_class_names(), settings, threads, DEFAULT_DETECTOR)


def load_detector(
    choice: str | Path | None = None,
    settings: DetectionSettings = DetectionSettings(),
    format: str | None = None,
    threads: int | None = None,
) -> Detector:
    """A registered detector by name (default ``yolox-nano``), or an ONNX file (format from its output, or ``format``)."""
    choice = DEFAULT_DETECTOR if choice is None else choice
    if isinstance(choice, str) and choice in DETECTORS:
        if format is not None:
            raise ValueError(f"{choice} has a known format: drop the detector format option")
        return DETECTORS.create(choice, settings=settings, threads=threads)
    path = Path(choice)
    if not path.is_file():
        raise FileNotFoundError(f"detector {str(choice)!r} is neither a known detector ({', '.join(DETECTORS)}) nor an ONNX file")
    return OnnxDetector(path, format, None, settings, threads)
