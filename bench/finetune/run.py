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
* VOC objects (class-disjoint, not saturated off the shelf): crops of the
  annotated objects of ``voc_dev`` (not difficult, short side at least 32
  px, at most 60 per class), cut as ``cbir.evaluation.objects`` cuts query
  boxes. Train on every other class in alphabetical order (aeroplane, bird,
  bottle, ...); the crops of the other 10 classes (bicycle, boat, bus, ...)
  each query the rest; mAP over the full ranking, P@1 and P@10.
* LFW people (class-disjoint, fine-grained, many classes as in the
  metric-learning protocols that train on half the classes): the
  ``lfw_dev`` people with at least 4 photos (at most 20 each); train on
  every other person in alphabetical order, the photos of the others each
  query the rest; mAP over the full ranking, P@1 and P@5. The whole
  deep-funnelled photo is the input, as for any other picture.

Every model is trained with the documented ``cbir train`` command in a
subprocess (its wall time is the training time) and evaluated from the
encoder file it writes. Data missing from ../shared/data is skipped with a
message.

    PYTHONPATH=$PWD python bench/finetune/run.py --data ../shared/data [--datasets breastmnist,orl] [--losses contrastive,triplet]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import default_data, machine_summary
from cbir.encoders.encoder import Encoder, EncoderSpec, load_encoder_file, read_encoder_file
from cbir.encoders.regions import crop_box
from cbir.evaluation import metrics
from cbir.evaluation.descriptors import PoolingGroupEncoder
from cbir.pipelines.image import extract
from cbir.io.images import load_image
from cbir.io.medmnist import read_medmnist
from cbir.progress import console, progress_bar

ROOT = Path(__file__).resolve().parents[2]
OFF_THE_SHELF = {"GeM p=3": EncoderSpec(pooling="gem", gem_p=3.0), "R-MAC (default)": EncoderSpec(pooling="rmac")}
STARTS = {"gem": "off-the-shelf, GeM p=3", "rmac": "off-the-shelf, R-MAC (default)"}  # pooling trained through -> its start row


# --- metrics (cbir.evaluation.metrics on relevance rows) ------------------------------------------
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


def hits_of(relevant: np.ndarray) -> metrics.RankedHits:
    """The positives of rows of relevance that are already in rank order."""
    in_order = np.broadcast_to(np.arange(relevant.shape[1]), relevant.shape)
    return metrics.ranked_hits(in_order, np.where(relevant, metrics.POSITIVE, metrics.NEGATIVE))


def medmnist_metrics(relevant: np.ndarray) -> dict[str, float]:
    """ACC@1 and mAP@5 (Mahbod et al. 2024) in percent; a query with no relevant image scores 0."""
    average_precision = metrics.average_precision_at_k(hits_of(relevant), 5)
    return {"ACC@1": 100 * relevant[:, 0].mean(), "mAP@5": 100 * np.nan_to_num(average_precision).mean()}


def held_out_metrics(relevant: np.ndarray, k: int) -> dict[str, float]:
    """mAP over the full ranking, P@1 and P@k in percent; a query with no relevant image scores 0."""
    return {
        "mAP": 100 * np.nan_to_num(metrics.average_precision(hits_of(relevant))).mean(),
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
    evaluate: callable  # (encoder, blocks) -> metrics of each of ``blocks`` equal column blocks of its descriptors
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
        for batch in extract(encoder, paths):
            if any(entry.value is None for entry in batch.decoded):
                raise RuntimeError(f"unreadable benchmark image among {[paths[e.index] for e in batch.decoded]}")
            out.append(batch.vectors)
            done += len(batch.decoded)
            update(done, len(paths))
    return np.concatenate(out)


def blocks_of(vectors: np.ndarray, blocks: int) -> list[np.ndarray]:
    """The ``blocks`` equal column blocks of side-by-side descriptors."""
    width = vectors.shape[1] // blocks
    return [vectors[:, block * width : (block + 1) * width] for block in range(blocks)]


def medmnist_benchmark(name: str, file: Path, extra: list[str]) -> Benchmark:
    train, test = read_medmnist(file, "train"), read_medmnist(file, "test")

    def evaluate(encoder: Encoder, blocks: int = 1) -> list[dict[str, float]]:
        database = encode_arrays(encoder, [train.image(i) for i in range(len(train))], f"{name} train")
        queries = encode_arrays(encoder, [test.image(i) for i in range(len(test))], f"{name} test")
        return [medmnist_metrics(ranked_labels(q, test.class_labels(), d, train.class_labels(), False))
                for q, d in zip(blocks_of(queries, blocks), blocks_of(database, blocks))]

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

    def evaluate(encoder: Encoder, blocks: int = 1) -> list[dict[str, float]]:
        vectors = encode_files(encoder, [path for path, _ in held], f"{name} held-out")
        return [held_out_metrics(ranked_labels(v, held_labels, v, held_labels, True), k) for v in blocks_of(vectors, blocks)]

    count = sum(label in train_labels for label in labels)
    return Benchmark(name, [str(root), "--labels", str(csv_path), *extra], ["mAP", "P@1", f"P@{k}"], evaluate,
                     [f"train on {count} images of {len(train_labels)} classes; {len(held)} held-out images of "
                      f"{len(set(held_labels.tolist()))} other classes, each querying the rest"])


VOC_MIN_SIDE = 32
VOC_PER_CLASS = 60


def voc_crops(voc: Path, work: Path) -> tuple[Path, list[str], list[int], list[str]]:
    """Crops of ``voc/objects.csv`` under ``work/voc-crops/CLASS/``: root, files, class ids, class names (sorted)."""
    root = work / "voc-crops"
    with open(voc / "objects.csv", newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if row["difficult"] == "0"
                and min(int(row["xmax"]) - int(row["xmin"]), int(row["ymax"]) - int(row["ymin"])) >= VOC_MIN_SIDE]
    names = sorted({row["class_name"] for row in rows})
    rng = np.random.default_rng(0)
    files, labels = [], []
    for label, name in enumerate(names):
        members = [(i, row) for i, row in enumerate(rows) if row["class_name"] == name]
        keep = sorted(rng.permutation(len(members))[:VOC_PER_CLASS])
        for i, row in (members[k] for k in keep):
            file = f"{name}/{Path(row['filename']).stem}-{i}.jpg"
            if not (root / file).is_file():
                (root / name).mkdir(parents=True, exist_ok=True)
                box = [float(row[key]) for key in ("xmin", "ymin", "xmax", "ymax")]
                crop_box(load_image(voc / "JPEGImages" / row["filename"]), box).save(root / file, quality=95)
            files.append(file)
            labels.append(label)
    return root, files, labels, names


LFW_MIN_PHOTOS = 4
LFW_MAX_PHOTOS = 20


def lfw_people(root: Path) -> tuple[list[str], list[int]]:
    """Photos (relative paths) and person ids of the people of ``root`` with at least ``LFW_MIN_PHOTOS`` photos."""
    files, labels = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        if len(photos) >= LFW_MIN_PHOTOS:
            files += [str(photo.relative_to(root)) for photo in photos[:LFW_MAX_PHOTOS]]
            labels += [len(set(labels))] * len(photos[:LFW_MAX_PHOTOS])
    return files, labels


def benchmarks(names: list[str], data: Path, work: Path) -> list[Benchmark]:
    found = []
    for name in names:
        if name == "breastmnist":
            file = data / "medmnist" / "breastmnist.npz"
            if file.is_file():
                found.append(medmnist_benchmark("BreastMNIST", file, ["--train-layers", "3", "--miner", "none"]))
                continue
        elif name == "pneumoniamnist":
            file = data / "medmnist" / "pneumoniamnist_balanced_subset_aksufatih.npz"
            if file.is_file():
                found.append(medmnist_benchmark("PneumoniaMNIST", file, ["--views", "1"]))
                continue
        elif name == "orl":
            root = data / "orl_faces" / "orl_faces"
            if root.is_dir():
                people = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))
                files = [str(f.relative_to(root)) for p in people for f in sorted(p.glob("*.pgm"))]
                labels = [int(f.split("/")[0][1:]) for f in files]
                found.append(labelled_files_benchmark("ORL", root, files, labels, set(range(1, 21)), work, 5, []))
                continue
        elif name == "corel":
            root = data / "corel1k"
            if (root / "labels.csv").is_file():
                with open(root / "labels.csv", newline="") as stream:
                    rows = list(csv.DictReader(stream))
                files, labels = [r["filename"] for r in rows], [int(r["class_id"]) for r in rows]
                found.append(labelled_files_benchmark("corel1k", root, files, labels, set(range(5)), work, 10, []))
                continue
        elif name == "voc":
            voc = data / "voc_dev"
            if (voc / "objects.csv").is_file():
                root, files, labels, classes = voc_crops(voc, work)
                bench = labelled_files_benchmark("VOC-objects", root, files, labels, set(range(0, len(classes), 2)), work, 10, [])
                bench.notes.append(f"training classes: {', '.join(classes[0::2])}; held-out classes: {', '.join(classes[1::2])}")
                found.append(bench)
                continue
        elif name == "lfw":
            root = data / "lfw_dev" / "lfw-deepfunneled"
            if root.is_dir():
                files, labels = lfw_people(root)
                found.append(labelled_files_benchmark("LFW-people", root, files, labels, set(range(0, max(labels) + 1, 2)), work, 5, []))
                continue
        else:
            raise SystemExit(f"unknown dataset {name!r}")
        console.print(f"[yellow]skipping {name}: its data is not in {data}[/yellow]")
    return found


# --- running -----------------------------------------------------------------------------------------
def finished(summary: dict) -> bool:
    """Whether an encoder file's training summary is that of a run that went to its end."""
    last = summary["history"][-1]["epoch"]
    return last == summary["config"]["epochs"] or last - summary["best_epoch"] >= summary["config"]["patience"]


def train_model(bench: Benchmark, loss: str, work: Path, common: list[str], reuse: bool) -> tuple[Path, float, str, bool]:
    """Train (or with ``reuse``, take the finished earlier run of the same command): file, seconds, command, reused."""
    out = work / f"{bench.name}-{loss}.pt"
    args = ["train", *bench.train_args, "--loss", loss, "--out", str(out), *common]
    shown = "cbir " + " ".join(shlex.quote(a.replace(str(ROOT) + "/", "")) for a in args)
    console.print(f"[bold]{shown}[/bold]")
    command_file = out.with_suffix(".command")
    if reuse and out.is_file() and command_file.is_file() and command_file.read_text() == shown:
        summary = read_encoder_file(out)["training"]
        if finished(summary):
            console.print(f"reusing {out} (trained {summary['date']}, {summary['seconds'] / 60:.1f} min)")
            return out, summary["seconds"], shown, True
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cbir.cli", *args], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    command_file.write_text(shown)
    return out, time.perf_counter() - started, shown, False


DATASETS = ("breastmnist", "orl", "corel", "pneumoniamnist", "voc", "lfw")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data(), help="The shared benchmark data folder.")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--losses", default="contrastive,triplet")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "finetune" / "work", help="Where models, CSVs and sections go.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune.md")
    parser.add_argument("--train-args", default="", help="Extra options for every 'cbir train' (quoted).")
    parser.add_argument("--report-only", action="store_true", help="Only rebuild the page from the sections already measured.")
    parser.add_argument("--reuse", action="store_true",
                        help="Take off-the-shelf rows already measured, and encoder files left by finished runs of the same commands.")
    options = parser.parse_args()
    options.work.mkdir(parents=True, exist_ok=True)
    if options.report_only:
        write_report(options.out, options.work)
        console.print(f"wrote {options.out}")
        return
    command = " ".join(["PYTHONPATH=$PWD python bench/finetune/run.py", *map(shlex.quote, sys.argv[1:])])
    for bench in benchmarks(options.datasets.split(","), options.data, options.work):
        started = time.time()
        saved = options.work / f"section-{bench.name}.json"
        if options.reuse and saved.is_file():
            rows = json.loads(saved.read_text())["rows"][: len(OFF_THE_SHELF)]
            console.print(f"{bench.name}: off-the-shelf rows measured earlier, from {saved}")
        else:
            console.print(f"[bold]{bench.name}: off-the-shelf {', '.join(OFF_THE_SHELF)} (one backbone pass)[/bold]")
            measured = bench.evaluate(PoolingGroupEncoder(list(OFF_THE_SHELF.values())), len(OFF_THE_SHELF))
            rows = [{"encoder": f"off-the-shelf, {label}", **metrics} for label, metrics in zip(OFF_THE_SHELF, measured)]
        section = {"name": bench.name, "notes": bench.notes, "metric_names": bench.metric_names, "rows": rows}
        save_section(section, command, started, options)
        for loss in [name for name in options.losses.split(",") if name]:
            model, seconds, train_command, reused = train_model(bench, loss, options.work, shlex.split(options.train_args), options.reuse)
            summary = read_encoder_file(model)["training"]
            history, best = summary["history"], summary["best_epoch"]
            (metrics,) = bench.evaluate(load_encoder_file(model))
            rows.append({"encoder": f"fine-tuned, {loss}", **metrics, "time": seconds, "command": train_command,
                         "epochs": f"{len(history) - 1} (best {best})", "p": history[best]["gem_p"],
                         "start": STARTS[summary["config"].get("pooling", "gem")], "recipe": recipe_text(summary),
                         "validation": [summary["validation"], summary["monitor"], history[0][summary["monitor"]],
                                        history[best][summary["monitor"]], best], "reused": reused})
            save_section(section, command, started, options)
    console.print(f"wrote {options.out}")


def recipe_text(summary: dict) -> str | None:
    """The recipe a run followed and its settings, from its training summary (None for runs before recipes)."""
    if "recipe" not in summary:
        return None
    config = summary["config"]
    batches = "one pass over the images" if not config["epoch_batches"] else f"at least {config['epoch_batches']} batches"
    return f"{summary['recipe']}: pooling {config['pooling']}, learning rate {config['lr']:g}, epochs of {batches}"


def save_section(section: dict, command: str, started: float, options) -> None:
    """Keep a dataset's measurements so far (with how they were made) and rebuild the page."""
    loads = section.get("run", {}).get("loads", []) + [round(os.getloadavg()[0], 1)]
    section["run"] = {"command": command, "machine": machine_summary(), "date": time.strftime("%Y-%m-%d %H:%M"),
                      "minutes": (time.time() - started) / 60, "loads": loads}
    (options.work / f"section-{section['name']}.json").write_text(json.dumps(section, indent=1))
    write_report(options.out, options.work)


def start_row(row: dict, rows: list[dict]) -> dict:
    """The off-the-shelf row a fine-tuned row started from (runs before R-MAC training started from GeM p=3)."""
    start = row.get("start", STARTS["gem"])
    return next(other for other in rows if other["encoder"] == start)


def shortfall(metric: str, row: dict, baseline: dict) -> str | None:
    """Why a fine-tuned row does not beat the encoder it started from, from what the run measured (None when it does)."""
    if row[metric] > baseline[metric]:
        return None
    split, monitor, start, best_value, best_epoch = row["validation"]
    measured = (f"{row['encoder']}: held-out {metric} {baseline[metric]:.1f} -> {row[metric]:.1f}; "
                f"validation ({split}) {monitor} {start:.1f} -> {best_value:.1f}")
    if best_epoch == 0:
        return measured + f": no epoch improved on the starting encoder, so the file is that encoder ({baseline['encoder']})."
    return measured + (f" at epoch {best_epoch}: training improved the validation data but the gain does not carry "
                       "over to the held-out test part.")


def kept_sections(out: Path) -> dict[str, str]:
    """The sections (``## NAME`` to the next) of an existing results page, by name."""
    if not out.is_file():
        return {}
    parts = out.read_text().split("\n## ")[1:]
    return {part.split("\n", 1)[0]: "## " + part.rstrip("\n") + "\n" for part in parts}


def write_report(out: Path, work: Path) -> None:
    """The results page from every dataset section measured so far (one JSON file per dataset in ``work``);
    sections of the page measured elsewhere (no JSON in ``work``) are kept as they are."""
    sections = [json.loads(path.read_text()) for path in sorted(work.glob("section-*.json"))]
    order = {"VOC-objects": 0, "BreastMNIST": 1, "ORL": 2, "corel1k": 3, "PneumoniaMNIST": 4}
    kept = {name: text for name, text in kept_sections(out).items() if name not in {section["name"] for section in sections}}
    sections += [{"name": name, "text": text} for name, text in kept.items()]
    sections.sort(key=lambda section: order.get(section["name"], len(order)))
    missing = [name for name in order if name not in {section["name"] for section in sections}]
    lines = [
        "# Fine-tuning: off-the-shelf vs contrastive vs triplet",
        "",
        "Backbone EfficientNet-Lite0 (packaged ImageNet weights), short side 224. Training time is the wall time of",
        "the `cbir train` command (reading and caching images, every epoch with its validation, writing files).",
        "The best epoch is chosen on the validation data named in each section, never on the held-out test part.",
        "Each section says the benchmark command that measured it, the machine and how long the section took.",
        "",
    ]
    if missing:
        lines += [f"Not measured yet: {', '.join(missing)}.", ""]
    for section in sections:
        if "text" in section:
            lines += section["text"].split("\n")
            continue
        names, rows, run = section["metric_names"], section["rows"], section["run"]
        lines += [f"## {section['name']}", "", f"Command: `{run['command']}`", "",
                  f"Machine: {run['machine']}. Date: {run['date']}. Section run time: {run['minutes']:.0f} min."
                  + (f" Load average (1 min) after each step: {', '.join(map(str, run['loads']))}." if run.get("loads") else ""), "",
                  *[f"- {note}" for note in section["notes"]], ""]
        header = ["encoder", *names, f"{names[0]} gain over the start", "training time", "epochs (best)", "learned p",
                  "validation metric: start -> best"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            validation = "-"
            if "validation" in row:
                _, monitor, start, best_value, _ = row["validation"]
                validation = f"{monitor} {start:.1f} -> {best_value:.1f}"
            time_cell = "-" if "time" not in row else f"{row['time'] / 60:.1f} min" + (" (recorded)" if row.get("reused") else "")
            gain = "-" if "validation" not in row else f"{row[names[0]] - start_row(row, rows)[names[0]]:+.1f} (from {start_row(row, rows)['encoder'][15:]})"
            cells = [row["encoder"], *(f"{row[m]:.1f}" for m in names), gain, time_cell, row.get("epochs", "-"),
                     f"{row['p']:.2f}" if row.get("p") is not None else "-", validation]
            lines.append("| " + " | ".join(cells) + " |")
        tuned = [row for row in rows if "validation" in row]
        if tuned:
            lines += ["", f"Validation: {tuned[0]['validation'][0]}."]
            if tuned[0].get("recipe"):
                lines += ["", f"Recipe (`cbir.training.recipes`, picked by the validation): {tuned[0]['recipe']}."]
        if any(row.get("reused") for row in tuned):
            lines += ["", "(recorded): an encoder file of an earlier finished run of the same command, measured here; its time is the",
                      "training time recorded in the file (the `cbir train` process less start-up and reading the data)."]
        misses = [note for note in (shortfall(names[0], row, start_row(row, rows)) for row in tuned) if note]
        if misses:
            lines += ["", "Where fine-tuning does not beat the off-the-shelf encoder it started from (measured):", ""]
            lines += [f"- {note}" for note in misses]
        if tuned:
            lines += ["", "Training commands:", ""]
            lines += [f"- `{row['command']}`" for row in tuned]
        lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
