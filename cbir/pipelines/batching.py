"""Batching by shape: images keep their aspect ratio, so a batch runs through a network as groups of
same-shaped tensors, and the results are put back in batch order."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

Group = tuple[np.ndarray, torch.Tensor]  # positions in the batch, stacked tensors


def group_by_shape(tensors: Sequence[torch.Tensor]) -> list[Group]:
    """Stack same-shaped tensors together; each group keeps the positions of its members."""
    positions: dict[tuple[int, ...], list[int]] = {}
    for position, tensor in enumerate(tensors):
        positions.setdefault(tuple(tensor.shape), []).append(position)
    return [(np.array(rows), torch.stack([tensors[row] for row in rows])) for rows in positions.values()]


def assemble(groups: list[Group], describe: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``describe`` run on each group, its rows put back in batch order (N x D)."""
    size = sum(len(positions) for positions, _ in groups)
    parts = [(positions, describe(tensor)) for positions, tensor in groups]
    out = parts[0][1].new_empty((size, parts[0][1].shape[1]))
    for positions, descriptors in parts:
        out[torch.from_numpy(positions).to(out.device)] = descriptors
    return out
