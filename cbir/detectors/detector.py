"""The detector seam: images in, per image the objects found (``Detections``); and the registry of named detectors."""

from __future__ import annotations

from typing import Protocol, Sequence

from PIL import Image

from cbir.core.registry import Registry
from cbir.detectors.detections import DetectionSettings, Detections


class Detector(Protocol):
    """Finds objects in RGB images."""

    settings: DetectionSettings
    class_names: tuple[str, ...]

    def detect(self, images: Sequence[Image.Image]) -> list[Detections]:
        """The detections of each image, in order."""
        ...

    def with_settings(self, settings: DetectionSettings) -> "Detector":
        """The same model with other settings (the model is shared, not reloaded)."""
        ...

    def record(self) -> dict:
        """What decides the detections (model identity, input size, settings), for a collection or a result."""
        ...


DETECTORS: Registry[Detector] = Registry("detector")
