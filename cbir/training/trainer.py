"""The fine-tuning loop: data in, the best encoder file out.

One run: read the images (unreadable ones are reported and left out),
split off validation, cache the frozen stages' output when only the top of
the network trains, optionally initialise a whitening layer from learned
PCA-whitening, then train with AdamW (linear warm-up, cosine decay).
After every epoch it validates, writes a checkpoint (``--resume`` goes on
from it), redraws the loss/metric curves, and saves the encoder file when
the monitored metric improves; it stops early when that metric has not
improved for ``patience`` epochs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from rich.table import Table

from cbir.encoders.encoder import Encoder, EncoderSpec, encoder_spec_from_file, save_encoder_file
from cbir.encoders.whitening import PCAWhitening
from cbir.io.atomic import atomic_write
from cbir.pipelines.batching import assemble
from cbir.progress import console, progress_bar
from cbir.training.augment import RetrievalAugmentation
from cbir.training.curves import plot_curves
from cbir.training.data import TrainingData
from cbir.training.inputs import CachedFeatures, LiveImages, TrainingInputs
from cbir.training.losses import make_batch_miner, make_loss
from cbir.training.mining import PoolHardNegatives, batch_images, index_tuple
from cbir.training.network import TrainableEncoder
from cbir.training.recipes import NEW_CLASSES, recipe_for
from cbir.training.validation import (
    ValidationSplit,
    pair_metrics,
    retrieval_metrics,
    split_labelled,
    split_tuples,
    triplet_metrics,
)

CPU_TRAIN_LAYERS = 2
DEFAULT_MONITOR = {"labels": "MAP@R", "pairs": "AUC", "triplets": "triplet accuracy"}


@dataclass
class TrainConfig:
    """Everything that shapes a training run (see ``cbir train --help``)."""

    loss: str = "contrastive"
    margin: float | None = None
    pos_margin: float = 0.0
    miner: str = "auto"
    epochs: int = 10
    epoch_batches: int | None = None  # None (here and below): from the recipe for the run's validation
    batch_size: int = 32
    m_per_class: int = 4
    lr: float | None = None
    head_lr: float | None = None
    p_lr: float = 1e-2
    weight_decay: float = 1e-4
    warmup: float = 0.05
    train_layers: int | str = "auto"
    whitening: bool = False
    whitening_dim: int | None = None
    views: int = 3
    augment: bool = True
    val: str = "auto"
    val_fraction: float = 0.2
    monitor: str | None = None
    patience: int = 4
    negatives: int = 5
    pool_size: int = 2000
    backbone: str = "efficientnet_lite0"
    image_size: int = 224
    pooling: str | None = None
    gem_p: float = 3.0
    weights: str | None = None
    device: str = "auto"
    workers: int | None = None
    seed: int = 0

    def resolved_layers(self, device: torch.device) -> int | None:
        """Number of trainable backbone stages (None: all)."""
        if self.train_layers == "auto":
            return None if device.type == "cuda" else CPU_TRAIN_LAYERS
        if self.train_layers == "all":
            return None
        try:
            return int(self.train_layers)
        except (TypeError, ValueError):
            raise ValueError(f"--train-layers must be 'auto', 'all' or a number of stages, not {self.train_layers!r}") from None


@dataclass
class TrainOutputs:
    """The files a run writes, named after the encoder file."""

    model: Path
    checkpoint: Path
    curves: Path

    @classmethod
    def beside(cls, model: str | Path) -> "TrainOutputs":
        model = Path(model)
        return cls(model, model.with_name(model.stem + "-checkpoint.pt"), model.with_name(model.stem + "-curves.png"))


@dataclass
class TrainResult:
    """How a run went."""

    outputs: TrainOutputs
    monitor: str
    history: list[dict]
    best_epoch: int
    seconds: float
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def baseline(self) -> dict:
        return self.history[0]

    @property
    def best(self) -> dict:
        return next(entry for entry in self.history if entry["epoch"] == self.best_epoch)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no GPU is available; use --device cpu")
    return torch.device(name)


class Trainer:
    """One fine-tuning run; ``run`` does it all."""

    def __init__(self, config: TrainConfig, data: TrainingData, out: str | Path, resume: bool = False, quiet: bool = False,
                 feature_store: dict | None = None):
        self.config = config
        self.feature_store = feature_store
        self.data = data
        self.outputs = TrainOutputs.beside(out)
        self.resume = resume
        self.quiet = quiet
        self.device = resolve_device(config.device)
        self.best_encoder: Encoder | None = None
        self.layers = config.resolved_layers(self.device)
        self.miner_name = config.miner if config.miner != "auto" else ("batch-hard" if data.kind == "labels" else "none")
        if data.kind != "labels" and self.miner_name != "none":
            raise ValueError(f"mining ({self.miner_name}) needs class labels; a {data.kind} file trains on its own tuples (--miner none)")
        if data.kind == "pairs" and config.loss != "contrastive":
            raise ValueError("a pairs file trains the contrastive loss (--loss contrastive); give triplets for the triplet loss")
        self.monitor = config.monitor or DEFAULT_MONITOR[data.kind]
        self.loss_fn = make_loss(config.loss, config.margin, config.pos_margin)
        self.batch_miner = make_batch_miner(self.miner_name, config.loss, config.margin)
        self.pool_miner = PoolHardNegatives(config.negatives, config.pool_size) if self.miner_name == "pool" else None
        if config.epochs < 1 or config.batch_size < 2:
            raise ValueError("train for at least one epoch with batches of at least two images")

    def say(self, message: str) -> None:
        if not self.quiet:
            console.print(message)

    # setting up ----------------------------------------------------------------
    def _build(self) -> None:
        config = self.config
        torch.manual_seed(config.seed)
        spec = EncoderSpec(backbone=config.backbone, pooling=config.pooling or NEW_CLASSES.pooling, gem_p=config.gem_p,
                           image_size=config.image_size, weights=config.weights)
        self.network = TrainableEncoder(Encoder(spec), self.layers)
        self.network.to(self.device)
        augmentation = RetrievalAugmentation() if config.augment else None
        if self.layers is None:
            self.inputs: TrainingInputs = LiveImages(self.network.encoder, self.data.sources, self.device, augmentation,
                                                     config.workers, config.seed)
        else:
            self.inputs = self._cached_features(augmentation)
        everything = np.arange(len(self.data))
        with progress_bar("reading images" if self.layers is None else "caching frozen stages", enabled=not self.quiet) as update:
            if isinstance(self.inputs, CachedFeatures):
                broken = self.inputs.build(everything, update)
            else:
                broken = self.inputs.check(everything, progress=update)
        self.skipped = {self.data.names[i]: reason for i, reason in broken.items()}
        self._report_skipped()
        usable = np.setdiff1d(everything, np.fromiter(broken, dtype=np.int64, count=len(broken)))
        self._split(usable)
        self._follow_recipe()
        if isinstance(self.inputs, CachedFeatures):
            augmented = config.views - 1 if config.augment else 0
            with progress_bar(f"caching {augmented} augmented views", enabled=not self.quiet and augmented > 0) as update:
                self.inputs.add_views(self.train_images, augmented, update)
        if config.whitening:
            descriptors = self.inputs.embed(self.network, self.train_images).numpy()
            self.network.set_whitening(PCAWhitening.learn(descriptors, config.whitening_dim))
            self.network.to(self.device)

    def _follow_recipe(self) -> None:
        """Fill the settings the config leaves open from the recipe for this run's validation (``cbir.training.recipes``)."""
        self.recipe = recipe_for(self.split.mode)
        recipe, config = self.recipe, self.config
        self.config = dataclasses.replace(
            config,
            pooling=config.pooling or recipe.pooling,
            lr=recipe.lr if config.lr is None else config.lr,
            head_lr=recipe.head_lr if config.head_lr is None else config.head_lr,
            epoch_batches=recipe.epoch_batches if config.epoch_batches is None else config.epoch_batches,
        )
        if self.config.pooling != self.network.encoder.spec.pooling:
            self.network.use_pooling(self.config.pooling, config.gem_p)
        chosen = {name: getattr(self.config, name) for name in ("pooling", "lr", "epoch_batches") if getattr(config, name) is None}
        if chosen:
            self.say(f"recipe for {recipe.name}: " + ", ".join(f"{name} {value}" for name, value in chosen.items()))

    def _cached_features(self, augmentation: RetrievalAugmentation | None) -> CachedFeatures:
        """A frozen-stage cache: new, or the one in ``feature_store`` of an earlier run with the same frozen stages and data."""
        config = self.config
        key = (config.backbone, config.weights, config.image_size, self.layers, config.augment, config.seed, str(self.device),
               self.data.origin, len(self.data))
        store = self.feature_store if self.feature_store is not None else {}
        if key not in store:
            store[key] = CachedFeatures(self.network, self.data.sources, self.device, augmentation, config.workers, seed=config.seed)
        return store[key]

    def _report_skipped(self) -> None:
        if not self.skipped:
            return
        table = Table(title=f"{len(self.skipped)} images skipped", title_style="bold yellow")
        table.add_column("image", overflow="fold")
        table.add_column("reason", overflow="fold")
        for name, reason in list(self.skipped.items())[:20]:
            table.add_row(name, reason)
        if not self.quiet:
            console.print(table)

    def _split(self, usable: np.ndarray) -> None:
        config = self.config
        if self.data.kind == "labels":
            self.split = split_labelled(self.data.labels, usable, config.val, config.val_fraction, config.seed, self.data.validation)
            self.train_images = self.split.train
            if len(np.unique(self.data.labels[self.train_images])) < 2:
                raise ValueError("fewer than two classes are left to train on; add images or change the validation split")
            self.say(f"training on {len(self.train_images)} images of {len(np.unique(self.data.labels[self.train_images]))} classes; "
                     f"validation: {self.split.describe()}")
            if self.split.note and self.data.validation is None:
                self.say(f"[yellow]validation is not class-disjoint: {self.split.note}[/yellow]")
            return
        columns = 2 if self.data.kind == "pairs" else 3
        usable_rows = np.isin(self.data.tuples[:, :columns], usable).all(axis=1)
        tuples = self.data.tuples[usable_rows]
        train_rows, val_rows = split_tuples(len(tuples), config.val_fraction, config.seed, enabled=config.val != "none")
        self.train_tuples, self.val_tuples = tuples[train_rows], tuples[val_rows]
        self.train_images = batch_images(self.train_tuples, self.data.kind)
        self.split = ValidationSplit(self.train_images, usable[:0], usable[:0], "none" if not len(val_rows) else "tuples")
        self.say(f"training on {len(self.train_tuples)} {self.data.kind}, validating on {len(self.val_tuples)}")

    # batches -----------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """(image indices, tuple rows or None) for every batch of one epoch."""
        config = self.config
        rng = np.random.default_rng(config.seed * 1000 + epoch)
        if self.data.kind == "labels" and self.pool_miner is None:
            np.random.seed(config.seed * 1000 + epoch)
            sampler = MPerClassSampler(self.data.labels[self.train_images], config.m_per_class,
                                       length_before_new_iter=self._steps_per_epoch() * config.batch_size)
            order = self.train_images[np.fromiter(iter(sampler), dtype=np.int64)]
            return [(order[start : start + config.batch_size], None) for start in range(0, len(order), config.batch_size)]
        if self.data.kind == "labels":
            rows = self.pool_miner.tuples(self.data.labels, self.train_images, lambda idx: self.inputs.embed(self.network, idx), rng)
            kind = "tuples"
        else:
            rows = self.train_tuples[rng.permutation(len(self.train_tuples))]
            kind = self.data.kind
        per_batch = max(1, config.batch_size // (rows.shape[1] if kind != "pairs" else 2))
        batches = []
        for start in range(0, len(rows), per_batch):
            chunk = rows[start : start + per_batch]
            batches.append((batch_images(chunk, kind), chunk))
        return batches

    def _steps_per_epoch(self) -> int:
        config = self.config
        if self.data.kind == "labels" and self.pool_miner is None:
            return max(config.epoch_batches, math.ceil(len(self.train_images) / config.batch_size))
        if self.data.kind == "labels":
            return math.ceil(len(self.train_images) / max(1, config.batch_size // (2 + config.negatives)))
        width = 2 if self.data.kind == "pairs" else 3
        return math.ceil(len(self.train_tuples) / max(1, config.batch_size // width))

    def _batch_loss(self, descriptors: torch.Tensor, images: np.ndarray, rows: np.ndarray | None) -> torch.Tensor:
        if rows is None:
            labels = torch.as_tensor(self.data.labels[images], device=descriptors.device)
            mined = self.batch_miner(descriptors, labels) if self.batch_miner is not None else None
            return self.loss_fn(descriptors, labels, mined)
        kind = "pairs" if self.data.kind == "pairs" else "tuples"
        indices = tuple(t.to(descriptors.device) for t in index_tuple(rows, kind, self.config.loss))
        return self.loss_fn(descriptors, indices_tuple=indices)

    # validation ----------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Validation metrics of the network as it is now (empty without validation)."""
        if self.split.mode == "none":
            return {}
        embed = lambda idx: self.inputs.embed(self.network, idx)  # noqa: E731
        if self.data.kind == "labels":
            queries = embed(self.split.queries)
            database = queries if self.split.leave_one_out else embed(self.split.database)
            return retrieval_metrics(queries, self.data.labels[self.split.queries], database,
                                     self.data.labels[self.split.database], self.split.leave_one_out)
        images = batch_images(self.val_tuples, self.data.kind)
        vectors = embed(images)
        position = {int(image): row for row, image in enumerate(images)}
        column = lambda c: vectors[[position[int(i)] for i in self.val_tuples[:, c]]]  # noqa: E731
        if self.data.kind == "pairs":
            return pair_metrics(column(0), column(1), self.val_tuples[:, 2])
        return triplet_metrics(column(0), column(1), column(2))

    # the run -----------------------------------------------------------------
    def run(self) -> TrainResult:
        started = time.perf_counter()
        self._build()
        config = self.config
        optimizer = torch.optim.AdamW(self.network.parameter_groups(config.lr, config.head_lr, config.p_lr, config.weight_decay))
        total_steps = config.epochs * self._steps_per_epoch()
        warmup_steps = max(1, int(config.warmup * total_steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: min(1.0, (step + 1) / warmup_steps) * (0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))),
        )
        history: list[dict] = []
        start_epoch = 1
        best_epoch, best_value = 0, -math.inf
        if self.resume:
            start_epoch, history, best_epoch, best_value = self._load_checkpoint(optimizer, schedule)
        else:
            metrics = self.validate()
            history.append({"epoch": 0, "loss": None, "seconds": time.perf_counter() - started, "gem_p": self.network.gem_p, **metrics})
            best_value = metrics.get(self.monitor, -math.inf)
            self._check_monitor(metrics)
            self._save_encoder(history, 0, started)
            self._print_epoch(history[-1], best=True)
        for epoch in range(start_epoch, config.epochs + 1):
            if self.split.mode != "none" and epoch - best_epoch > config.patience:
                self.say(f"stopping early: {self.monitor} has not improved for {config.patience} epochs")
                break
            loss = self._train_epoch(epoch, optimizer, schedule)
            metrics = self.validate()
            entry = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - started, "gem_p": self.network.gem_p, **metrics}
            history.append(entry)
            value = metrics.get(self.monitor, math.inf if self.split.mode == "none" else -math.inf)
            improved = value > best_value or self.split.mode == "none"
            if improved:
                best_epoch, best_value = epoch, value
                self._save_encoder(history, best_epoch, started)
            self._save_checkpoint(epoch, optimizer, schedule, history, best_epoch, best_value)
            plot_curves(history, self.monitor, best_epoch, self.outputs.curves)
            self._print_epoch(entry, improved)
        plot_curves(history, self.monitor, best_epoch, self.outputs.curves)
        seconds = time.perf_counter() - started
        best_encoder = self.best_encoder or Encoder(encoder_spec_from_file(self.outputs.model))
        save_encoder_file(self.outputs.model, best_encoder, self._summary(history, best_epoch, started))
        if best_epoch == 0:
            self.say(f"[yellow]no epoch improved {self.monitor} on the starting encoder; {self.outputs.model} is that encoder[/yellow]")
        return TrainResult(self.outputs, self.monitor, history, best_epoch, seconds, self.skipped)

    def _check_monitor(self, metrics: dict) -> None:
        if metrics and self.monitor not in metrics:
            raise ValueError(f"cannot monitor {self.monitor!r}: validation gives {', '.join(metrics)}")

    def _train_epoch(self, epoch: int, optimizer, schedule) -> float:
        batches = self._epoch_batches(epoch)
        total_images = sum(len(images) for images, _ in batches)
        losses, done = [], 0
        with progress_bar(f"epoch {epoch}/{self.config.epochs}", enabled=not self.quiet) as update:
            for (images, rows), groups in zip(batches, self.inputs.batches([b[0] for b in batches], epoch if self.config.augment else None)):
                descriptors = assemble(groups, lambda tensor: self.inputs.descriptors(self.network, tensor))
                loss = self._batch_loss(descriptors, images, rows)
                optimizer.zero_grad(set_to_none=True)
                if loss.requires_grad:
                    loss.backward()
                    optimizer.step()
                schedule.step()
                losses.append(float(loss.detach()))
                done += len(images)
                update(done, total_images)
        return float(np.mean(losses)) if losses else float("nan")

    def _print_epoch(self, entry: dict, best: bool) -> None:
        metrics = "  ".join(f"{name} {value:.2f}" for name, value in entry.items() if name not in ("epoch", "loss", "seconds", "gem_p"))
        loss = "-" if entry["loss"] is None else f"{entry['loss']:.4f}"
        marker = " [green]best[/green]" if best else ""
        p = "" if entry["gem_p"] is None else f"  p {entry['gem_p']:.2f}"
        self.say(f"epoch {entry['epoch']}: loss {loss}  {metrics}{p}  ({entry['seconds']:.0f} s){marker}")

    # files ---------------------------------------------------------------------
    def _summary(self, history: list[dict], best_epoch: int, started: float) -> dict:
        return {
            "data": self.data.summary(),
            "validation": self.split.describe() if self.data.kind == "labels" else f"{len(self.val_tuples)} held-out {self.data.kind}",
            "skipped_images": len(self.skipped),
            "loss": self.config.loss,
            "recipe": self.recipe.name,
            "miner": self.miner_name,
            "config": dataclasses.asdict(self.config),
            "train_layers": "all" if self.layers is None else self.layers,
            "device": str(self.device),
            "monitor": self.monitor,
            "best_epoch": best_epoch,
            "history": history,
            "seconds": round(time.perf_counter() - started, 1),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def _save_encoder(self, history: list[dict], best_epoch: int, started: float) -> None:
        """Save the network as it is now as the encoder file (the best so far)."""
        self.best_encoder = self.network.export()
        save_encoder_file(self.outputs.model, self.best_encoder, self._summary(history, best_epoch, started))

    def _fingerprint(self) -> dict:
        config = dataclasses.asdict(self.config)
        for key in ("epochs", "patience", "device", "workers"):
            config.pop(key)
        return {"config": config, "data": self.data.summary()}

    def _save_checkpoint(self, epoch, optimizer, schedule, history, best_epoch, best_value) -> None:
        state = {
            "fingerprint": json.dumps(self._fingerprint(), sort_keys=True, default=str),
            "epoch": epoch,
            "network": {key: value.cpu() for key, value in self.network.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "history": history,
            "best_epoch": best_epoch,
            "best_value": best_value,
        }
        with atomic_write(self.outputs.checkpoint) as stream:
            torch.save(state, stream)

    def _load_checkpoint(self, optimizer, schedule) -> tuple[int, list[dict], int, float]:
        path = self.outputs.checkpoint
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path} to resume from; start without --resume")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["fingerprint"] != json.dumps(self._fingerprint(), sort_keys=True, default=str):
            raise ValueError(f"{path} was written by a run with other data or settings; resume with the same ones or start afresh")
        self.network.load_state_dict(state["network"])
        self.network.to(self.device)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        self.say(f"resuming after epoch {state['epoch']} (best so far: epoch {state['best_epoch']})")
        return state["epoch"] + 1, list(state["history"]), state["best_epoch"], state["best_value"]


def train(config: TrainConfig, data: TrainingData, out: str | Path, resume: bool = False, quiet: bool = False,
          feature_store: dict | None = None) -> TrainResult:
    """Fine-tune an encoder on ``data`` and write it to ``out`` (plus a checkpoint and a curves PNG beside it).

    ``feature_store`` (a dict kept by the caller) lets runs on the same data share frozen-stage caches.
    """
    return Trainer(config, data, out, resume, quiet, feature_store).run()
