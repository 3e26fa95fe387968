"""Face detectors: dlib HOG (default), dlib CNN (MMOD), OpenCV YuNet (given its ONNX file).

Each takes an RGB ``uint8`` array and returns ``Detection``s in that array's
pixel coordinates, best first. Detectors are registered in ``DETECTORS`` by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from cbir.core.registry import Registry
from cbir.faces.models import FaceError, hog_detector, mmod_detector


@dataclass
class Detection:
    """A face box ``(left, top, right, bottom)`` with the detector's confidence and name, and the five
    standard points (eye centres, nose tip, mouth corners, left to right as seen) when it finds them."""

    box: tuple[float, float, float, float]
    score: float
    detector: str = ""
    points: np.ndarray | None = None

    @property
    def size(self) -> float:
        """Side of the box (the geometric mean of width and height), in pixels."""
        left, top, right, bottom = self.box
        return float(np.sqrt(max(right - left, 0.0) * max(bottom - top, 0.0)))


class FaceDetector(Protocol):
    """Finds faces in an RGB image."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (H x W x 3, uint8), best first."""

    def record(self) -> dict:
        """A description of the detector and its settings."""


DETECTORS: Registry[FaceDetector] = Registry("face detector", error=FaceError)


@DETECTORS.register("hog")
class HogDetector:
    """dlib's HOG detector; ``upsample`` doubles the image that many times to find faces under 80 px."""

    def __init__(self, upsample: int = 1, threshold: float = 0.0):
        self.upsample = upsample
        self.threshold = threshold

    def detect(self, image: np.ndarray) -> list[Detection]:
        rects, scores, _ = hog_detector().run(image, self.upsample, self.threshold)
        found = [Detection((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s), "hog") for r, s in zip(rects, scores)]
        return sorted(found, key=lambda d: -d.score)

    def record(self) -> dict:
        return {"detector": "hog", "upsample": self.upsample, "threshold": self.threshold}


@DETECTORS.register("cnn")
class CnnDetector:
    """dlib's CNN (MMOD) detector: finds turned and partly hidden faces HOG misses, about 20x slower on a CPU."""

    def __init__(self, upsample: int = 1, threshold: float = 0.0):
        self.upsample = upsample
        self.threshold = threshold

    def detect(self, image: np.ndarray) -> list[Detection]:
        found = [
            Detection((d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1), float(d.confidence), "cnn")
            for d in mmod_detector()(image, self.upsample)
            if d.confidence >= self.threshold
        ]
        return sorted(found, key=lambda d: -d.score)

    def record(self) -> dict:
        return {"detector": "cnn", "upsample": self.upsample, "threshold": self.threshold}


@DETECTORS.register("yunet")
class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``) from an ONNX model file; small images are enlarged first."""

    MIN_SIDE = 320

    def __init__(self, model: str | Path | None = None, threshold: float = 0.6):
        if model is None:
            raise FaceError("the yunet detector needs its model file: --detector-model PATH/face_detection_yunet_*.onnx")
        import cv2

        model = Path(model)
        if model.is_dir():
            candidates = sorted(model.glob("*.onnx"))
            if not candidates:
                raise FaceError(f"{model} holds no .onnx file: give the YuNet model file itself")
            model = candidates[0]
        if not model.is_file():
            raise FaceError(f"YuNet model {model} not found: give the path of face_detection_yunet_*.onnx")
        self.model = model
        self.threshold = threshold
        try:
            self._net = cv2.FaceDetectorYN.create(str(model), "", (self.MIN_SIDE, self.MIN_SIDE), threshold, 0.3, 5000)
        except cv2.error as error:
            raise FaceError(f"OpenCV cannot load {model} as a YuNet detector: {error}") from None

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        height, width = image.shape[:2]
        scale = max(1.0, self.MIN_SIDE / min(height, width))
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        if scale > 1.0:
            bgr = cv2.resize(bgr, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_CUBIC)
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._net.detect(bgr)
        if rows is None:
            return []
        found = []
        for row in rows:
            x, y, w, h = (float(v) / scale for v in row[:4])
            points = np.asarray(row[4:14], dtype=np.float64).reshape(5, 2) / scale
            found.append(Detection((x, y, x + w, y + h), float(row[-1]), "yunet", points))
        return sorted(found, key=lambda d: -d.score)

    def record(self) -> dict:
        return {"detector": "yunet", "model": self.model.name, "threshold": self.threshold}


def make_detector(name: str = "hog", upsample: int = 1, model: str | Path | None = None, threshold: float | None = None) -> FaceDetector:
    """The detector registered as ``name`` with the settings it takes (``yunet`` needs ``model``, its ONNX file or folder)."""
    return DETECTORS.build(name, upsample=upsample, model=model, threshold=threshold)
