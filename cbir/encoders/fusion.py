"""Inference-only rewrites of a backbone that give the same feature maps faster on CPU.

* Batch norms in eval mode are affine maps: each one that directly follows a
  convolution is folded into that convolution's weights and bias (its
  activation, if it carries one as timm's ``BatchNormAct2d`` does, stays).
* TensorFlow-style "SAME" strided convolutions (timm's ``Conv2dSame``, used by
  the EfficientNet-Lite ports) pad every input with a copy before convolving.
  The same result comes without the copy from a symmetrically padded
  convolution: where the total padding is odd, the kernel gets one leading
  zero tap so the extra pad falls on the far side.

A rewritten backbone cannot be trained (its batch norms are gone); the
rewrite is checked against the original on a probe image and refused when
they differ.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.norm_act import BatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

PROBE_SIZE = (1, 3, 97, 130)  # odd and even sides, so both padding cases of SAME convolutions are checked
TOLERANCE = 1e-3  # largest accepted difference, relative to the largest feature value


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every eval-mode ``BatchNorm2d`` that is the next sibling of a ``Conv2d`` into it; returns how many."""
    folded = 0
    for parent in list(module.modules()):
        names = list(parent._modules)
        for conv_name, norm_name in zip(names, names[1:]):
            conv, norm = parent._modules[conv_name], parent._modules[norm_name]
            if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
                continue
            if norm.num_features != conv.out_channels or norm.running_mean is None or norm.training:
                continue
            weight, bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
            )
            conv.weight, conv.bias = weight, bias
            parent._modules[norm_name] = _after_norm(norm)
            folded += 1
    return folded


def _after_norm(norm: nn.BatchNorm2d) -> nn.Module:
    """What remains of a batch norm once folded: nothing, or the activation it carried."""
    if isinstance(norm, BatchNormAct2d):
        return nn.Sequential(norm.drop, norm.act)
    return nn.Identity()


class SymmetricSameConv2d(nn.Module):
    """A TensorFlow "SAME" convolution computed without padding the input first (see the module docstring)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)
        self.kernel_size, self.stride, self.groups = conv.kernel_size, conv.stride, conv.groups
        self._variants: dict[tuple[int, ...], tuple[torch.Tensor, tuple[int, int]]] = {}

    def _variant(self, height: int, width: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The kernel and symmetric padding for inputs of this size (cached by total padding)."""
        totals = tuple(
            max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            for size, kernel, stride in zip((height, width), self.kernel_size, self.stride)
        )
        if totals not in self._variants:
            leading = (totals[1] % 2, 0, totals[0] % 2, 0)
            weight = F.pad(self.weight, leading) if any(leading) else self.weight
            self._variants[totals] = (weight, ((totals[0] + 1) // 2, (totals[1] + 1) // 2))
        return self._variants[totals]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, padding = self._variant(*x.shape[-2:])
        return F.conv2d(x, weight, self.bias, self.stride, padding, 1, self.groups)


def replace_same_convolutions(module: nn.Module) -> int:
    """Swap each undilated ``Conv2dSame`` for a ``SymmetricSameConv2d``; returns how many."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, Conv2dSame) and child.dilation == (1, 1):
                parent._modules[name] = SymmetricSameConv2d(child)
                replaced += 1
    return replaced


@torch.inference_mode()
def fuse_for_inference(backbone: nn.Module) -> nn.Module:
    """The backbone rewritten for inference, or the original (with a warning) if the rewrite changes its output."""
    backbone.eval()
    fused = copy.deepcopy(backbone)
    changed = fold_batch_norms(fused) + replace_same_convolutions(fused)
    if not changed:
        return backbone
    probe = torch.randn(PROBE_SIZE, generator=torch.Generator().manual_seed(0))
    expected, got = backbone(probe), fused(probe)
    difference = (expected - got).abs().max().item()
    if difference > TOLERANCE * max(expected.abs().max().item(), 1.0):
        warnings.warn(
            f"{type(backbone).__name__}: the inference rewrite changed the features (max difference {difference:.3g}); "
            "running it unfolded",
            stacklevel=2,
        )
        return backbone
    return fused
