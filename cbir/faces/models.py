"""The packaged dlib model files (``face_recognition_models``), loaded once per process."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

INSTALL_HINT = "install the face extras: pip install 'cbir[faces]' (dlib-bin, face_recognition_models, setuptools<81, onnxruntime)"


class FaceError(ValueError):
    """A face operation that cannot be done as asked; the message says what to do."""


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise FaceError(f"dlib is not installed: {INSTALL_HINT}") from None
    return dlib


@functools.lru_cache(maxsize=None)
def model_file(kind: str) -> Path:
    """Path of a packaged model: ``landmarks5``, ``landmarks68``, ``recognition`` or ``mmod``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package imports the deprecated pkg_resources
        try:
            import face_recognition_models as models
        except ImportError as error:
            raise FaceError(f"face_recognition_models cannot be imported ({error}): {INSTALL_HINT}") from None
    locations = {
        "landmarks5": models.pose_predictor_five_point_model_location,
        "landmarks68": models.pose_predictor_model_location,
        "recognition": models.face_recognition_model_location,
        "mmod": models.cnn_face_detector_model_location,
    }
    path = Path(locations[kind]())
    if not path.is_file():
        raise FaceError(f"the packaged model {path.name} is missing: reinstall face_recognition_models")
    return path


@functools.lru_cache(maxsize=None)
def landmark_model():
    """dlib's 5-point landmark predictor (eye corners and nose base)."""
    return _import_dlib().shape_predictor(str(model_file("landmarks5")))


@functools.lru_cache(maxsize=None)
def landmark_model_68():
    """dlib's 68-point landmark predictor (face contour, brows, eyes, nose, mouth)."""
    return _import_dlib().shape_predictor(str(model_file("landmarks68")))


@functools.lru_cache(maxsize=None)
def recognition_model():
    """dlib's ResNet face descriptor network (128-d)."""
    return _import_dlib().face_recognition_model_v1(str(model_file("recognition")))


@functools.lru_cache(maxsize=None)
def hog_detector():
    """dlib's HOG + linear SVM frontal face detector."""
    return _import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def mmod_detector():
    """dlib's CNN (max-margin object detection) face detector."""
    return _import_dlib().cnn_face_detection_model_v1(str(model_file("mmod")))
