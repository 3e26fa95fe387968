"""An encoder: backbone + pooling + L2, described by a serialisable ``EncoderSpec``."""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cbir.encoders.backbones import InputConfig, create_backbone
from cbir.encoders.pooling import POOLINGS, make_pooling

MULTI_SCALES = (1.0, 1 / math.sqrt(2), 0.5)


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that decides what vector an image gets.

    ``image_size`` is the length of the short side after resizing (the aspect
    ratio is kept, nothing is cropped); ``max_aspect`` caps the long side at
    that multiple of it. ``scales`` > 1 entry averages descriptors over
    rescaled copies.
    """

    backbone: str = "efficientnet_lite0"
    pooling: str = "rmac"
    gem_p: float = 3.0
    rmac_levels: int = 3
    image_size: int = 224
    max_aspect: float = 3.0
    scales: tuple[float, ...] = (1.0,)
    weights: str | None = None
    weights_sha256: str | None = field(default=None)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        if self.image_size < 32:
            raise ValueError("image_size must be at least 32 pixels")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive numbers")
        if self.weights is not None and self.weights_sha256 is None:
            object.__setattr__(self, "weights_sha256", file_sha256(self.weights))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["scales"] = list(self.scales)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def identity(self) -> dict:
        """The fields that must agree for two encoders to give the same vectors."""
        data = self.to_dict()
        data.pop("weights")
        return data


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Encoder(nn.Module):
    """Turns images into L2-normalised descriptors."""

    def __init__(self, spec: EncoderSpec = EncoderSpec()):
        super().__init__()
        self.spec = spec
        self.backbone, self.input_config = create_backbone(spec.backbone, spec.weights)
        self.backbone.to(memory_format=torch.channels_last)
        self.pooling = make_pooling(spec.pooling, spec.gem_p, rmac_levels=spec.rmac_levels)
        self.eval()

    @property
    def dim(self) -> int:
        return self.backbone.channels

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing the short side to ``image_size``."""
        return resized_size(width, height, self.spec.image_size, self.spec.max_aspect)

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """Resize (aspect kept) and normalise an RGB image into a 3 x H x W tensor."""
        return image_to_tensor(image, self.target_size(*image.size), self.input_config)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Descriptors (B x D) of a batch of same-sized preprocessed images."""
        total = None
        for scale in self.spec.scales:
            scaled = batch
            if scale != 1.0:
                height, width = batch.shape[-2:]
                size = (max(32, round(height * scale)), max(32, round(width * scale)))
                scaled = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
            features = self.backbone(scaled.contiguous(memory_format=torch.channels_last))
            descriptor = F.normalize(self.pooling(features).float(), dim=-1)
            total = descriptor if total is None else total + descriptor
        return F.normalize(total, dim=-1)

    @torch.inference_mode()
    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Descriptors of RGB images of any sizes, in order, as float32 (N x D)."""
        vectors = np.zeros((len(images), self.dim), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        tensors = [self.to_tensor(image) for image in images]
        for index, tensor in enumerate(tensors):
            groups.setdefault(tuple(tensor.shape), []).append(index)
        for indices in groups.values():
            batch = torch.stack([tensors[i] for i in indices])
            vectors[indices] = self(batch).numpy()
        return vectors


@functools.lru_cache(maxsize=4)
def shared_encoder(spec: EncoderSpec) -> Encoder:
    """One inference encoder per spec per process (model weights are loaded once)."""
    return Encoder(spec)


def resized_size(width: int, height: int, short_side: int, max_aspect: float) -> tuple[int, int]:
    """Size with the short side at ``short_side`` and the long side at most ``max_aspect`` times it."""
    scale = short_side / min(width, height)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    cap = round(short_side * max_aspect)
    if max(new_width, new_height) > cap:
        shrink = cap / max(new_width, new_height)
        new_width, new_height = max(1, round(new_width * shrink)), max(1, round(new_height * shrink))
    return new_width, new_height


_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def image_to_tensor(image: Image.Image, size: tuple[int, int], config: InputConfig) -> torch.Tensor:
    """Resize to ``size`` (width, height) and normalise with ``config``'s mean and std."""
    if image.size != size:
        image = image.resize(size, _RESAMPLE.get(config.interpolation, Image.BICUBIC), reducing_gap=3.0)
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return array.sub_(mean).div_(std)
