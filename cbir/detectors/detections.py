"""What a detector returns for one image, and the rules that turn raw candidates into it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms


@dataclass(frozen=True)
class DetectionSettings:
    """How candidates become detections.

    ``score_threshold``: lowest kept score (objectness x class score);
    ``iou_threshold``: class-wise non-maximum suppression overlap;
    ``max_boxes``: most detections kept per image, best first;
    ``min_size``: boxes whose shorter side (in original pixels, once clipped to the image) is
    below this are dropped.
    """

    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    max_boxes: int = 100
    min_size: float = 8.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score threshold {self.score_threshold} is not between 0 and 1")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"NMS IoU threshold {self.iou_threshold} is not in (0, 1]")
        if self.max_boxes < 1:
            raise ValueError(f"max boxes per image must be at least 1, not {self.max_boxes}")
        if self.min_size < 0:
            raise ValueError(f"minimum box size {self.min_size} is negative")


@dataclass(frozen=True)
class Detections:
    """Objects found in one image, best score first.

    ``boxes``: N x 4 float32 ``x0, y0, x1, y1`` in the original image's pixels;
    ``class_ids``: N ints indexing ``class_names``; ``scores``: N floats in [0, 1].
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]

    @classmethod
    def empty(cls, class_names: tuple[str, ...]) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), class_names)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def labels(self) -> list[str]:
        """The class name of each detection."""
        return [self.class_names[i] for i in self.class_ids]

    def best(self, min_score: float = 0.0, max_boxes: int | None = None) -> "Detections":
        """The detections scoring at least ``min_score``, at most ``max_boxes`` of them."""
        keep = np.flatnonzero(self.scores >= min_score)[:max_boxes]
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep], self.class_names)


def select_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    image_size: tuple[int, int],
    settings: DetectionSettings,
    class_names: tuple[str, ...],
) -> Detections:
    """Threshold, clip to the image (``width, height``), drop tiny boxes, class-wise NMS, cap.

    ``boxes`` are candidates already mapped to the original image's pixels.
    """
    width, height = image_size
    keep = scores >= settings.score_threshold
    boxes, scores, class_ids = boxes[keep].astype(np.float32), scores[keep].astype(np.float32), class_ids[keep]
    boxes = np.stack(
        [boxes[:, 0].clip(0, width), boxes[:, 1].clip(0, height), boxes[:, 2].clip(0, width), boxes[:, 3].clip(0, height)],
        axis=1,
    ) if len(boxes) else np.zeros((0, 4), np.float32)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    large = sides >= max(settings.min_size, 1e-3)
    boxes, scores, class_ids = boxes[large], scores[large], class_ids[large]
    if not len(boxes):
        return Detections.empty(class_names)
    kept = batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(class_ids.astype(np.int64)), settings.iou_threshold
    ).numpy()[: settings.max_boxes]
    return Detections(boxes[kept], scores[kept], class_ids[kept].astype(np.int64), class_names)
