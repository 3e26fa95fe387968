"""The network being fine-tuned: an ``Encoder`` split into a frozen bottom and a trainable top.

Descriptor = L2(whitening(L2(pool(top(bottom(image)))))), pooled as the
encoder pools (R-MAC by default; GeM with a learnable p) and the optional
whitening a linear layer initialised from learned PCA-whitening. The top stages, the pooling and the projection are the
encoder's own modules, so training changes the encoder in place and
``export`` hands back a plain ``Encoder`` that computes the same thing.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from cbir.encoders.backbones import FeatureMapBackbone
from cbir.encoders.encoder import Encoder
from cbir.encoders.pooling import GeM, make_pooling
from cbir.encoders.whitening import PCAWhitening


def backbone_stages(backbone: FeatureMapBackbone) -> list[nn.Module]:
    """The backbone as an ordered list of stages whose composition is its forward pass.

    Knows timm EfficientNet-style bodies (stem, blocks, head), timm ResNets
    (stem, layer1-4) and ``nn.Sequential`` trunks (torchvision). The split is
    checked on a probe image; a backbone it cannot split raises ValueError.
    """
    body = backbone.body
    if isinstance(body, nn.Sequential):
        stages = list(body.children())
    elif all(hasattr(body, name) for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        stages = [nn.Sequential(body.conv_stem, body.bn1), *body.blocks, nn.Sequential(body.conv_head, body.bn2)]
    elif all(hasattr(body, name) for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer4")):
        stages = [nn.Sequential(body.conv1, body.bn1, body.act1, body.maxpool), body.layer1, body.layer2, body.layer3, body.layer4]
    else:
        raise ValueError(
            f"cannot split a {body.__class__.__name__} backbone into stages; train it whole (--train-layers all)"
        )
    probe = torch.rand(1, 3, 96, 96)
    with torch.inference_mode():
        expected = backbone(probe)
        staged = probe
        for stage in stages:
            staged = stage(staged)
    if staged.shape != expected.shape or not torch.allclose(staged, expected, atol=1e-4, rtol=1e-4):
        raise ValueError(
            f"the stages found in the {body.__class__.__name__} backbone do not reproduce its output; "
            "train it whole (--train-layers all)"
        )
    return stages


class TrainableEncoder(nn.Module):
    """An encoder with its last ``train_layers`` backbone stages (``None``: all) trainable.

    ``bottom`` runs the frozen stages (its output can be cached); ``top``
    maps that output to descriptors with gradients, through the encoder's
    own pooling, so training starts from exactly the encoder it was given.
    Batch-norm statistics stay as pretrained: the module is kept in eval
    mode throughout.
    """

    def __init__(self, encoder: Encoder, train_layers: int | None):
        super().__init__()
        if len(encoder.spec.scales) > 1:
            raise ValueError("a multi-scale encoder cannot be fine-tuned; train a single-scale one (scales 1.0)")
        self.encoder = encoder
        if encoder.spec.pooling == "gem":
            self.use_pooling("gem", encoder.spec.gem_p)
        if train_layers is None:
            self.stage_count = None
            self.bottom = nn.Identity()
            self.top = encoder.backbone
        else:
            stages = backbone_stages(encoder.backbone)
            if not 0 <= train_layers <= len(stages):
                raise ValueError(f"--train-layers must be between 0 and {len(stages)} (or 'all') for {encoder.spec.backbone}")
            self.stage_count = len(stages)
            cut = len(stages) - train_layers
            self.bottom = nn.Sequential(*stages[:cut])
            self.top = nn.Sequential(*stages[cut:])
        for parameter in self.bottom.parameters():
            parameter.requires_grad_(False)
        if train_layers is not None:
            trainable = {id(p) for p in self.top.parameters()}
            for parameter in encoder.backbone.parameters():
                parameter.requires_grad_(id(parameter) in trainable)
        self.eval()

    def use_pooling(self, name: str, gem_p: float) -> None:
        """Pool through ``name`` from now on (GeM with a learnable p starting at ``gem_p``); the encoder's spec says so."""
        spec = dataclasses.replace(self.encoder.spec, pooling=name, gem_p=gem_p)
        self.encoder.spec = spec
        self.encoder.pooling = make_pooling(name, gem_p, learnable_p=name == "gem", rmac_levels=spec.rmac_levels)

    def set_whitening(self, whitening: PCAWhitening) -> None:
        """Add a linear layer that computes ``whitening`` (before the last L2) and will be trained."""
        projection = torch.from_numpy(whitening.projection)
        layer = nn.Linear(projection.shape[1], projection.shape[0])
        with torch.no_grad():
            layer.weight.copy_(projection)
            layer.bias.copy_(-(projection @ torch.from_numpy(whitening.mean)))
        self.encoder.projection = layer

    def train(self, mode: bool = True) -> "TrainableEncoder":
        """Always eval mode: batch-norm keeps its pretrained statistics with small batches."""
        return super().train(False)

    @torch.no_grad()
    def bottom_features(self, images: torch.Tensor) -> torch.Tensor:
        """Output of the frozen stages for a batch of preprocessed images."""
        return self.bottom(images.contiguous(memory_format=torch.channels_last))

    def top_descriptors(self, features: torch.Tensor) -> torch.Tensor:
        """Descriptors (B x D) from frozen-stage outputs, with gradients."""
        return self.encoder.describe(self.top(features.contiguous(memory_format=torch.channels_last)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.top_descriptors(self.bottom_features(images))

    def parameter_groups(self, lr: float, head_lr: float, p_lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: trainable backbone stages, the projection, and GeM's p (no decay) when pooling is GeM."""
        backbone = [p for p in self.top.parameters() if p.requires_grad]
        groups = [{"params": [self.encoder.pooling.p], "lr": p_lr, "weight_decay": 0.0}] if self.gem_p is not None else []
        if backbone:
            groups.append({"params": backbone, "lr": lr, "weight_decay": weight_decay})
        if self.encoder.projection is not None:
            groups.append({"params": list(self.encoder.projection.parameters()), "lr": head_lr, "weight_decay": weight_decay})
        return groups

    @property
    def gem_p(self) -> float | None:
        """GeM's learned p (None for other poolings)."""
        return float(self.encoder.pooling.p.detach()) if isinstance(self.encoder.pooling, GeM) else None

    def export(self) -> Encoder:
        """A plain copy of the encoder as trained now (GeM's p fixed), on the CPU, ready to save."""
        exported = copy.deepcopy(self.encoder).cpu()
        if self.gem_p is not None:
            exported.spec = dataclasses.replace(exported.spec, gem_p=self.gem_p)
            exported.pooling = GeM(exported.spec.gem_p)
        for parameter in exported.parameters():
            parameter.requires_grad_(False)
        return exported.eval()
