"""Augmentation for retrieval training: the same content seen a little differently.

A random crop keeping 50-100% of the area (aspect ratio 3:4 to 4:3, resized
back to the original size), a horizontal flip, and mild changes of
brightness, contrast and saturation. Nothing that changes what the picture
shows: no heavy rotation, no cut-outs.
"""

from __future__ import annotations

from PIL import Image
from torchvision.transforms import v2


class RetrievalAugmentation:
    """PIL image -> randomly altered PIL image of the same size."""

    def __init__(self, crop_area: tuple[float, float] = (0.5, 1.0), flip: bool = True, jitter: float = 0.3):
        self.crop_area = crop_area
        self.flip = v2.RandomHorizontalFlip() if flip else v2.Identity()
        self.jitter = v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter)

    def __call__(self, image: Image.Image) -> Image.Image:
        crop = v2.RandomResizedCrop((image.height, image.width), scale=self.crop_area, ratio=(3 / 4, 4 / 3), antialias=True)
        return self.jitter(self.flip(crop(image)))
