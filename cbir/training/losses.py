"""Verification losses and batch miners from pytorch-metric-learning, chosen by name.

* ``contrastive`` (Siamese): matching pairs are pulled within ``pos_margin``,
  non-matching ones pushed beyond ``neg_margin`` (Euclidean distance of
  L2-normalised descriptors, 0 to 2).
* ``triplet``: the positive must be closer to the anchor than the negative
  by ``margin``.

Miners pick the informative examples in each batch: ``batch-hard`` (hardest
positive and hardest negative per anchor), ``semi-hard`` (negatives farther
than the positive but within the margin), or ``none`` (every pair/triplet).
The pool miner of Radenovic et al. lives in ``cbir.training.mining``.
"""

from __future__ import annotations

from pytorch_metric_learning import losses, miners
from torch import nn

LOSSES = ("contrastive", "triplet")
MINERS = ("batch-hard", "semi-hard", "pool", "none")
DEFAULT_MARGINS = {"contrastive": 0.7, "triplet": 0.1}


def make_loss(name: str, margin: float | None = None, pos_margin: float = 0.0) -> nn.Module:
    """The loss ``name``; ``margin`` is the triplet margin or the contrastive negative margin."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    margin = DEFAULT_MARGINS[name] if margin is None else margin
    if margin <= 0:
        raise ValueError("the margin must be positive")
    if name == "contrastive":
        if not 0 <= pos_margin < margin:
            raise ValueError("the positive margin must be at least 0 and below the negative margin")
        return losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=margin)
    return losses.TripletMarginLoss(margin=margin)


def make_batch_miner(name: str, loss_name: str, margin: float | None = None) -> nn.Module | None:
    """The in-batch miner ``name`` (None for ``none`` and ``pool``, which work outside the batch)."""
    if name not in MINERS:
        raise ValueError(f"unknown miner {name!r}: choose one of {', '.join(MINERS)}")
    if name == "batch-hard":
        return miners.BatchHardMiner()
    if name == "semi-hard":
        margin = DEFAULT_MARGINS["triplet"] if loss_name == "contrastive" or margin is None else margin
        return miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")
    return None
