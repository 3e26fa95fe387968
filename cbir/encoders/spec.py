"""``EncoderSpec``: everything that decides what vector an image gets, readable without torch.

A collection records its encoder as a spec, so listing or describing a
collection needs no model; ``cbir.encoders.encoder.Encoder`` builds the network
a spec describes (an unknown pooling name fails there, with the known names).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from cbir.encoders.errors import WeightsUnavailableError, missing_weights_message

MULTI_SCALES = (1.0, 1 / math.sqrt(2), 0.5)
PRECISIONS = ("fp32", "bf16", "int8")  # see cbir.encoders.precision


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that decides what vector an image gets.

    ``image_size`` is the length of the short side after resizing (the aspect
    ratio is kept, nothing is cropped); ``max_aspect`` caps the long side at
    that multiple of it. ``scales`` > 1 entry averages descriptors over
    rescaled copies. ``checkpoint`` is an encoder file written by
    ``save_encoder_file`` (fine-tuned weights and projection); its SHA-256
    is part of the identity, its path is not. ``precision`` is what the network
    computes in once prepared for inference: ``fp32`` (as trained), ``bf16`` or
    ``int8`` (``cbir.encoders.precision``).
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
    checkpoint: str | None = None
    checkpoint_sha256: str | None = field(default=None)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ValueError("image_size must be at least 32 pixels")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive numbers")
        if self.weights is not None and self.weights_sha256 is None:
            if not Path(self.weights).is_file():
                raise WeightsUnavailableError(missing_weights_message(self.weights))
            object.__setattr__(self, "weights_sha256", file_sha256(self.weights))
        if self.checkpoint is not None and self.checkpoint_sha256 is None:
            object.__setattr__(self, "checkpoint_sha256", file_sha256(self.checkpoint))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["scales"] = list(self.scales)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def identity(self) -> dict:
        """The fields that must agree for two encoders to give the same vectors (``fp32`` leaves the
        identity as it was before precisions were recorded: older collections and caches still match)."""
        data = self.to_dict()
        data.pop("weights")
        data.pop("checkpoint")
        if data["precision"] == "fp32":
            data.pop("precision")
        return data


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Images per forward pass. On CPUs small batches keep the activations in cache: on 2 EPYC cores the
# forward pass alone of EfficientNet-Lite0 rewritten for inference, at 224x336, ran 131.8 images/s at 8
# per batch against 79.6 at 32 (161.5 at 4 in that run): bench/results/speed.md, "Batch size".
DEFAULT_BATCH_SIZE = 8
