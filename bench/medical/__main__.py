"""MedMNIST retrieval with `cbir evaluate medmnist` (Mahbod et al. 2024 protocol), off the shelf and
fine-tuned, beside the published figures; writes bench/results/medical.md.

    python -m bench.medical [--data DIR] [--datasets breastmnist pneumoniamnist] [--no-train]

Off the shelf: the default encoder (EfficientNet-Lite0, R-MAC) and GeM p=3,
encoded in one shared backbone pass into the descriptor cache, then measured
by the `cbir evaluate medmnist` commands printed in the results. Fine-tuned:
`cbir train FILE --views 1 --loss contrastive` (the same settings for every
data set), measured from the encoder file it writes; a finished encoder file
of the same command in the work folder is reused, with the training time
recorded in it (`--unfinished`: also the best epoch of an interrupted run, marked so). The report picture of the first data set is copied to
docs/images/medical-report.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPOSITORY, RESULTS, RunClock, command_line, default_data, machine_description, markdown_table
from cbir.encoders.encoder import EncoderSpec, read_encoder_file
from cbir.evaluation.descriptors import EncoderChoice
from cbir.evaluation.medmnist import encode_splits
from cbir.io.medmnist import read_medmnist
from cbir.progress import console, progress_bar

DATASETS = {
    "breastmnist": ("BreastMNIST", "medmnist/breastmnist.npz"),
    "pneumoniamnist": ("PneumoniaMNIST", "medmnist/pneumoniamnist_balanced_subset_aksufatih.npz"),
}
TRAIN_ARGS = ["--views", "1", "--loss", "contrastive"]
METRICS = ["ACC@1", "ACC@3", "ACC@5", "mMV@5", "mAP@5", "mAP"]

# ACC@1 (%) published by Mahbod et al. 2024 (arXiv 2409.09430, v1), as the authors plot their tables in
# github.com/masih4/MedImageRetrieval, plot.py at commit dd16994: images resized to 28/64/128/224 pixels.
PUBLISHED_SIZES = ["28", "64", "128", "224"]
PUBLISHED = {
    "BreastMNIST": {
        "VGG19": [79.48, 82.05, 80.76, 86.53], "ResNet50": [79.48, 80.76, 83.97, 83.33],
        "DenseNet121": [80.12, 82.05, 87.82, 84.61], "EfficientNetV2M": [78.20, 75.64, 78.84, 81.41],
        "OpenCLIP": [87.18, 85.90, 84.62, 85.90], "UNI": [78.21, 80.77, 83.97, 82.05],
        "MedCLIP": [76.28, 75.64, 82.69, 77.56], "BioMedCLIP": [81.41, 83.33, 87.18, 86.54],
    },
    "PneumoniaMNIST": {
        "VGG19": [83.17, 82.37, 81.25, 82.37], "ResNet50": [82.85, 86.21, 84.29, 87.01],
        "DenseNet121": [83.49, 84.77, 84.29, 87.50], "EfficientNetV2M": [77.08, 75.00, 78.04, 81.08],
        "OpenCLIP": [82.53, 84.94, 84.13, 86.06], "UNI": [80.93, 84.29, 87.02, 89.90],
        "MedCLIP": [80.61, 84.78, 92.63, 93.59], "BioMedCLIP": [85.74, 88.46, 88.94, 89.74],
    },
}


def cbir(args: list[str], nice: bool = False) -> None:
    """Run the cbir command line of this checkout."""
    prefix = ["nice", "-n", "10"] if nice else []
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    subprocess.run([*prefix, sys.executable, "-m", "cbir.cli", *args], check=True, env=env, cwd=REPOSITORY)


def shown(args: list[str], data: Path) -> str:
    return "cbir " + " ".join(shlex.quote(a).replace(str(data), "$DATA").replace(str(REPOSITORY) + "/", "") for a in args)


def evaluate(file: Path, options: list[str], out: Path, cache: Path, data: Path, report: Path | None = None) -> tuple[dict, str]:
    args = ["evaluate", "medmnist", str(file), *options, "--json", str(out)]
    cbir([*args, "--cache", str(cache), *(["--report", str(report)] if report else [])])
    return json.loads(out.read_text())["metrics"], shown(args, data)


def train(file: Path, name: str, work: Path, data: Path, allowed: bool, unfinished: bool) -> tuple[Path, float, str, str] | None:
    """The fine-tuned encoder file, training seconds, command and a note on a reused file; None when not allowed.

    With ``unfinished`` an encoder file of an interrupted run of the same command is measured too (it holds
    the best epoch reached)."""
    out = work / f"{name}-contrastive.pt"
    args = ["train", str(file), *TRAIN_ARGS, "--out", str(out)]
    command = shown(args, data)
    marker = out.with_suffix(".command")
    if out.is_file() and marker.is_file() and marker.read_text() == command:
        summary = read_encoder_file(out)["training"]
        last = summary["history"][-1]["epoch"]
        done = last == summary["config"]["epochs"] or last - summary["best_epoch"] >= summary["config"]["patience"]
        if done or unfinished:
            console.print(f"reusing {out} (trained {summary['date']}, {summary['seconds'] / 60:.1f} min)")
            note = "recorded" if done else f"recorded; stopped for time after epoch {last} of {summary['config']['epochs']}, best epoch {summary['best_epoch']}"
            return out, summary["seconds"], command, note
    if not allowed:
        return None
    console.print(f"[bold]{command}[/bold]")
    started = time.perf_counter()
    cbir(args, nice=True)
    marker.write_text(command)
    return out, time.perf_counter() - started, command, ""


def measure(key: str, data: Path, work: Path, cache: Path, allowed_to_train: bool, unfinished: bool, report: Path | None,
            encoders: list[str]) -> list[str]:
    name, relative = DATASETS[key]
    file = data / relative
    if not file.is_file():
        console.print(f"[yellow]skipping {name}: {file} is missing[/yellow]")
        return []
    splits = [read_medmnist(file, "test"), read_medmnist(file, "train")]
    specs = {"rmac": EncoderSpec(), "gem": EncoderSpec(pooling="gem", gem_p=3.0)}
    choices = [EncoderChoice.of(specs[e]) for e in specs if e == "rmac" or e in encoders]
    with progress_bar(f"{name}: one backbone pass for the off-the-shelf poolings") as update:
        encode_splits(choices, splits, cache, progress=update)
    rows, commands = [], []
    reference, command = evaluate(file, [], work / f"{name}-rmac.json", cache, data)
    rows.append(("off the shelf, R-MAC (default)", reference, "-"))
    commands.append(command)
    if "gem" in encoders:
        metrics, command = evaluate(file, ["--pooling", "gem", "--gem-p", "3"], work / f"{name}-gem.json", cache, data)
        rows.append(("off the shelf, GeM p=3", metrics, "-"))
        commands.append(command)
    trained = train(file, name, work, data, allowed_to_train, unfinished) if "finetuned" in encoders else None
    if trained is not None:
        model, seconds, train_command, note = trained
        metrics, command = evaluate(file, ["--encoder", str(model)], work / f"{name}-contrastive.json", cache, data, report)
        rows.append(("fine-tuned, contrastive", metrics, f"{seconds / 60:.1f} min" + (f" ({note})" if note else "")))
        commands += [train_command, command]
    elif report is not None:
        evaluate(file, [], work / f"{name}-rmac.json", cache, data, report)
    table = markdown_table(
        ["encoder", *METRICS, "ACC@1 vs R-MAC", "training"],
        [[label, *(f"{m[k]:.1f}" for k in METRICS), f"{m['ACC@1'] / reference['ACC@1']:.3f}", time_cell] for label, m, time_cell in rows],
    )
    lines = [f"## {name}", "", f"- `{relative}`: {len(splits[0])} test images query {len(splits[1])} train images", "", table, ""]
    left_out = [label for encoder, label in (("gem", "GeM p=3"), ("finetuned", "fine-tuned")) if encoder not in encoders]
    if trained is None and "finetuned" in encoders:
        left_out.append("fine-tuned (`--no-train` and no finished encoder file)")
    if left_out:
        lines += [f"Not measured in this run: {', '.join(left_out)}.", ""]
    lines += ["Commands (`$DATA` = the shared data folder):", ""] + [f"- `{c}`" for c in commands] + [""]
    published = PUBLISHED[name]
    lines += [f"Published ACC@1 (Mahbod et al. 2024, zero-shot, official MedMNIST splits) by image size:", ""]
    lines += [markdown_table(["model", *(f"{s}x{s}" for s in PUBLISHED_SIZES)], [[model, *(f"{v:.1f}" for v in values)] for model, values in published.items()]), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--work", type=Path, default=REPOSITORY / "bench" / "medical" / "work")
    parser.add_argument("--cache", type=Path, default=None, help="descriptor cache (default: WORK/cache)")
    parser.add_argument("--no-train", action="store_true", help="measure fine-tuned encoders only where a finished encoder file exists")
    parser.add_argument("--encoders", nargs="+", default=["rmac", "gem", "finetuned"], choices=["rmac", "gem", "finetuned"],
                        help="rows to measure (R-MAC, the reference, always is)")
    parser.add_argument("--unfinished", action="store_true", help="also measure the encoder file of an interrupted training run")
    arguments = parser.parse_args()
    clock = RunClock()
    work = arguments.work
    work.mkdir(parents=True, exist_ok=True)
    cache = arguments.cache or work / "cache"
    sections = []
    for number, key in enumerate(arguments.datasets):
        report = work / f"report-{key}" if number == 0 else None
        sections += measure(key, arguments.data, work, cache, not arguments.no_train, arguments.unfinished, report, arguments.encoders)
        if report is not None and (report / "index.html").is_file():
            picture = sorted(report.glob("test_*.png"))[1 if len(list(report.glob("test_*.png"))) > 1 else 0]
            shutil.copyfile(picture, REPOSITORY / "docs" / "images" / "medical-report.png")
    for key in DATASETS:
        if key not in arguments.datasets:
            sections += [f"## {DATASETS[key][0]}", "", "Not measured in this run (left out by `--datasets`).", ""]
    page = [
        "# Medical image retrieval: MedMNIST",
        "",
        f"Command: `{command_line()}`",
        "",
        "Protocol of Mahbod et al. 2024 (arXiv 2409.09430): every test image queries the train split by cosine",
        "similarity; ACC@k = a result with the query's label among the first k; mMV@5 = the majority label of the",
        "first 5 is the query's; mAP@5 = precision at each correct result within the first 5, averaged over them;",
        "mAP = average precision over the whole ranking (not in the paper). Encoder: EfficientNet-Lite0 (packaged",
        "ImageNet weights), images upscaled from 28x28 to 224x224. Fine-tuned: the same settings on every data set.",
        "",
        "PneumoniaMNIST: the balanced copy (train 1214 normal + 1214 pneumonia, 468 test images, all from the official",
        "test split). The other copy lacks 826 of the 1214 normal training images (10 % normal instead of 26 %), which",
        "skews every vote towards pneumonia; the balanced copy is a documented undersampling with equal classes. Neither",
        "is the official release, so its rows are not strictly comparable with the published ones.",
        "",
        "Training times marked (recorded) are those stored in the encoder file of an earlier run of the same",
        "`cbir train` command, measured here.",
        "",
        "Machine:",
        "",
        *machine_description(),
        clock.summary(),
        "",
        *sections,
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "medical.md").write_text("\n".join(page) + "\n", encoding="utf-8")
    console.print(f"written {RESULTS / 'medical.md'}")


if __name__ == "__main__":
    main()
