"""Retrieval quality: pooling methods x post-processing on the shared benchmark data.

    python -m bench.quality [--data DIR] [--cache DIR] [--only corel1k ...]

Writes bench/results/quality.md. Each data set missing from DIR is skipped
with a message. Descriptors are cached (--cache), so a second run only ranks.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from bench.common import RESULTS, RunClock, command_line, default_data, machine_description, markdown_table
from cbir.encoders.encoder import MULTI_SCALES, EncoderSpec
from cbir.encoders.pooling import POOLINGS
from cbir.evaluation import protocols
from cbir.evaluation.benchmark import Benchmark, EvaluationResult, WhiteningPlan, evaluate, image_files
from cbir.evaluation.descriptors import EncoderChoice, describe_images
from cbir.progress import console, progress_bar
from cbir.search.reranking import Reranking

POOLING_NAMES = {"spoc": "SPoC", "mac": "MAC", "gem": "GeM p=3", "rmac": "R-MAC", "crow": "CroW"}
RERANKING = Reranking(qe=5, qe_alpha=3.0, dba=5, dba_alpha=3.0)  # fixed beforehand for every data set
VARIANTS = ("plain", "+whitening", "+multi-scale", "+αQE+DBA")


@dataclass
class Dataset:
    """A benchmark data set, what its whitening is learned on, and which metrics a cell shows."""

    name: str
    folder: str
    benchmark: Callable[[Path, Path], Benchmark]
    whitening_images: Callable[[Path, Path], list[Path]]
    whitening_name: str
    shown: tuple[str, ...]
    reference: str = ""


def corel1k(data: Path, work: Path) -> Benchmark:
    return protocols.labeled(data / "corel1k", data / "corel1k" / "labels.csv", ks=(10,))


def corel1k_images(data: Path, work: Path) -> list[Path]:
    with open(data / "corel1k" / "labels.csv", newline="") as handle:
        return [data / "corel1k" / row["filename"] for row in csv.DictReader(handle)]


def other_photos(data: Path, work: Path) -> list[Path]:
    """Photos that are not Corel: UKBench objects and every 4th LFW face (636 images)."""
    return image_files(data / "ukbench_subset") + image_files(data / "lfw_dev")[::4]


def ukbench(data: Path, work: Path) -> Benchmark:
    return protocols.ukbench(data / "ukbench_subset" / "full")


def orl_faces(data: Path, work: Path) -> Benchmark:
    return protocols.labeled(data / "orl_faces" / "orl_faces", ks=(1, 10))


def lfw_faces(data: Path, work: Path) -> list[Path]:
    return image_files(data / "lfw_dev")[::4]


def export_medmnist(npz: Path, out: Path, splits: tuple[str, ...], every: int = 1) -> Path:
    """Write the 28x28 images of ``splits`` as PNGs in ``out/SPLIT/LABEL/`` (once)."""
    done = out / ".complete"
    if done.is_file():
        return out
    with np.load(npz) as data:
        for split in splits:
            images, labels = data[f"{split}_images"], data[f"{split}_labels"].reshape(-1)
            for index in range(0, len(images), every):
                folder = out / split / str(int(labels[index]))
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[index]).save(folder / f"{index:05d}.png")
    done.touch()
    return out


def breastmnist(data: Path, work: Path) -> Benchmark:
    """Test images query the train split (the protocol of Mahbod et al. 2024)."""
    root = export_medmnist(data / "medmnist" / "breastmnist.npz", work / "breastmnist", ("train", "test"))
    return protocols.labeled(root, queries=root / "test", database=root / "train", ks=(1, 5))


def pneumonia_images(data: Path, work: Path) -> list[Path]:
    npz = data / "medmnist" / "pneumoniamnist_balanced_subset_aksufatih.npz"
    return image_files(export_medmnist(npz, work / "pneumoniamnist", ("train",), every=4))


DATASETS = (
    Dataset("corel1k", "corel1k", corel1k, other_photos, "UKBench subset + every 4th LFW image", ("mAP", "P@10"),
            "reference (off-the-shelf, same backbone): SPoC 91.6 / 97.3, MAC 87.3 / 95.6, GeM 89.7 / 96.6, R-MAC 91.3 / 97.2"),
    Dataset("ukbench_subset", "ukbench_subset", ukbench, corel1k_images, "Corel-1k", ("N-S",), "maximum 4.0"),
    Dataset("orl_faces", "orl_faces", orl_faces, lfw_faces, "every 4th LFW image", ("mAP",),
            "reference: SPoC 85.7, MAC 84.6, GeM 85.5, R-MAC 86.0"),
    Dataset("breastmnist", "medmnist", breastmnist, pneumonia_images, "every 4th PneumoniaMNIST train image", ("P@1", "mAP@5"),
            "ACC@1 is P@1; reference GeM: ACC@1 84.0, mAP@5 85.9"),
)


def choices(scales: tuple[float, ...]) -> list[EncoderChoice]:
    return [EncoderChoice.of(EncoderSpec(pooling=pooling, scales=scales)) for pooling in POOLINGS]


def prefill(label: str, chosen: list[EncoderChoice], files: list, cache: Path | None) -> None:
    """Encode ``files`` for all ``chosen`` encoders at once (one backbone pass per scale set)."""
    with progress_bar(f"{label}: encoding") as update:
        describe_images(chosen, files, cache, progress=update)


def cell(result: EvaluationResult, shown: tuple[str, ...]) -> str:
    return " / ".join(f"{result.metrics[name]:.3f}" if name == "N-S" else f"{result.metrics[name]:.1f}" for name in shown)


def run_dataset(dataset: Dataset, data: Path, work: Path, cache: Path | None) -> tuple[str, dict]:
    """The Markdown section of one data set and its results by (pooling, variant)."""
    benchmark = dataset.benchmark(data, work)
    whitening_files = dataset.whitening_images(data, work)
    single, multi = choices((1.0,)), choices(MULTI_SCALES)
    refs = list(dict.fromkeys(benchmark.database + benchmark.queries))
    prefill(dataset.name, single + multi, refs, cache)
    prefill(f"{dataset.name} whitening set", single, whitening_files, cache)
    plan = WhiteningPlan(whitening_files, name=dataset.whitening_name)
    results: dict[tuple[str, str], EvaluationResult] = {}
    for pooling, plain_choice, multi_choice in zip(POOLINGS, single, multi):
        results[pooling, "plain"] = evaluate(benchmark, plain_choice, cache_dir=cache)
        results[pooling, "+whitening"] = evaluate(benchmark, plain_choice, whitening=plan, cache_dir=cache)
        results[pooling, "+multi-scale"] = evaluate(benchmark, multi_choice, cache_dir=cache)
        results[pooling, "+αQE+DBA"] = evaluate(benchmark, plain_choice, RERANKING, cache_dir=cache)
    rows = [[POOLING_NAMES[pooling]] + [cell(results[pooling, v], dataset.shown) for v in VARIANTS] for pooling in POOLINGS]
    first = results["spoc", "plain"]
    lines = [
        f"### {dataset.name}",
        "",
        f"{first.config['queries']} queries, {first.config['database']} database images; cells: {' / '.join(dataset.shown)}. "
        f"Whitening learned on {dataset.whitening_name} ({len(whitening_files)} images). {dataset.reference}",
        "",
        markdown_table(["pooling", *VARIANTS], rows),
        "",
    ]
    skipped = first.skipped
    if skipped:
        lines += [f"{len(skipped)} images could not be read and were left out.", ""]
    return "\n".join(lines), results


def corel_best(data: Path, work: Path, cache: Path | None) -> str:
    """corel1k: the re-ranking ablation and larger images for SPoC and R-MAC."""
    benchmark = corel1k(data, work)
    configurations = [
        ("224 px", (224, (1.0,)), Reranking()),
        ("224 px + αQE (5)", (224, (1.0,)), Reranking(qe=5)),
        ("224 px + DBA (5)", (224, (1.0,)), Reranking(dba=5)),
        ("224 px + αQE+DBA (5, 5)", (224, (1.0,)), RERANKING),
        ("224 px + αQE+DBA (10, 10)", (224, (1.0,)), Reranking(qe=10, dba=10)),
        ("320 px", (320, (1.0,)), Reranking()),
        ("320 px + αQE+DBA (5, 5)", (320, (1.0,)), RERANKING),
        ("320 px multi-scale (320, 226, 160)", (320, MULTI_SCALES), Reranking()),
        ("320 px multi-scale + αQE+DBA (5, 5)", (320, MULTI_SCALES), RERANKING),
    ]
    poolings = ("spoc", "rmac")
    refs = benchmark.database
    for size, scales in {setting for _, setting, _ in configurations}:
        chosen = [EncoderChoice.of(EncoderSpec(pooling=p, image_size=size, scales=scales)) for p in poolings]
        prefill(f"corel1k {size} px x{len(scales)} scales", chosen, refs, cache)
    rows = []
    for label, (size, scales), reranking in configurations:
        row = [label]
        for pooling in poolings:
            result = evaluate(benchmark, EncoderChoice.of(EncoderSpec(pooling=pooling, image_size=size, scales=scales)), reranking, cache_dir=cache)
            row.append(f"{result.metrics['mAP']:.1f} / {result.metrics['P@10']:.1f}")
        rows.append(row)
    return "\n".join([
        "### corel1k: re-ranking and image size (mAP / P@10)",
        "",
        markdown_table(["configuration", "SPoC", "R-MAC"], rows),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="The shared benchmark data folder.")
    parser.add_argument("--cache", type=Path, default=None, help="Descriptor cache (default ~/.cache/cbir/descriptors).")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "cbir" / "bench", help="Where MedMNIST images are exported.")
    parser.add_argument("--only", nargs="*", help="Only these data sets.")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.md")
    args = parser.parse_args(argv)
    clock = RunClock()
    sections, skipped = [], []
    for dataset in DATASETS:
        if args.only and dataset.name not in args.only:
            continue
        if not (args.data / dataset.folder).is_dir():
            message = f"{dataset.name}: skipped, {args.data / dataset.folder} is missing"
            console.print(f"[yellow]{message}[/yellow]")
            skipped.append(message)
            continue
        section, _ = run_dataset(dataset, args.data, args.work, args.cache)
        sections.append(section)
        console.print(section, highlight=False)
    if (args.data / "corel1k").is_dir() and (not args.only or "corel1k" in args.only):
        section = corel_best(args.data, args.work, args.cache)
        sections.append(section)
        console.print(section, highlight=False)
    write(args.out, sections, skipped, clock)
    console.print(f"written to {args.out}")
    return 0


def write(path: Path, sections: list[str], skipped: list[str], clock: RunClock) -> None:
    header = [
        "# Retrieval quality",
        "",
        f"Command: `{command_line()}`",
        "",
        *machine_description(),
        clock.summary(),
        "",
        "Encoder: EfficientNet-Lite0 (packaged ImageNet weights), short side 224 px, no crop, L2-normalised; "
        "cosine similarity, exhaustive ranking. Metrics in percent except N-S (out of 4). "
        "Variants: *+whitening*: PCA-whitening learned on a different data set (named per table); "
        f"*+multi-scale*: descriptors averaged over scales 1, 1/√2, 1/2 of the 224 px image; "
        f"*+αQE+DBA*: database-side augmentation then α-query expansion, {RERANKING.dba} and {RERANKING.qe} neighbours, "
        f"α = {RERANKING.qe_alpha:g}, chosen before the runs and the same for every data set.",
        "",
    ]
    notes = [f"- {message}" for message in skipped]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header + sections + notes) + "\n")


if __name__ == "__main__":
    sys.exit(main())
