"""Five-point landmarks and aligned face chips (dlib's similarity alignment)."""

from __future__ import annotations

import numpy as np

from cbir.faces.models import _import_dlib, landmark_model


def to_dlib_rectangle(box: tuple[float, float, float, float]):
    """dlib's inclusive rectangle for a ``(left, top, right, bottom)`` box."""
    left, top, right, bottom = (int(round(v)) for v in box)
    return _import_dlib().rectangle(left, top, max(left, right - 1), max(top, bottom - 1))


def landmarks(image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> list:
    """dlib 5-point shapes (outer and inner eye corners, base of the nose) for each box."""
    predictor = landmark_model()
    return [predictor(image, to_dlib_rectangle(box)) for box in boxes]


def landmark_points(shape) -> list[list[float]]:
    """The points of a dlib shape as ``[[x, y], ...]``."""
    return [[float(shape.part(i).x), float(shape.part(i).y)] for i in range(shape.num_parts)]


def aligned_chips(image: np.ndarray, shapes: list, size: int = 150, padding: float = 0.25) -> list[np.ndarray]:
    """Square chips, rotated and scaled so the landmarks sit where the face model expects them."""
    if not shapes:
        return []
    dlib = _import_dlib()
    detections = dlib.full_object_detections()
    for shape in shapes:
        detections.append(shape)
    return [np.asarray(chip) for chip in dlib.get_face_chips(image, detections, size=size, padding=padding)]
