"""MedMNIST arrays (``.npz`` with ``{split}_images`` and ``{split}_labels``) as images and labels.

Any MedMNIST file works: 2-D sets (N x H x W greyscale or N x H x W x 3
colour) and their official ``train``/``val``/``test`` splits, single-label
or multi-label (ChestMNIST). Labels are always returned as N x L integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class MedMNISTSplit:
    """One split of a MedMNIST file: uint8 image arrays and N x L integer labels."""

    name: str
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @property
    def is_multilabel(self) -> bool:
        return self.labels.shape[1] > 1

    def class_labels(self) -> np.ndarray:
        """One class index per image (N,); refuses multi-label sets."""
        if self.is_multilabel:
            raise ValueError(f"split {self.name!r} is multi-label ({self.labels.shape[1]} labels per image); it has no single class per image")
        return self.labels[:, 0]

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as an RGB PIL image."""
        return array_to_image(self.images[index])


def medmnist_splits(path: str | Path) -> list[str]:
    """The split names a MedMNIST file holds, e.g. ``['train', 'val', 'test']``."""
    with _open(path) as data:
        names = [key.removesuffix("_images") for key in data.files if key.endswith("_images")]
        return [name for name in names if f"{name}_labels" in data.files]


def read_medmnist(path: str | Path, split: str) -> MedMNISTSplit:
    """Read split ``split`` of a MedMNIST ``.npz`` file."""
    with _open(path) as data:
        if f"{split}_images" not in data.files or f"{split}_labels" not in data.files:
            available = sorted(key.removesuffix("_images") for key in data.files if key.endswith("_images"))
            raise ValueError(f"{path} has no split {split!r}; it has {', '.join(available) or 'none'}")
        images = np.asarray(data[f"{split}_images"])
        labels = np.asarray(data[f"{split}_labels"])
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ValueError(f"{path}: {split}_images has shape {images.shape}; expected N x H x W or N x H x W x 3 (2-D MedMNIST)")
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: {split}_images are {images.dtype}, expected uint8")
    labels = labels.reshape(len(labels), -1).astype(np.int64)
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} {split} images but {len(labels)} labels")
    return MedMNISTSplit(split, images, labels)


def array_to_image(array: np.ndarray) -> Image.Image:
    """An H x W or H x W x 1/3 uint8 array as an RGB PIL image."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(array).convert("RGB")


def _open(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MedMNIST file {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable .npz file: {error}") from None


def medmnist_images(path: str | Path, splits: list[str] | None = None):
    """Every image of the file's splits (default: all) as (name ``split[i]``, RGB picture, metadata)."""
    for split_name in splits or medmnist_splits(path):
        split = read_medmnist(path, split_name)
        for index in range(len(split)):
            labels = [int(v) for v in split.labels[index]]
            metadata = {"format": "medmnist", "split": split_name, "index": index, "label": labels[0] if len(labels) == 1 else labels}
            yield f"{split_name}[{index}]", split.image(index), metadata
