"""Face encoders: aligned chips in, L2-normalised descriptors out.

The default is dlib's ResNet (128-d, trained on chips of 150 px with 25 %
padding). Another model plugs in by implementing ``FaceEncoder`` and
registering in ``FACE_ENCODERS``, under the ``type`` its ``record()`` carries,
a factory that takes that record, so a collection can rebuild the encoder of
its face space.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from cbir.core.registry import Registry
from cbir.faces.models import FaceError, recognition_model


class FaceEncoder(Protocol):
    """Turns aligned face chips into comparable vectors."""

    dim: int
    chip_size: int
    padding: float

    def encode(self, chips: list[np.ndarray]) -> np.ndarray:
        """An (n, dim) float32 array of L2-normalised descriptors, one per chip."""

    def record(self) -> dict:
        """What rebuilds this encoder (with ``type``); vectors are comparable only under equal records."""


FACE_ENCODERS: Registry[FaceEncoder] = Registry("face encoder", error=FaceError)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class DlibResNetEncoder:
    """dlib's face ResNet (``dlib_face_recognition_resnet_model_v1``)."""

    dim = 128
    chip_size = 150
    padding = 0.25

    def encode(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = [np.ascontiguousarray(chip, dtype=np.uint8) for chip in chips]
        return l2_normalise(np.asarray(recognition_model().compute_face_descriptor(batch), dtype=np.float32))

    def record(self) -> dict:
        return {"type": "dlib_resnet_v1", "dim": self.dim, "chip_size": self.chip_size, "padding": self.padding}


@FACE_ENCODERS.register("dlib_resnet_v1")
def _dlib_resnet(record: dict) -> FaceEncoder:
    return DlibResNetEncoder()


def register_face_encoder(type_name: str, factory: Callable[[dict], FaceEncoder]) -> None:
    """Make encoders whose record has ``type == type_name`` rebuildable from that record (``factory(record)``)."""
    FACE_ENCODERS.register(type_name)(factory)


def face_encoder_from_record(record: dict) -> FaceEncoder:
    """The encoder a face space was built with."""
    type_name = record.get("type", "")
    if type_name not in FACE_ENCODERS:
        raise FaceError(
            f"no face encoder of type {type_name!r} is registered (known: {', '.join(FACE_ENCODERS.names())}); "
            "import the module that registers it first"
        )
    return FACE_ENCODERS.get(type_name)(record)
