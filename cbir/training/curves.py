"""A picture of a training run: loss per epoch, and validation metrics per epoch with the best marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOT_METRICS = ("epoch", "loss", "seconds", "gem_p")


def plot_curves(history: list[dict], monitor: str, best_epoch: int, path: str | Path) -> None:
    """Write a PNG with the training loss (left) and the validation metrics (right)."""
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    trained = [entry for entry in history if entry.get("loss") is not None]
    loss_axis.plot([e["epoch"] for e in trained], [e["loss"] for e in trained], marker="o", color="tab:red")
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="loss")
    loss_axis.grid(alpha=0.3)
    names = [name for name in history[0] if name not in NOT_METRICS] if history else []
    for name in names:
        epochs = [e["epoch"] for e in history if name in e]
        values = [e[name] for e in history if name in e]
        metric_axis.plot(epochs, values, marker="o", linewidth=2.5 if name == monitor else 1.2, label=name)
    if names:
        metric_axis.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
        metric_axis.legend(loc="lower right")
    else:
        metric_axis.text(0.5, 0.5, "no validation", ha="center", va="center", transform=metric_axis.transAxes)
    metric_axis.set(title=f"validation (monitoring {monitor})", xlabel="epoch", ylabel="percent")
    metric_axis.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    plt.close(figure)
