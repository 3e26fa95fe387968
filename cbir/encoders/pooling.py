"""Aggregation of CNN feature maps (B x C x H x W) into descriptors (B x C).

Each method is a pure function plus a thin ``nn.Module`` around it:

* SPoC  - sum/average pooling (Babenko & Lempitsky 2015)
* MAC   - max pooling (Tolias et al. 2016)
* GeM   - generalised mean, p fixed or learnable (Radenovic et al. 2018)
* R-MAC - regional max pooling over a multi-scale grid of square regions
          (Tolias et al. 2016)
* CroW  - cross-dimensional spatial and channel weighting
          (Kalantidis et al. 2016)

SPoC and MAC also take an ``output_size`` to pool over a grid of cells
instead of the whole map. The modules are registered in ``POOLINGS`` by
name; ``make_pooling`` builds one from an encoder's settings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cbir.core.registry import Registry

POOLINGS: Registry[nn.Module] = Registry("pooling")


def spoc(x: torch.Tensor, output_size: int | tuple[int, int] = 1) -> torch.Tensor:
    """Average pooling; with ``output_size`` 1 the result is (B, C)."""
    pooled = F.adaptive_avg_pool2d(x, output_size)
    return pooled.flatten(1) if output_size == 1 else pooled


def mac(x: torch.Tensor, output_size: int | tuple[int, int] = 1) -> torch.Tensor:
    """Max pooling; with ``output_size`` 1 the result is (B, C)."""
    pooled = F.adaptive_max_pool2d(x, output_size)
    return pooled.flatten(1) if output_size == 1 else pooled


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean: (mean x^p)^(1/p); p=1 is SPoC, p->inf is MAC."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


def rmac_regions(height: int, width: int, levels: int = 3, overlap: float = 0.4) -> list[tuple[int, int, int]]:
    """Square regions ``(top, left, side)`` of R-MAC on a ``height x width`` map.

    Level ``l`` uses squares of side ``2 * min(H, W) / (l + 1)`` laid out
    uniformly with about ``overlap`` between neighbours; the long side gets
    as many extra regions as keeps that overlap closest to the target.
    """
    short, long_ = min(height, width), max(height, width)
    extra = 0
    if long_ > short:
        candidates = range(1, 7)
        best_cost = math.inf
        for steps in candidates:
            stride = (long_ - short) / steps
            cost = abs((short * short - short * stride) / (short * short) - overlap)
            if cost < best_cost:
                best_cost, extra = cost, steps
    regions = []
    for level in range(1, levels + 1):
        side = max(1, math.floor(2 * short / (level + 1)))
        n_short = level
        n_long = level + extra
        n_rows, n_cols = (n_short, n_long) if height <= width else (n_long, n_short)
        tops = _uniform_starts(height, side, n_rows)
        lefts = _uniform_starts(width, side, n_cols)
        regions.extend((top, left, side) for top in tops for left in lefts)
    return regions


def _uniform_starts(extent: int, side: int, count: int) -> list[int]:
    """``count`` start offsets of windows of ``side`` spread evenly over ``extent``."""
    if count == 1:
        return [(extent - side) // 2]
    stride = (extent - side) / (count - 1)
    return sorted({int(math.floor(i * stride)) for i in range(count)})


def rmac(x: torch.Tensor, levels: int = 3, eps: float = 1e-6) -> torch.Tensor:
    """Sum of the L2-normalised MACs of the R-MAC regions."""
    height, width = x.shape[-2:]
    total = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device)
    for top, left, side in rmac_regions(height, width, levels):
        region = x[..., top : top + side, left : left + side].amax(dim=(-2, -1))
        total = total + region / (region.norm(dim=1, keepdim=True) + eps)
    return total


def crow(x: torch.Tensor, a: float = 2.0, b: float = 2.0, eps: float = 1e-6) -> torch.Tensor:
    """CroW: spatial weights from the channel-summed map, channel weights from sparsity.

    Spatial weight: S = sum_c x, normalised as (S / ||S||_a)^(1/b).
    Channel weight: log(sum_k Q_k / Q_c) where Q_c is the fraction of
    non-zero activations of channel c (0 for an all-zero channel).
    """
    x = x.clamp(min=0)
    summed = x.sum(dim=1)
    norm = summed.pow(a).sum(dim=(-2, -1), keepdim=True).pow(1.0 / a)
    spatial = (summed / (norm + eps)).pow(1.0 / b)
    weighted = (x * spatial.unsqueeze(1)).sum(dim=(-2, -1))
    nonzero = (x > 0).float().mean(dim=(-2, -1))
    total = nonzero.sum(dim=1, keepdim=True)
    channel = torch.where(nonzero > 0, torch.log(total / nonzero.clamp(min=eps)), torch.zeros_like(nonzero))
    return weighted * channel


@POOLINGS.register("spoc")
class SPoC(nn.Module):
    """Average pooling over space."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spoc(x)


@POOLINGS.register("mac")
class MAC(nn.Module):
    """Max pooling over space."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mac(x)


@POOLINGS.register("gem")
class GeM(nn.Module):
    """Generalised-mean pooling; ``learnable=True`` makes p a parameter."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = False):
        super().__init__()
        p_tensor = torch.tensor(float(p))
        self.p = nn.Parameter(p_tensor) if learnable else p_tensor
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.3f}, eps={self.eps}"


@POOLINGS.register("rmac")
class RMAC(nn.Module):
    """Regional max pooling over ``levels`` scales."""

    def __init__(self, levels: int = 3):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rmac(x, self.levels)


@POOLINGS.register("crow")
class CroW(nn.Module):
    """Cross-dimensional weighted sum pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return crow(x)


def make_pooling(name: str, gem_p: float = 3.0, learnable_p: bool = False, rmac_levels: int = 3) -> nn.Module:
    """The pooling registered as ``name``, given the settings it takes (GeM's ``p``, R-MAC's ``levels``)."""
    return POOLINGS.build(name, p=gem_p, learnable=learnable_p, levels=rmac_levels)
