"""Letterboxing: fit an image into a fixed network input without distorting it, and map boxes back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """Where the resized image sits in the network input: ``scale`` times the original, shifted by the padding."""

    scale: float
    pad_left: float
    pad_top: float

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """``x0, y0, x1, y1`` boxes in network-input pixels -> original-image pixels (not clipped)."""
        offset = np.array([self.pad_left, self.pad_top, self.pad_left, self.pad_top], dtype=np.float32)
        return (boxes - offset) / self.scale


def letterbox(
    image: Image.Image, size: tuple[int, int], centred: bool, pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, Letterbox]:
    """``image`` (RGB) scaled to fit ``size`` (height, width), aspect kept, padded with ``pad_value``.

    ``centred`` splits the padding between both sides (YOLOv5/v8 exports); otherwise the image
    sits in the top-left corner (YOLOX). Returns H x W x 3 uint8 RGB pixels and the placement.
    """
    height, width = size
    scale = min(height / image.height, width / image.width)
    new_width, new_height = max(1, int(image.width * scale)), max(1, int(image.height * scale))
    resized = np.asarray(image.convert("RGB").resize((new_width, new_height), Image.BILINEAR))
    canvas = np.full((height, width, 3), pad_value, dtype=np.uint8)
    left = (width - new_width) // 2 if centred else 0
    top = (height - new_height) // 2 if centred else 0
    canvas[top : top + new_height, left : left + new_width] = resized
    return canvas, Letterbox(scale, float(left), float(top))
