"""A detector's average precision at IoU 0.5 against box annotations, as PASCAL VOC computes it.

Per class: detections sorted by score; each is a true positive when its best-overlapping
annotated box of that class in the same photo has IoU >= 0.5 and was not matched before, a
false positive otherwise; a detection whose best match is a *difficult* box counts as neither.
AP is the area under the precision-recall curve with precision made monotone (all points,
VOC 2010 onwards); difficult boxes are not counted among the positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The 20 VOC classes and the COCO name of the same class (COCO detectors name them so).
VOC_TO_COCO = {
    "aeroplane": "airplane", "bicycle": "bicycle", "bird": "bird", "boat": "boat", "bottle": "bottle",
    "bus": "bus", "car": "car", "cat": "cat", "chair": "chair", "cow": "cow",
    "diningtable": "dining table", "dog": "dog", "horse": "horse", "motorbike": "motorcycle",
    "person": "person", "pottedplant": "potted plant", "sheep": "sheep", "sofa": "couch",
    "train": "train", "tvmonitor": "tv",
}


@dataclass(frozen=True)
class ClassDetections:
    """All detections of one class: the photo, box (x0, y0, x1, y1) and score of each."""

    photos: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of ``boxes`` (continuous pixel coordinates)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


def average_precision_from_pr(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall points with precision made non-increasing (VOC 2010+)."""
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def class_average_precision(
    detections: ClassDetections, truth_boxes: dict[int, np.ndarray], truth_difficult: dict[int, np.ndarray], threshold: float = 0.5
) -> float:
    """AP of one class; ``truth_boxes[photo]`` are its annotated boxes, ``truth_difficult[photo]`` their flags.
    NaN when the class has no non-difficult box."""
    positives = sum(int((~flags).sum()) for flags in truth_difficult.values())
    if positives == 0:
        return float("nan")
    matched = {photo: np.zeros(len(boxes), bool) for photo, boxes in truth_boxes.items()}
    order = np.argsort(-detections.scores, kind="stable")
    outcome = []
    for index in order:
        photo = int(detections.photos[index])
        boxes = truth_boxes.get(photo)
        if boxes is None or not len(boxes):
            outcome.append(0)
            continue
        overlaps = iou(detections.boxes[index], boxes)
        best = int(overlaps.argmax())
        if overlaps[best] < threshold:
            outcome.append(0)
        elif truth_difficult[photo][best]:
            continue
        elif matched[photo][best]:
            outcome.append(0)
        else:
            matched[photo][best] = True
            outcome.append(1)
    hits = np.asarray(outcome, dtype=float)
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, len(hits) + 1) if len(hits) else np.zeros(0)
    return average_precision_from_pr(true_positives / positives, precision)
