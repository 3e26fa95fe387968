"""Landmarks, aligned face chips and test-time views.

Two alignments: dlib's (its 5-point shape, eye corners and base of the nose,
to a padded chip: ``aligned_chips``) and the standard one of ArcFace-style
models (eye centres, nose tip and mouth corners moved by a similarity
transform onto fixed points of a 112 x 112 chip: ``similarity_chips``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cbir.faces.models import FaceError, _import_dlib, landmark_model, landmark_model_68

Box = tuple[float, float, float, float]
# Where the eye centres, nose tip and mouth corners (left to right as seen) sit in a 112 x 112 chip.
REFERENCE_POINTS = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64
)
REFERENCE_SIZE = 112


@dataclass(frozen=True)
class View:
    """One view of an aligned face: turned by ``angle`` degrees, zoomed out by ``scale``, its centre moved
    by ``shift`` (fractions of the chip's width and height), maybe mirrored."""

    angle: float = 0.0
    scale: float = 1.0
    mirror: bool = False
    shift: tuple[float, float] = (0.0, 0.0)


def random_views(count: int, seed: int = 0) -> tuple[View, ...]:
    """``count`` views drawn as dlib's ``jitter_image`` draws them (turn up to 3 degrees, zoom out 0-3 %,
    move up to 2 %, mirror half of them) from a fixed seed, so every face gets the same views."""
    rng = np.random.default_rng(seed)
    return tuple(
        View(float(rng.uniform(-3.0, 3.0)), float(1.0 / rng.uniform(0.97, 1.0)), index % 2 == 1,
             (float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02))))
        for index in range(count)
    )


# Test-time augmentation: a face's descriptor is the mean of its views' descriptors.
TTA_VIEWS: dict[str, tuple[View, ...]] = {
    "none": (View(),),
    "flip": (View(), View(mirror=True)),
    "jitter": tuple(
        View(angle, scale, mirror)
        for mirror in (False, True)
        for angle, scale in ((0.0, 1.0), (3.0, 1.0), (-3.0, 1.0), (0.0, 1.04))
    ),
    "jitter32": random_views(32),
}


def tta_views(name: str) -> tuple[View, ...]:
    if name not in TTA_VIEWS:
        raise FaceError(f"unknown test-time augmentation {name!r}: choose one of {', '.join(TTA_VIEWS)}")
    return TTA_VIEWS[name]


def to_dlib_rectangle(box: tuple[float, float, float, float]):
    """dlib's inclusive rectangle for a ``(left, top, right, bottom)`` box."""
    left, top, right, bottom = (int(round(v)) for v in box)
    return _import_dlib().rectangle(left, top, max(left, right - 1), max(top, bottom - 1))


@dataclass
class Landmarks:
    """Where one face's features are: its box, dlib's 5-point shape and, when the detector gives them,
    the five standard points (eye centres, nose tip, mouth corners, left to right as seen; ``points``)."""

    box: Box
    shape: object
    points: np.ndarray | None = None


def landmarks(image: np.ndarray, boxes: list[Box]) -> list:
    """dlib 5-point shapes (outer and inner eye corners, base of the nose) for each box."""
    predictor = landmark_model()
    return [predictor(image, to_dlib_rectangle(box)) for box in boxes]


def landmark_points(shape) -> list[list[float]]:
    """The points of a dlib shape as ``[[x, y], ...]``."""
    return [[float(shape.part(i).x), float(shape.part(i).y)] for i in range(shape.num_parts)]


def aligned_chips(
    image: np.ndarray, shapes: list, size: int = 150, padding: float = 0.25, views: tuple[View, ...] = (View(),)
) -> list[np.ndarray]:
    """Square chips, rotated and scaled so the landmarks sit where the face model expects them;
    one chip per face and view, face by face."""
    dlib = _import_dlib()
    chips = []
    for shape in shapes:
        base = dlib.get_face_chip_details(shape, size=size, padding=padding)
        rect = base.rect
        centre_x, centre_y = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2
        # (right - left), not width(): dlib's width() of a drectangle adds one, which would zoom out every view
        half_w, half_h = (rect.right() - rect.left()) / 2, (rect.bottom() - rect.top()) / 2
        for view in views:
            w, h = half_w * view.scale, half_h * view.scale
            x, y = _moved_centre(centre_x, centre_y, 2 * half_w, 2 * half_h, base.angle, view.shift)
            region = dlib.drectangle(x - w, y - h, x + w, y + h)
            details = dlib.chip_details(region, dlib.chip_dims(size, size), base.angle + math.radians(view.angle))
            chip = np.asarray(dlib.extract_image_chip(image, details))
            chips.append(np.ascontiguousarray(chip[:, ::-1]) if view.mirror else chip)
    return chips


def _moved_centre(x: float, y: float, width: float, height: float, angle: float, shift: tuple[float, float]) -> tuple[float, float]:
    """The chip centre moved by ``shift`` fractions of the chip, along the chip's own (turned) axes."""
    dx, dy = shift[0] * width, shift[1] * height
    return x + dx * math.cos(angle) - dy * math.sin(angle), y + dx * math.sin(angle) + dy * math.cos(angle)


def five_points(image: np.ndarray, face: Landmarks) -> np.ndarray:
    """The five standard points of a face: the detector's, else read from dlib's 68-point shape
    (the means of the eye contours, the nose tip, the mouth corners)."""
    if face.points is not None:
        return np.asarray(face.points, dtype=np.float64)
    shape = landmark_model_68()(image, to_dlib_rectangle(face.box))
    points = np.array(landmark_points(shape), dtype=np.float64)
    return np.stack([points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]])


def similarity_chips(
    image: np.ndarray, points: list[np.ndarray], size: int = REFERENCE_SIZE, views: tuple[View, ...] = (View(),)
) -> list[np.ndarray]:
    """``size`` x ``size`` chips where a similarity transform (least squares) puts each face's five points
    on ``REFERENCE_POINTS``; one chip per face and view, face by face."""
    import cv2
    from skimage.transform import SimilarityTransform

    reference = REFERENCE_POINTS * (size / REFERENCE_SIZE)
    centre = np.array([size / 2, size / 2])
    chips = []
    for face_points in points:
        base = SimilarityTransform.from_estimate(np.asarray(face_points, dtype=np.float64), reference)
        if not base:
            raise FaceError(f"the landmarks {np.round(face_points, 1).tolist()} do not define a face alignment")
        for view in views:
            # the view turns and zooms out around the chip centre, then moves it by a fraction of the chip
            turn = SimilarityTransform(scale=1.0 / view.scale, rotation=math.radians(view.angle))
            moved = centre - np.asarray(view.shift) * size
            matrix = (base + SimilarityTransform(translation=-centre) + turn + SimilarityTransform(translation=moved)).params
            chip = cv2.warpAffine(np.ascontiguousarray(image), matrix[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            chips.append(np.ascontiguousarray(chip[:, ::-1]) if view.mirror else chip)
    return chips
