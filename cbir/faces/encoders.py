"""Face encoders: an image and its faces' landmarks in, one L2-normalised descriptor per face out.

Each encoder aligns faces the way its model was trained (dlib's ResNet:
chips of 150 px with 25 % padding from dlib's 5-point shape). Another model
plugs in by implementing ``FaceEncoder`` and registering in ``FACE_ENCODERS``,
under the ``type`` its ``record()`` carries, a factory that takes that record,
so a collection can rebuild the encoder of
its face space.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from cbir.core.registry import Registry
from cbir.faces.alignment import Landmarks, View, aligned_chips
from cbir.faces.models import FaceError, recognition_model


class FaceEncoder(Protocol):
    """Turns the faces of an image into comparable vectors."""

    dim: int
    default_threshold: float  # the similarity a match needs when nobody calibrated one

    def describe(self, image: np.ndarray, faces: Sequence[Landmarks], views: tuple[View, ...]) -> np.ndarray:
        """A (faces, dim) float32 array: each face's L2-normalised descriptor, the mean of its ``views``."""

    def record(self) -> dict:
        """What rebuilds this encoder (with ``type``); vectors are comparable only under equal records."""


FACE_ENCODERS: Registry[FaceEncoder] = Registry("face encoder", error=FaceError)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def mean_of_views(per_view: np.ndarray) -> np.ndarray:
    """(faces, dim) descriptors from (faces, views, dim) ones: the normalised mean of each face's views."""
    return l2_normalise(np.asarray(per_view).mean(axis=1))


class DlibResNetEncoder:
    """dlib's face ResNet (``dlib_face_recognition_resnet_model_v1``)."""

    dim = 128
    chip_size = 150
    padding = 0.25
    # the best-accuracy similarity on the LFW dev pairs with flip (bench/results/faces.md)
    default_threshold = 0.91

    def view_descriptors(self, image: np.ndarray, faces: Sequence[Landmarks], views: tuple[View, ...]) -> np.ndarray:
        """(faces, views, dim): the descriptor of every view of every face."""
        chips = aligned_chips(image, [face.shape for face in faces], self.chip_size, self.padding, views)
        return self.encode(chips).reshape(len(faces), len(views), self.dim)

    def describe(self, image: np.ndarray, faces: Sequence[Landmarks], views: tuple[View, ...]) -> np.ndarray:
        return mean_of_views(self.view_descriptors(image, faces, views))

    def encode(self, chips: list[np.ndarray]) -> np.ndarray:
        """(n, dim) L2-normalised descriptors of 150 px chips cut by ``aligned_chips``."""
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


def make_face_encoder(name: str) -> FaceEncoder:
    """The face encoder registered as ``name``, with its default settings."""
    return face_encoder_from_record({"type": name})


def face_encoder_from_record(record: dict) -> FaceEncoder:
    """The encoder a face space was built with."""
    import cbir.faces.fusion  # noqa: F401  (registers fusion)
    import cbir.faces.mobilefacenet  # noqa: F401  (registers mobilefacenet)

    type_name = record.get("type", "")
    if type_name not in FACE_ENCODERS:
        raise FaceError(
            f"unknown face encoder {type_name!r}: choose one of {', '.join(FACE_ENCODERS.names())} "
            "(or import the module that registers it first)"
        )
    return FACE_ENCODERS.get(type_name)(record)
