"""Off-the-shelf vs fine-tuned (contrastive, triplet) retrieval on held-out data -> bench/results/finetune.md.

Protocols (train and test share no images, or no classes):

* BreastMNIST, PneumoniaMNIST: train on the train split (its val split
  validates); test images query the train split; ACC@1 and mAP@5 as in
  Mahbod et al. 2024 (AP@5 averages precision at the relevant ranks among
  the top 5; a query with none scores 0).
* ORL faces: train on people s1-s20; people s21-s40 (200 images) each query
  the other 199; mAP over the full ranking and P@1.
* corel1k: train on classes 0-4; classes 5-9 (500 images) each query the
  other 499; mAP over the full ranking and P@10.

Every model is trained with the documented ``cbir train`` command in a
subprocess (its wall time is the training time) and evaluated from the
encoder file it writes. Data missing from ../shared/data is skipped with a
message.

    PYTHONPATH=$PWD python bench/finetune/run.py [--datasets breastmnist,orl] [--losses contrastive,triplet]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cbir.encoders.encoder import Encoder, EncoderSpec, load_encoder_file, read_encoder_file
from cbir.extraction import extract
from cbir.io.medmnist import read_medmnist
from cbir.progress import console, progress_bar

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
OFF_THE_SHELF = {"GeM p=3": EncoderSpec(pooling="gem", gem_p=3.0), "R-MAC (default)": EncoderSpec(pooling="rmac")}


# --- metrics (small local helpers; the evaluation package will hold the shared ones) --------------
def ranked_labels(queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray, database_labels: np.ndarray,
                  leave_one_out: bool) -> np.ndarray:
    """Relevance (query x rank) of the database ranked by cosine similarity, the query itself removed."""
    similarity = queries @ database.T
    if leave_one_out:
        np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")
    if leave_one_out:
        order = order[:, :-1]
    return database_labels[order] == query_labels[:, None]


def average_precision(relevant: np.ndarray, normaliser: np.ndarray) -> np.ndarray:
    """Per-query AP of relevance rows, divided by ``normaliser`` (0 where it is 0)."""
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, relevant.shape[1] + 1)
    total = (precision * relevant).sum(axis=1)
    return np.divide(total, normaliser, out=np.zeros_like(total, dtype=float), where=normaliser > 0)


def medmnist_metrics(relevant: np.ndarray) -> dict[str, float]:
    """ACC@1 and mAP@5 (Mahbod et al. 2024) in percent."""
    top5 = relevant[:, :5]
    return {"ACC@1": 100 * relevant[:, 0].mean(), "mAP@5": 100 * average_precision(top5, top5.sum(axis=1)).mean()}


def held_out_metrics(relevant: np.ndarray, k: int) -> dict[str, float]:
    """mAP over the full ranking, P@1 and P@k in percent."""
    return {
        "mAP": 100 * average_precision(relevant, relevant.sum(axis=1)).mean(),
        "P@1": 100 * relevant[:, 0].mean(),
        f"P@{k}": 100 * relevant[:, :k].mean(),
    }


# --- datasets ----------------------------------------------------------------------------------------
@dataclass
class Benchmark:
    """One dataset: how to train on it and how to measure an encoder on its held-out part."""

    name: str
    train_args: list[str]
    metric_names: list[str]
    evaluate: callable
    notes: list[str] = field(default_factory=list)


def encode_arrays(encoder: Encoder, images: list, label: str) -> np.ndarray:
    out = []
    with progress_bar(label) as update:
        for start in range(0, len(images), 64):
            out.append(encoder.encode_images(images[start : start + 64]))
            update(start + len(out[-1]), len(images))
    return np.concatenate(out)


def encode_files(encoder: Encoder, paths: list[Path], label: str) -> np.ndarray:
    out, done = [], 0
    with progress_bar(label) as update:
        for batch in extract(encoder, paths, batch_size=32):
            if any(entry.tensor is None for entry in batch.decoded):
                raise RuntimeError(f"unreadable benchmark image among {[paths[e.index] for e in batch.decoded]}")
            out.append(batch.vectors)
            done += len(batch.decoded)
            update(done, len(paths))
    return np.concatenate(out)


def medmnist_benchmark(name: str, file: Path, extra: list[str]) -> Benchmark:
    train, test = read_medmnist(file, "train"), read_medmnist(file, "test")

    def evaluate(encoder: Encoder) -> dict[str, float]:
        database = encode_arrays(encoder, [train.image(i) for i in range(len(train))], f"{name} train")
        queries = encode_arrays(encoder, [test.image(i) for i in range(len(test))], f"{name} test")
        return medmnist_metrics(ranked_labels(queries, test.class_labels(), database, train.class_labels(), False))

    return Benchmark(name, [str(file), *extra], ["ACC@1", "mAP@5"], evaluate,
                     [f"{file.name}: train {len(train)}, test {len(test)} images"])


def labelled_files_benchmark(name: str, root: Path, files: list[str], labels: list[int], train_labels: set[int],
                             work: Path, k: int, extra: list[str]) -> Benchmark:
    csv_path = work / f"{name}-train.csv"
    with open(csv_path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["filename", "class_id"])
        writer.writerows([file, label] for file, label in zip(files, labels) if label in train_labels)
    held = [(root / file, label) for file, label in zip(files, labels) if label not in train_labels]
    held_labels = np.array([label for _, label in held])

    def evaluate(encoder: Encoder) -> dict[str, float]:
        vectors = encode_files(encoder, [path for path, _ in held], f"{name} held-out")
        return held_out_metrics(ranked_labels(vectors, held_labels, vectors, held_labels, True), k)

    count = sum(label in train_labels for label in labels)
    return Benchmark(name, [str(root), "--labels", str(csv_path), *extra], ["mAP", "P@1", f"P@{k}"], evaluate,
                     [f"train on {count} images of {len(train_labels)} classes; {len(held)} held-out images of "
                      f"{len(set(held_labels.tolist()))} other classes, each querying the rest"])


def benchmarks(names: list[str], work: Path) -> list[Benchmark]:
    found = []
    for name in names:
        if name == "breastmnist":
            file = DATA / "medmnist" / "breastmnist.npz"
            if file.is_file():
                found.append(medmnist_benchmark("BreastMNIST", file, ["--train-layers", "3"]))
                continue
        elif name == "pneumoniamnist":
            file = DATA / "medmnist" / "pneumoniamnist_balanced_subset_aksufatih.npz"
            if file.is_file():
                found.append(medmnist_benchmark("PneumoniaMNIST", file, ["--views", "1"]))
                continue
        elif name == "orl":
            root = DATA / "orl_faces" / "orl_faces"
            if root.is_dir():
                people = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))
                files = [str(f.relative_to(root)) for p in people for f in sorted(p.glob("*.pgm"))]
                labels = [int(f.split("/")[0][1:]) for f in files]
                found.append(labelled_files_benchmark("ORL", root, files, labels, set(range(1, 21)), work, 5, []))
                continue
        elif name == "corel":
            root = DATA / "corel1k"
            if (root / "labels.csv").is_file():
                with open(root / "labels.csv", newline="") as stream:
                    rows = list(csv.DictReader(stream))
                files, labels = [r["filename"] for r in rows], [int(r["class_id"]) for r in rows]
                found.append(labelled_files_benchmark("corel1k", root, files, labels, set(range(5)), work, 10, []))
                continue
        else:
            raise SystemExit(f"unknown dataset {name!r}")
        console.print(f"[yellow]skipping {name}: its data is not in {DATA}[/yellow]")
    return found


# --- running -----------------------------------------------------------------------------------------
def train_model(bench: Benchmark, loss: str, work: Path, common: list[str]) -> tuple[Path, float, str]:
    out = work / f"{bench.name}-{loss}.pt"
    args = ["train", *bench.train_args, "--loss", loss, "--out", str(out), *common]
    shown = "cbir " + " ".join(shlex.quote(a.replace(str(ROOT.parent), "..")) for a in args)
    console.print(f"[bold]{shown}[/bold]")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cbir.cli", *args], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return out, time.perf_counter() - started, shown


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores available, {device}; torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="breastmnist,pneumoniamnist,orl,corel")
    parser.add_argument("--losses", default="contrastive,triplet")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "finetune" / "work", help="Where models and CSVs go.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune.md")
    parser.add_argument("--train-args", default="", help="Extra options for every 'cbir train' (quoted).")
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    sections = []
    for bench in benchmarks(options.datasets.split(","), options.work):
        rows = []
        for label, spec in OFF_THE_SHELF.items():
            console.print(f"[bold]{bench.name}: off-the-shelf {label}[/bold]")
            rows.append({"encoder": f"off-the-shelf, {label}", **bench.evaluate(Encoder(spec))})
        for loss in options.losses.split(","):
            model, seconds, command = train_model(bench, loss, options.work, shlex.split(options.train_args))
            summary = read_encoder_file(model)["training"]
            metrics = bench.evaluate(load_encoder_file(model))
            rows.append({"encoder": f"fine-tuned, {loss}", **metrics, "time": seconds, "command": command,
                         "epochs": f"{len(summary['history']) - 1} (best {summary['best_epoch']})",
                         "p": summary["history"][summary["best_epoch"]]["gem_p"]})
        sections.append((bench, rows))
        write_report(options, sections, started)
    write_report(options, sections, started)
    console.print(f"wrote {options.out}")


def write_report(options, sections, started: float) -> None:
    lines = [
        "# Fine-tuning: off-the-shelf vs contrastive vs triplet",
        "",
        f"Command: `PYTHONPATH=$PWD python bench/finetune/run.py --datasets {options.datasets} --losses {options.losses}"
        + (f" --train-args {shlex.quote(options.train_args)}" if options.train_args else "") + "`",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. Whole run: {(time.time() - started) / 60:.0f} min.",
        "",
        "Backbone EfficientNet-Lite0 (packaged ImageNet weights), short side 224. Training time is the wall time of",
        "the `cbir train` command (reading and caching images, every epoch with its validation, writing files).",
        "",
    ]
    for bench, rows in sections:
        lines += [f"## {bench.name}", "", *[f"- {note}" for note in bench.notes], ""]
        baseline = rows[0]
        header = ["encoder", *bench.metric_names, f"{bench.metric_names[0]} vs GeM", "training time", "epochs (best)", "learned p"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            ratio = row[bench.metric_names[0]] / baseline[bench.metric_names[0]]
            cells = [row["encoder"], *(f"{row[m]:.1f}" for m in bench.metric_names), f"{ratio:.3f}",
                     f"{row['time'] / 60:.1f} min" if "time" in row else "-", row.get("epochs", "-"),
                     f"{row['p']:.2f}" if "p" in row else "-"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Training commands:", ""]
        lines += [f"- `{row['command']}`" for row in rows if "command" in row]
        lines.append("")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
