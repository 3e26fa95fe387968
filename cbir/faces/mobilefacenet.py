"""MobileFaceNet: a 128-d face descriptor (ONNX, Apache-2.0) shipped with the package, run with onnxruntime.

Faces are aligned the standard way (eye centres, nose tip and mouth corners
onto fixed points of a 112 x 112 chip; the points come from the detector when
it gives them, as YuNet does, else from dlib's 68-point shape) and all chips of
an image go through the network in one batch.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cbir.faces.alignment import REFERENCE_SIZE, Landmarks, View, five_points, similarity_chips
from cbir.faces.encoders import l2_normalise, mean_of_views, register_face_encoder
from cbir.faces.models import INSTALL_HINT, FaceError

PACKAGED_MODEL = Path(__file__).parent / "weights" / "mobilefacenet" / "MobileFaceNet.onnx"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@functools.lru_cache(maxsize=None)
def _session(model: Path, process: int):
    """One onnxruntime session per model file and process (sessions are not shared across a fork)."""
    try:
        import onnxruntime
    except ImportError:
        raise FaceError(f"onnxruntime is not installed: {INSTALL_HINT}") from None
    options = onnxruntime.SessionOptions()
    # worker processes already use every core between them
    options.intra_op_num_threads = 1 if multiprocessing.parent_process() is not None else min(4, os.cpu_count() or 1)
    try:
        return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        raise FaceError(f"onnxruntime cannot load {model}: {error}") from None


class MobileFaceNetEncoder:
    """MobileFaceNet (foamliu/MobileFaceNet, trained on MS-Celeb-1M) on 112 x 112 aligned chips."""

    dim = 128
    # the best-accuracy similarity on the LFW dev pairs with flip (bench/results/faces.md)
    default_threshold = 0.28

    def __init__(self, model: str | Path = PACKAGED_MODEL):
        self.model = Path(model)
        if not self.model.is_file():
            raise FaceError(f"MobileFaceNet model {self.model} not found: reinstall cbir, or give the ONNX file")

    def encode(self, chips: list[np.ndarray]) -> np.ndarray:
        """(n, 128) L2-normalised descriptors of 112 x 112 RGB chips cut by ``similarity_chips``."""
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = (np.stack(chips).astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        session = _session(self.model, os.getpid())
        return l2_normalise(session.run(None, {"input0": np.ascontiguousarray(batch.transpose(0, 3, 1, 2))})[0])

    def view_descriptors(self, image: np.ndarray, faces: Sequence[Landmarks], views: tuple[View, ...]) -> np.ndarray:
        """(faces, views, dim): the descriptor of every view of every face."""
        chips = similarity_chips(image, [five_points(image, face) for face in faces], REFERENCE_SIZE, views)
        return self.encode(chips).reshape(len(faces), len(views), self.dim)

    def describe(self, image: np.ndarray, faces: Sequence[Landmarks], views: tuple[View, ...]) -> np.ndarray:
        return mean_of_views(self.view_descriptors(image, faces, views))

    def record(self) -> dict:
        return {"type": "mobilefacenet", "dim": self.dim, "model": self.model.name}


def _from_record(record: dict) -> MobileFaceNetEncoder:
    name = record.get("model", PACKAGED_MODEL.name)
    if name != PACKAGED_MODEL.name:
        raise FaceError(f"the face space was made with MobileFaceNet file {name}: build MobileFaceNetEncoder(PATH) with it")
    return MobileFaceNetEncoder()


register_face_encoder("mobilefacenet", _from_record)
