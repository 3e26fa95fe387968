"""``cbir train``: fine-tune an encoder with a contrastive (Siamese) or triplet loss."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cbir.commands.common import print_json, registry_option, results, user_errors


def train(
    data: Path = typer.Argument(..., help="Class subfolders; a root with --labels CSV; a MedMNIST .npz; or a CSV of pairs (a,b,same) or triplets."),
    out: Path = typer.Option(..., "--out", "-o", help="Encoder file to write (the best epoch); a checkpoint and a curves PNG go beside it."),
    labels: Optional[Path] = typer.Option(None, help="CSV of filename,class rows for the images under DATA."),
    split: str = typer.Option("train", help="MedMNIST split to train on (its 'val' split validates)."),
    loss: str = registry_option("contrastive", "cbir.training.losses:LOSSES", "Loss."),
    margin: Optional[float] = typer.Option(None, help="Triplet margin (default 0.1) or contrastive negative margin (default 0.7)."),
    pos_margin: float = typer.Option(0.0, help="Contrastive positive margin."),
    miner: str = registry_option("auto", "cbir.training.losses:MINERS", "Miner (auto: batch-hard with labels).", extra=("auto",)),
    epochs: int = typer.Option(10, help="Most epochs to train."),
    epoch_batches: Optional[int] = typer.Option(None, help="Batches per epoch at least: a small data set is drawn from again within an epoch (0: one pass; default: 50 when whole classes validate, else 0)."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    m_per_class: int = typer.Option(4, help="Images of each class drawn together into a batch."),
    lr: Optional[float] = typer.Option(None, help="Learning rate of the backbone stages (AdamW; default: 3e-4 when whole classes validate, else 1e-4)."),
    head_lr: Optional[float] = typer.Option(None, help="Learning rate of the whitening layer (default: 3e-4 when whole classes validate, else 1e-4)."),
    train_layers: str = typer.Option("auto", help="Backbone stages to train, counted from the top: a number, 'all', or auto (2 on CPU, all on GPU)."),
    whitening: bool = typer.Option(False, "--whitening/--no-whitening", help="Add a trained whitening layer, started from learned PCA-whitening."),
    dim: Optional[int] = typer.Option(None, help="Output dimension of the whitening layer."),
    views: int = typer.Option(3, help="Views cached per training image when the bottom is frozen (1 plain + augmented)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random crops, flips and colour changes."),
    val: str = registry_option("auto", "cbir.training.validation:MODES", "Validation (auto: held-out classes when 2 can be held out and 3 left to train on, else held-out images)."),
    val_fraction: float = typer.Option(0.2, help="Share of classes, images or tuples held out."),
    monitor: Optional[str] = typer.Option(None, help="Metric for the best epoch and early stopping: P@1, MAP@R (default), mAP."),
    patience: int = typer.Option(4, help="Stop after this many epochs without improvement."),
    negatives: int = typer.Option(5, help="Hard negatives per query (pool miner)."),
    pool_size: int = typer.Option(2000, help="Images re-sampled per epoch to mine negatives from (pool miner)."),
    backbone: str = typer.Option("efficientnet_lite0", help="Backbone to start from."),
    size: int = typer.Option(224, help="Short side of the resized image, in pixels."),
    pooling: Optional[str] = registry_option(None, "cbir.encoders.pooling:POOLINGS", "Pooling trained through (default: rmac, the default encoder's, when whole classes validate, else gem with a learnable p)."),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights file (state dict)."),
    device: str = typer.Option("auto", help="auto (GPU when present), cpu, cuda."),
    workers: Optional[int] = typer.Option(None, help="Image decoding worker processes."),
    seed: int = typer.Option(0, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Go on from the checkpoint beside --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's history as JSON."),
) -> None:
    """Fine-tune an encoder (contrastive or triplet loss) and write it as an encoder file for --encoder."""
    from cbir.training.data import load_training_data
    from cbir.training.trainer import TrainConfig
    from cbir.training.trainer import train as run_training

    out = out.expanduser()
    with user_errors():
        config = TrainConfig(
            loss=loss, margin=margin, pos_margin=pos_margin, miner=miner, epochs=epochs, batch_size=batch_size,
            m_per_class=m_per_class, epoch_batches=epoch_batches, lr=lr, head_lr=head_lr, train_layers=train_layers, whitening=whitening,
            whitening_dim=dim, views=views, augment=augment, val=val, val_fraction=val_fraction, monitor=monitor,
            patience=patience, negatives=negatives, pool_size=pool_size, backbone=backbone, image_size=size, pooling=pooling,
            weights=str(weights.expanduser()) if weights else None, device=device, workers=workers, seed=seed,
        )
        training_data = load_training_data(data, labels, split)
        result = run_training(config, training_data, out, resume=resume, quiet=as_json)
    if as_json:
        print_json({"out": str(out), "best_epoch": result.best_epoch, "seconds": result.seconds, "history": result.history})
        return
    table = Table(title=f"{out} ({result.seconds / 60:.1f} min)")
    table.add_column("")
    names = [name for name in result.baseline if name not in ("epoch", "loss", "seconds", "gem_p")]
    for name in names:
        table.add_column(name, justify="right")
    table.add_row("starting encoder", *(f"{result.baseline[name]:.2f}" for name in names))
    table.add_row(f"best (epoch {result.best_epoch})", *(f"{result.best[name]:.2f}" for name in names))
    results.print(table)
    results.print(f"curves: {result.outputs.curves}   checkpoint: {result.outputs.checkpoint}")
    results.print(f"use it: cbir index DIR --collection C --encoder {out}")
