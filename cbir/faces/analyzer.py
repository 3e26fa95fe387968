"""Detect, align and encode every face of an image, with the limits that keep odd input safe.

Huge images are searched for faces on a reduced copy (boxes are mapped back
and chips cut from the full image); greyscale, palette and 16-bit files
arrive as RGB through ``load_image``; faces smaller than ``min_face`` pixels
are counted but not encoded; at most ``max_faces`` faces (the largest) are
kept per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cbir.faces.alignment import Landmarks, landmark_points, landmarks, tta_views
from cbir.faces.detection import Detection, FaceDetector, make_detector
from cbir.faces.encoders import FaceEncoder, make_face_encoder
from cbir.io.images import load_image

Box = tuple[float, float, float, float]
# Where a face photo's face is assumed to be when no detector finds it: a centred square of this
# fraction of the short side (the face of a 250 x 250 LFW photo spans about 110 px).
CROP_FACE_FRACTION = 0.45
SMALL_PHOTO = 400
DEFAULT_TTA = "flip"
# dlib's ResNet and MobileFaceNet fused: the most accurate on the LFW dev folds under the fold protocol (docs/faces.md)
DEFAULT_FACE_ENCODER = "fusion"


@dataclass(frozen=True)
class FaceSpec:
    """How faces are found and encoded."""

    detector: str = "hog"
    upsample: int = 1
    detector_model: str | None = None
    detector_threshold: float | None = None
    min_face: int = 20
    max_side: int = 2000
    max_faces: int = 100
    tta: str | None = None  # test-time views: none, flip, jitter (None: the collection's, else DEFAULT_TTA)
    encoder: str | None = None  # face encoder: a registered name (None: the collection's, else DEFAULT_FACE_ENCODER)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FaceSpec":
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Face:
    """One face of an image: where it is and its descriptor."""

    box: Box
    score: float
    landmarks: list[list[float]]
    vector: np.ndarray
    detector: str = ""  # which detector found it, or "assumed" for the centre of a face photo

    @property
    def assumed(self) -> bool:
        return self.detector == "assumed"

    @property
    def area(self) -> float:
        left, top, right, bottom = self.box
        return max(right - left, 0.0) * max(bottom - top, 0.0)

    def metadata(self) -> dict:
        landmarks = [[round(x, 1), round(y, 1)] for x, y in self.landmarks]
        return {"score": round(self.score, 4), "detector": self.detector, "landmarks": landmarks}


@dataclass
class FaceScan:
    """Every face found in one image (largest first) and what was left out."""

    faces: list[Face] = field(default_factory=list)
    width: int = 0
    height: int = 0
    too_small: int = 0
    over_limit: int = 0

    def describe(self) -> str:
        """One line for reports: how many faces, and why some were left out."""
        parts = [f"{len(self.faces)} face{'s' if len(self.faces) != 1 else ''}"]
        if self.too_small:
            parts.append(f"{self.too_small} too small to recognise")
        if self.over_limit:
            parts.append(f"{self.over_limit} beyond the limit per image")
        return ", ".join(parts)


def central_box(width: int, height: int, fraction: float) -> Box:
    """A centred square whose side is ``fraction`` of the image's short side."""
    side = fraction * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


class FaceAnalyzer:
    """Detector + landmarks + face encoder (which aligns the faces its way), applied to whole images."""

    def __init__(self, spec: FaceSpec | None = None, encoder: FaceEncoder | None = None, detector: FaceDetector | None = None):
        self.spec = spec or FaceSpec()
        self.encoder = encoder or make_face_encoder(self.spec.encoder or DEFAULT_FACE_ENCODER)
        self.tta = self.spec.tta or DEFAULT_TTA
        self.views = tta_views(self.tta)
        self.detector = detector or make_detector(
            self.spec.detector, self.spec.upsample, self.spec.detector_model, self.spec.detector_threshold
        )
        self._fallback_detectors: dict[int, FaceDetector] = {}

    @staticmethod
    def pixels(image: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
        """An RGB uint8 array from a file, bytes, PIL image or array (greyscale is expanded)."""
        if isinstance(image, np.ndarray):
            array = image
            if array.ndim == 2:
                array = np.repeat(array[:, :, None], 3, axis=2)
            if array.ndim != 3 or array.shape[2] not in (3, 4):
                raise ValueError(f"an image array must be H x W, H x W x 3 or H x W x 4, not {array.shape}")
            if array.dtype != np.uint8:
                array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
            return np.ascontiguousarray(array[:, :, :3])
        return np.asarray(load_image(image), dtype=np.uint8)

    def detect(self, pixels: np.ndarray, detector: FaceDetector | None = None) -> list[Detection]:
        """Detections in full-image coordinates; a huge image is searched at reduced size."""
        height, width = pixels.shape[:2]
        scale = min(1.0, self.spec.max_side / max(height, width))
        search = pixels
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            search = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        found = (detector or self.detector).detect(search)
        if scale < 1.0:
            found = [
                Detection(tuple(v / scale for v in d.box), d.score, d.detector, None if d.points is None else d.points / scale)
                for d in found
            ]
        return found

    @staticmethod
    def face_landmarks(pixels: np.ndarray, detections: list[Detection]) -> list[Landmarks]:
        """dlib's 5-point shape of each detected face, with the detector's own points when it gives them."""
        shapes = landmarks(pixels, [d.box for d in detections])
        return [Landmarks(d.box, shape, d.points) for d, shape in zip(detections, shapes)]

    def encode_detections(self, pixels: np.ndarray, detections: list[Detection]) -> tuple[list[Landmarks], np.ndarray]:
        """(landmarks, descriptors) of the detected faces: the mean of their test-time views, L2-normalised."""
        if not detections:
            return [], np.zeros((0, self.encoder.dim), dtype=np.float32)
        faces = self.face_landmarks(pixels, detections)
        return faces, self.encoder.describe(pixels, faces, self.views)

    def space_record(self) -> dict:
        """What the vectors of this analyzer are comparable with: the encoder and the test-time views."""
        return {**self.encoder.record(), "tta": self.tta}

    def scan(self, image: str | Path | bytes | Image.Image | np.ndarray) -> FaceScan:
        """Every face of an image, largest first."""
        pixels = self.pixels(image)
        height, width = pixels.shape[:2]
        found = self.detect(pixels)
        kept = sorted((d for d in found if d.size >= self.spec.min_face), key=lambda d: -d.size)
        scan = FaceScan(width=width, height=height, too_small=len(found) - len(kept))
        scan.over_limit = max(0, len(kept) - self.spec.max_faces)
        kept = kept[: self.spec.max_faces]
        faces, vectors = self.encode_detections(pixels, kept)
        scan.faces = [
            Face(_clip(d.box, width, height), d.score, landmark_points(face.shape), vector, d.detector)
            for d, face, vector in zip(kept, faces, vectors)
        ]
        return scan

    def main_face(self, image: str | Path | bytes | Image.Image | np.ndarray, face_crop: bool = False) -> Face | None:
        """The largest face of a photo, or None.

        With ``face_crop`` the image is a face photo centred on its subject
        (LFW, ORL, ID photos): the largest face covering the centre is taken;
        when the detector finds none, dlib's CNN detector is tried, and then
        the centre of the image (``CROP_FACE_FRACTION`` of its short side) is
        aligned and encoded, so such a photo is never dropped.
        """
        pixels = self.pixels(image)
        detection = self.locate_main_face(pixels, face_crop)
        if detection is None:
            return None
        height, width = pixels.shape[:2]
        faces, vectors = self.encode_detections(pixels, [detection])
        return Face(_clip(detection.box, width, height), detection.score, landmark_points(faces[0].shape), vectors[0], detection.detector)

    def locate_main_face(self, pixels: np.ndarray, face_crop: bool = False) -> Detection | None:
        """The face ``main_face`` encodes (its detector is ``assumed`` for the centre of a face photo)."""
        height, width = pixels.shape[:2]
        found = self._usable(self.detect(pixels), width, height, face_crop)
        if not found and face_crop and self.spec.detector != "cnn":
            found = self._usable(self.detect(pixels, self._second_detector(pixels)), width, height, face_crop)
        if found:
            return max(found, key=lambda d: d.size)
        if face_crop:
            return Detection(central_box(width, height, CROP_FACE_FRACTION), 0.0, "assumed")
        return None

    def _usable(self, found: list[Detection], width: int, height: int, covering_centre: bool) -> list[Detection]:
        found = [d for d in found if d.size >= self.spec.min_face]
        if covering_centre:
            found = [d for d in found if d.box[0] <= width / 2 <= d.box[2] and d.box[1] <= height / 2 <= d.box[3]]
        return found

    def _second_detector(self, pixels: np.ndarray) -> FaceDetector:
        """dlib's CNN detector, enlarging small photos (where it is quick) to find faces down to 40 px."""
        upsample = 1 if max(pixels.shape[:2]) <= SMALL_PHOTO else 0
        if upsample not in self._fallback_detectors:
            self._fallback_detectors[upsample] = make_detector("cnn", upsample=upsample)
        return self._fallback_detectors[upsample]


def _clip(box: Box, width: int, height: int) -> Box:
    left, top, right, bottom = box
    return (
        float(min(max(left, 0.0), width)),
        float(min(max(top, 0.0), height)),
        float(min(max(right, 0.0), width)),
        float(min(max(bottom, 0.0), height)),
    )
