"""Which training choices carry to unseen classes: a sweep judged on held-out classes of the training data only.

Runs ``cbir.training`` on the training classes of a class-disjoint
benchmark (by default the VOC object crops that ``run.py --datasets voc``
writes), validating every epoch on whole classes held out of them
(``--val classes``), never on the benchmark's test classes. Each variant
changes one setting of a base recipe; runs that share the frozen stages
share one feature cache, so only the trained top is recomputed. Results go
to ``bench/results/finetune-sweep.md`` after every run.

    PYTHONPATH=$PWD python bench/finetune/sweep.py [--variants defaults,lr=3e-4,...] [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from bench.common import REPOSITORY, machine_summary
from cbir.progress import console
from cbir.training.data import load_training_data
from cbir.training.recipes import NEW_CLASSES
from cbir.training.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "finetune" / "work"
# one change of the base recipe each; names are what the table shows
VARIANTS = {
    "defaults": {},
    "loss=triplet": {"loss": "triplet"},
    "lr=3e-4": {"lr": 3e-4, "head_lr": 3e-4},
    "lr=1e-3": {"lr": 1e-3, "head_lr": 1e-3},
    "lr=3e-5": {"lr": 3e-5, "head_lr": 3e-5},
    "m-per-class=2": {"m_per_class": 2},
    "m-per-class=8": {"m_per_class": 8},
    "miner=none": {"miner": "none"},
    "miner=semi-hard": {"miner": "semi-hard"},
    "margin=0.5": {"margin": 0.5},
    "margin=0.9": {"margin": 0.9},
    "whitening": {"whitening": True},
    "views=1": {"views": 1},
    "views=3": {"views": 3},
    "train-layers=1": {"train_layers": 1},
    "train-layers=2": {"train_layers": 2},
    "train-layers=3": {"train_layers": 3},
    "size=160": {"image_size": 160},
    "pooling=gem": {"pooling": "gem"},
    "epoch-batches=1": {"epoch_batches": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=WORK / "voc-crops", help="Image root of the training data.")
    parser.add_argument("--labels", type=Path, default=WORK / "VOC-objects-train.csv", help="CSV of the training classes only.")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--base", default="", help="Settings of the base recipe, e.g. 'lr=3e-4,loss=triplet' (TrainConfig fields).")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--val-fraction", type=float, default=0.3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune-sweep.md")
    options = parser.parse_args()
    base = {key: _value(value) for key, value in (item.split("=", 1) for item in options.base.split(",") if item)}
    data = load_training_data(options.root, options.labels)
    (WORK / "sweep").mkdir(parents=True, exist_ok=True)
    store: dict = {}
    rows, started = [], time.time()
    command = " ".join(["PYTHONPATH=$PWD python bench/finetune/sweep.py", *map(shlex.quote, sys.argv[1:])])
    loads = [os.getloadavg()[0]]
    for name in options.variants.split(","):
        settings = {**base, **VARIANTS[name]}
        config = TrainConfig(**{"epochs": options.epochs, "patience": options.epochs, "val": "classes",
                                "val_fraction": options.val_fraction, "monitor": "mAP", **settings})
        console.print(f"[bold]{name}[/bold]: {settings}")
        run_started = time.perf_counter()
        result = train(config, data, WORK / "sweep" / f"{name}.pt", quiet=True, feature_store=store)
        loads.append(os.getloadavg()[0])
        curve = [entry["mAP"] for entry in result.history]
        rows.append({"variant": name, "curve": curve, "best_epoch": result.best_epoch, "MAP@R": result.best["MAP@R"],
                     "seconds": time.perf_counter() - run_started})
        console.print(f"  mAP by epoch: {' '.join(f'{v:.1f}' for v in curve)}  (best epoch {result.best_epoch})")
        write(options.out, rows, command, base, options, loads, started, data)


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def write(out: Path, rows: list[dict], command: str, base: dict, options, loads: list[float], started: float, data) -> None:
    defaults = TrainConfig()  # the settings it leaves open come from the new-classes recipe: every run here validates on classes

    def default(key: str):
        return getattr(NEW_CLASSES, key) if getattr(defaults, key) is None else getattr(defaults, key)

    recipe = {**{key: default(key) for key in ("loss", "miner", "lr", "m_per_class", "train_layers", "views", "image_size", "pooling", "epoch_batches")},
              **base, "epochs": options.epochs}
    start = rows[0]["curve"][0]
    lines = [
        "# Fine-tuning choices judged on held-out training classes",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_summary()}. Date: {time.strftime('%Y-%m-%d %H:%M')}. Run time: {(time.time() - started) / 60:.0f} min. "
        f"Load average (1 min) at the start and after each run: {', '.join(f'{v:.1f}' for v in loads)}.",
        "",
        f"Data: {str(data.origin).replace(str(REPOSITORY) + os.sep, '')}, {len(data)} images of {len(data.class_names)} training classes. Each run validates every epoch "
        f"on {round(options.val_fraction * len(data.class_names))} of these classes held out whole (each image querying "
        "the others, the same split for every run); the benchmark's test classes are never looked at. Base recipe: "
        + ", ".join(f"`{key}={value}`" for key, value in recipe.items()) + "; each row changes one setting.",
        "",
        f"Held-out-class mAP of the starting encoder (epoch 0): {start:.1f}.",
        "",
        "| variant | mAP at each epoch (0 = start) | best mAP | gain | best epoch | MAP@R at best | run time |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        best = max(row["curve"])
        lines.append(f"| {row['variant']} | {' '.join(f'{v:.1f}' for v in row['curve'])} | {best:.1f} | {best - row['curve'][0]:+.1f} "
                     f"| {row['best_epoch']} | {row['MAP@R']:.1f} | {row['seconds'] / 60:.1f} min |")
    out.write_text("\n".join(lines) + "\n")
    (WORK / "sweep" / f"{out.stem}.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
