"""An encoder: backbone + pooling + L2 (+ a learned projection), described by a serialisable ``EncoderSpec``.

The spec and its defaults live in ``cbir.encoders.spec`` (no torch needed to read
them). A fine-tuned encoder lives in one file (``save_encoder_file``): its spec, its
weights and a summary of the data it was trained on. ``load_encoder_file``
gives it back; a spec with ``checkpoint`` set builds the same encoder.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cbir.encoders.backbones import InputConfig, create_backbone
from cbir.encoders.fusion import fuse_for_inference
from cbir.encoders.pooling import make_pooling
from cbir.encoders.precision import Bf16Backbone, calibration_photos, int8_backbone
from cbir.encoders.spec import DEFAULT_BATCH_SIZE, MULTI_SCALES, EncoderSpec, file_sha256  # noqa: F401 (also imported from here)
from cbir.io.atomic import atomic_write

ENCODER_FILE_FORMAT = "cbir-encoder"
ENCODER_FILE_VERSION = 1


class Encoder(nn.Module):
    """Turns images into L2-normalised descriptors."""

    def __init__(self, spec: EncoderSpec = EncoderSpec()):
        super().__init__()
        self.spec = spec
        stored = read_encoder_file(spec.checkpoint, spec.checkpoint_sha256) if spec.checkpoint else None
        self.backbone, self.input_config = create_backbone(spec.backbone, spec.weights, pretrained=stored is None)
        self.pooling = make_pooling(spec.pooling, spec.gem_p, rmac_levels=spec.rmac_levels)
        self.projection: nn.Linear | None = None
        self.inference_only = False
        if stored is not None:
            self._load_stored(stored)
        self.backbone.to(memory_format=torch.channels_last)
        self.eval()

    def _load_stored(self, stored: dict) -> None:
        if stored["spec"]["backbone"] != self.spec.backbone:
            raise ValueError(
                f"{self.spec.checkpoint} holds a {stored['spec']['backbone']} encoder, not {self.spec.backbone}; "
                "load it with load_encoder_file"
            )
        self.backbone.load_state_dict(stored["backbone"])
        projection = stored.get("projection")
        if projection is not None:
            out_dim, in_dim = projection["weight"].shape
            self.projection = nn.Linear(in_dim, out_dim)
            self.projection.load_state_dict(projection)

    def for_inference(self) -> "Encoder":
        """This encoder with its backbone rewritten to run faster (``cbir.encoders.fusion``), same vectors,
        at the spec's precision (``cbir.encoders.precision``); it can no longer be trained or saved."""
        if self.spec.precision == "int8":
            self.backbone = int8_backbone(self.backbone, self.spec.identity(), self._calibration)
        else:
            self.backbone = fuse_for_inference(self.backbone)
            if self.spec.precision == "bf16":
                self.backbone = Bf16Backbone(self.backbone)
        self.inference_only = True
        return self

    def _calibration(self) -> list[torch.Tensor]:
        """The int8 calibration photos as this encoder feeds them to its network."""
        return [self.to_tensor(Image.fromarray(photo)) for photo in calibration_photos()]

    @property
    def dim(self) -> int:
        return self.projection.out_features if self.projection is not None else self.backbone.channels

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
            descriptor = self.describe(self.backbone(scaled.contiguous(memory_format=torch.channels_last)))
            total = descriptor if total is None else total + descriptor
        return F.normalize(total, dim=-1)

    def describe(self, features: torch.Tensor) -> torch.Tensor:
        """L2-normalised descriptors (B x D) of backbone feature maps: pool, L2, projection, L2."""
        descriptor = F.normalize(self.pooling(features).float(), dim=-1)
        if self.projection is not None:
            descriptor = F.normalize(self.projection(descriptor), dim=-1)
        return descriptor

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
    return Encoder(spec).for_inference()


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


def image_pixels(image: Image.Image, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """The image resized to ``size`` (width, height) as H x W x 3 uint8 pixels."""
    if image.size != size:
        image = image.resize(size, _RESAMPLE.get(interpolation, Image.BICUBIC), reducing_gap=3.0)
    return torch.from_numpy(np.array(image, dtype=np.uint8))


def normalise(pixels: torch.Tensor, config: InputConfig) -> torch.Tensor:
    """([B x] H x W x 3) uint8 pixels -> ([B x] 3 x H x W) floats normalised with ``config``'s mean and std.

    The result is a channels-last view of the pixels' layout, so a batch goes
    to the network without being reordered.
    """
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return pixels.movedim(-1, -3).float().div_(255.0).sub_(mean).div_(std)


def image_to_tensor(image: Image.Image, size: tuple[int, int], config: InputConfig) -> torch.Tensor:
    """Resize to ``size`` (width, height) and normalise with ``config``'s mean and std: 3 x H x W floats."""
    return normalise(image_pixels(image, size, config.interpolation), config)


def save_encoder_file(path: str | Path, encoder: Encoder, training: dict | None = None) -> None:
    """Write ``encoder`` (spec, backbone weights, projection) and a training summary to one file, atomically."""
    if encoder.inference_only:
        raise ValueError("an encoder prepared for inference has no batch norms left to save; save the encoder that was trained")
    spec = encoder.spec.to_dict()
    for key in ("weights", "weights_sha256", "checkpoint", "checkpoint_sha256"):
        spec[key] = None
    content = {
        "format": ENCODER_FILE_FORMAT,
        "version": ENCODER_FILE_VERSION,
        "spec": spec,
        "backbone": {key: value.detach().cpu() for key, value in encoder.backbone.state_dict().items()},
        "projection": (
            {key: value.detach().cpu() for key, value in encoder.projection.state_dict().items()}
            if encoder.projection is not None
            else None
        ),
        "training": training or {},
    }
    with atomic_write(path) as stream:
        torch.save(content, stream)


def read_encoder_file(path: str | Path, expected_sha256: str | None = None) -> dict:
    """The content of an encoder file, checked for format and (when given) SHA-256."""
    path = Path(path)
    if not path.is_file():
        moved = "; if it has moved, pass its new path with --encoder" if expected_sha256 is not None else ""
        raise FileNotFoundError(f"encoder file {path} does not exist{moved}")
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise ValueError(
            f"encoder file {path} has changed since it was recorded (SHA-256 differs); "
            "restore the original file or re-index with the new one into a new collection"
        )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ... on foreign files
        raise ValueError(f"{path} is not a readable encoder file ({error.__class__.__name__}); make one with 'cbir train'") from None
    if not isinstance(content, dict) or content.get("format") != ENCODER_FILE_FORMAT:
        raise ValueError(f"{path} is not a cbir encoder file; make one with 'cbir train'")
    if content.get("version") != ENCODER_FILE_VERSION:
        raise ValueError(f"{path}: encoder file version {content.get('version')} is not supported (expected {ENCODER_FILE_VERSION})")
    return content


def encoder_spec_from_file(path: str | Path) -> EncoderSpec:
    """The spec of the encoder stored in ``path`` (a file written by ``save_encoder_file``)."""
    stored = read_encoder_file(path)
    return EncoderSpec.from_dict({**stored["spec"], "checkpoint": str(Path(path).resolve())})


def load_encoder_file(path: str | Path) -> Encoder:
    """The encoder stored in ``path``, ready to encode images."""
    return Encoder(encoder_spec_from_file(path)).for_inference()

