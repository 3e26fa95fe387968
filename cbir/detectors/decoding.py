"""Raw outputs of YOLO-family ONNX exports -> candidate boxes (network-input pixels), scores, classes.

* ``yolox``: A x (5 + C) rows per grid cell at strides 8, 16, 32 (row-major, stride 8 first):
  offsets x, y, log w, log h relative to the cell, objectness, C class scores (both after
  sigmoid, as YOLOX's exported head gives them). ``yolox-decoded`` is an export made with the
  decoding inside (box centre and size already in pixels).
* ``yolov8``: (4 + C) x A columns: box centre x, y, width, height in pixels, then C class
  scores (after sigmoid), no objectness.

Each candidate keeps its best class (score = objectness x best class score for YOLOX).
"""

from __future__ import annotations

import numpy as np

FORMATS = ("yolox", "yolox-decoded", "yolov8")
STRIDES = (8, 16, 32)


def grid_cells(height: int, width: int, strides: tuple[int, ...] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """(A x 2) cell coordinates x, y and (A) strides of the YOLOX output rows for a ``height x width`` input."""
    cells, cell_strides = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        cell_strides.append(np.full(xs.size, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(cell_strides).astype(np.float32)


def anchor_count(height: int, width: int, strides: tuple[int, ...] = STRIDES) -> int:
    """Rows a YOLOX or YOLOv8 head outputs for a ``height x width`` input."""
    return sum((height // s) * (width // s) for s in strides)


def detect_format(output_shape: tuple[int, ...], input_size: tuple[int, int]) -> str:
    """``yolox`` or ``yolov8`` from the output's shape (batch, rows, columns); raises when it is neither."""
    anchors = anchor_count(*input_size)
    if len(output_shape) == 3:
        _, rows, columns = output_shape
        if rows == anchors and isinstance(columns, int) and columns > 5:
            return "yolox"
        if columns == anchors and isinstance(rows, int) and rows > 4:
            return "yolov8"
    raise ValueError(
        f"cannot tell the detector's format from its output shape {list(output_shape)} for a "
        f"{input_size[0]}x{input_size[1]} input (expected 1x{anchors}x(5+classes) for YOLOX or "
        f"1x(4+classes)x{anchors} for YOLOv8): state it with the detector format option ({', '.join(FORMATS)})"
    )


def _xywh_to_xyxy(centre_size: np.ndarray) -> np.ndarray:
    half = centre_size[:, 2:4] / 2
    return np.concatenate([centre_size[:, :2] - half, centre_size[:, :2] + half], axis=1)


def decode_yolox(output: np.ndarray, input_size: tuple[int, int], decoded: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's A x (5 + C) YOLOX output -> (A x 4 xyxy boxes, A scores, A class ids)."""
    output = np.asarray(output, dtype=np.float32)
    centre_size = output[:, :4].copy()
    if not decoded:
        cells, strides = grid_cells(*input_size)
        if len(cells) != len(output):
            raise ValueError(f"YOLOX output has {len(output)} rows; a {input_size[0]}x{input_size[1]} input gives {len(cells)}")
        centre_size[:, :2] = (centre_size[:, :2] + cells) * strides[:, None]
        centre_size[:, 2:4] = np.exp(np.minimum(centre_size[:, 2:4], 20.0)) * strides[:, None]
    class_scores = output[:, 5:]
    class_ids = class_scores.argmax(axis=1)
    scores = output[:, 4] * class_scores[np.arange(len(output)), class_ids]
    return _xywh_to_xyxy(centre_size), scores, class_ids


def decode_yolov8(output: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (4 + C) x A YOLOv8 output -> (A x 4 xyxy boxes, A scores, A class ids)."""
    output = np.asarray(output, dtype=np.float32).T
    class_scores = output[:, 4:]
    class_ids = class_scores.argmax(axis=1)
    return _xywh_to_xyxy(output[:, :4]), class_scores[np.arange(len(output)), class_ids], class_ids


def decode(output: np.ndarray, format: str, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's output in ``format`` (one of ``FORMATS``)."""
    if format == "yolox":
        return decode_yolox(output, input_size)
    if format == "yolox-decoded":
        return decode_yolox(output, input_size, decoded=True)
    if format == "yolov8":
        return decode_yolov8(output)
    raise ValueError(f"unknown detector format {format!r}: choose one of {', '.join(FORMATS)}")


def class_count(output_shape: tuple[int, ...], format: str) -> int:
    """Number of classes an output of ``output_shape`` scores in ``format``."""
    return output_shape[2] - 5 if format.startswith("yolox") else output_shape[1] - 4
