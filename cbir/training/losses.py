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

from cbir.core.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")
MINERS: Registry[nn.Module | None] = Registry("miner")
DEFAULT_TRIPLET_MARGIN = 0.1


@LOSSES.register("contrastive")
def contrastive_loss(margin: float = 0.7, pos_margin: float = 0.0) -> nn.Module:
    """Pairs: positives pulled within ``pos_margin``, negatives pushed beyond ``margin``."""
    _check_margin(margin)
    if not 0 <= pos_margin < margin:
        raise ValueError("the positive margin must be at least 0 and below the negative margin")
    return losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=margin)


@LOSSES.register("triplet")
def triplet_loss(margin: float = DEFAULT_TRIPLET_MARGIN) -> nn.Module:
    """Triplets: the positive closer to the anchor than the negative by ``margin``."""
    _check_margin(margin)
    return losses.TripletMarginLoss(margin=margin)


def _check_margin(margin: float) -> None:
    if margin <= 0:
        raise ValueError("the margin must be positive")


@MINERS.register("batch-hard")
def batch_hard_miner() -> nn.Module:
    return miners.BatchHardMiner()


@MINERS.register("semi-hard")
def semi_hard_miner(margin: float = DEFAULT_TRIPLET_MARGIN) -> nn.Module:
    return miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")


@MINERS.register("pool")
def pool_miner() -> None:
    """Mines outside the batch (``cbir.training.mining.PoolHardNegatives``): nothing to do in it."""
    return None


@MINERS.register("none")
def no_miner() -> None:
    return None


def make_loss(name: str, margin: float | None = None, pos_margin: float = 0.0) -> nn.Module:
    """The loss ``name``; ``margin`` (default: the loss's own) is the triplet margin or the contrastive negative margin."""
    return LOSSES.build(name, margin=margin, pos_margin=pos_margin)


def make_batch_miner(name: str, loss_name: str, margin: float | None = None) -> nn.Module | None:
    """The in-batch miner ``name`` (None for ``none`` and ``pool``, which work outside the batch).

    The semi-hard miner takes the triplet margin; a contrastive margin is no triplet margin, so
    with the contrastive loss it uses the default one.
    """
    return MINERS.build(name, margin=None if loss_name == "contrastive" else margin)
