"""Region descriptors: pool the part of a feature map that lies under a box.

One forward pass per image gives the whole-image descriptor and, from the same C x H x W map,
one descriptor per box (a detected object): the feature-map cells whose centres fall inside
the box are pooled like the whole map (R-MAC, GeM, ...). ``describe_crops`` is the
alternative that re-encodes each box's crop as an image of its own.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cbir.encoders.encoder import Encoder

Box = Sequence[float]
Describe = Callable[[torch.Tensor], torch.Tensor]


def feature_window(box: Box, image_size: tuple[int, int], map_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Cells ``(top, left, bottom, right)`` (end exclusive) of a ``map_size`` (H, W) map under ``box``.

    ``box`` is ``x0, y0, x1, y1`` in the pixels of an image of ``image_size`` (width, height),
    which the map covers evenly. Kept: the cells whose centres lie inside the box; along an
    axis where none does, the one cell under the box's middle.
    """
    width, height = image_size
    map_height, map_width = map_size
    x0, y0, x1, y1 = (float(v) for v in box)
    left, right = _cells(x0 / width * map_width, x1 / width * map_width, map_width)
    top, bottom = _cells(y0 / height * map_height, y1 / height * map_height, map_height)
    return top, left, bottom, right


def _cells(start: float, end: float, count: int) -> tuple[int, int]:
    """Cells ``[first, last + 1)`` whose centres ``i + 0.5`` lie in ``[start, end]`` (map units)."""
    first = max(0, math.ceil(start - 0.5))
    last = min(count - 1, math.floor(end - 0.5))
    if last < first:
        middle = min(count - 1, max(0, math.floor((start + end) / 2)))
        return middle, middle + 1
    return first, last + 1


def pool_regions(features: torch.Tensor, boxes: Sequence[Box], image_size: tuple[int, int], describe: Describe) -> torch.Tensor:
    """Descriptors (N x D) of ``boxes`` from one image's C x H x W ``features``.

    ``describe`` maps a batch of feature maps (B x C x h x w) to descriptors (B x D), for
    example a pooling module or ``Encoder.describe``; windows of equal size go through it together.
    """
    if len(boxes) == 0:
        return features.new_zeros((0, describe(features[None, :, :1, :1]).shape[1]))
    windows = [feature_window(box, image_size, features.shape[-2:]) for box in boxes]
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, (top, left, bottom, right) in enumerate(windows):
        by_size.setdefault((bottom - top, right - left), []).append(index)
    rows: list[torch.Tensor | None] = [None] * len(boxes)
    for indices in by_size.values():
        stacked = torch.stack([features[:, t:b, l:r] for t, l, b, r in (windows[i] for i in indices)])
        for index, descriptor in zip(indices, describe(stacked)):
            rows[index] = descriptor
    return torch.stack(rows)


class RegionPooling(nn.Module):
    """``pooling`` applied to the part of a feature map under each box, L2-normalised."""

    def __init__(self, pooling: nn.Module):
        super().__init__()
        self.pooling = pooling

    def forward(self, features: torch.Tensor, boxes: Sequence[Box], image_size: tuple[int, int]) -> torch.Tensor:
        return F.normalize(pool_regions(features, boxes, image_size, self.pooling), dim=-1)


@torch.inference_mode()
def describe_with_regions(
    encoder: Encoder, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each image, its descriptor (D) and its boxes' descriptors (N x D), from one forward pass
    per scale; same-sized images share a batch. Equals ``encoder.encode_images`` for the whole image."""
    tensors = [encoder.to_tensor(image) for image in images]
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, tensor in enumerate(tensors):
        groups.setdefault(tuple(tensor.shape), []).append(index)
    results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(images)
    for indices in groups.values():
        batch = torch.stack([tensors[i] for i in indices])
        wholes, regions = describe_batch_with_regions(encoder, batch, [images[i].size for i in indices], [boxes[i] for i in indices])
        for index, whole, region in zip(indices, wholes, regions):
            results[index] = (whole.numpy(), region.numpy())
    return results


@torch.inference_mode()
def describe_batch_with_regions(
    encoder: Encoder, batch: torch.Tensor, sizes: Sequence[tuple[int, int]], boxes: Sequence[np.ndarray]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A preprocessed batch (B x 3 x H x W) of images of original ``sizes`` (width, height) -> their
    descriptors (B x D) and, per image, its ``boxes``' descriptors (N x D), as ``Encoder.forward`` pools."""
    wholes, regions = None, None
    for scale in encoder.spec.scales:
        scaled = batch
        if scale != 1.0:
            height, width = batch.shape[-2:]
            size = (max(32, round(height * scale)), max(32, round(width * scale)))
            scaled = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
        features = encoder.backbone(scaled.contiguous(memory_format=torch.channels_last))
        whole = encoder.describe(features)
        parts = [pool_regions(maps, image_boxes, size, encoder.describe) for maps, image_boxes, size in zip(features, boxes, sizes)]
        wholes = whole if wholes is None else wholes + whole
        regions = parts if regions is None else [total + part for total, part in zip(regions, parts)]
    return F.normalize(wholes, dim=-1), [F.normalize(part, dim=-1) for part in regions]


def crop_box(image: Image.Image, box: Box) -> Image.Image:
    """The part of ``image`` under ``box`` (rounded to whole pixels, clipped, at least 1 x 1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    left = min(max(0, int(round(x0))), image.width - 1)
    top = min(max(0, int(round(y0))), image.height - 1)
    right = max(left + 1, min(image.width, int(round(x1))))
    bottom = max(top + 1, min(image.height, int(round(y1))))
    return image.crop((left, top, right, bottom))


def describe_crops(encoder: Encoder, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
    """Descriptors (N x D) of ``boxes`` by encoding each crop as an image of its own."""
    if len(boxes) == 0:
        return np.zeros((0, encoder.dim), np.float32)
    return encoder.encode_images([crop_box(image, box) for box in boxes])
