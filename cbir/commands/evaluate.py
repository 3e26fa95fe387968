"""``cbir evaluate``: one command per protocol, each printing a table and optionally writing JSON and a report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer
from rich.table import Table

from cbir.commands.common import (
    App,
    BackboneOption,
    EncoderFileOption,
    GemOption,
    MultiscaleOption,
    PoolingOption,
    SizeOption,
    WeightsOption,
    encoder_spec_from_options,
    results,
    user_errors,
    write_json,
)
from cbir.encoders.spec import DEFAULT_BATCH_SIZE
from cbir.progress import console, progress_bar

if TYPE_CHECKING:
    from cbir.evaluation.benchmark import Benchmark, EvaluationResult
    from cbir.evaluation.descriptors import EncoderChoice
    from cbir.search.reranking import Reranking

evaluate_app = App(help="Measure retrieval quality on standard protocols.", no_args_is_help=True)
WhitenOption = typer.Option(False, "--whiten", help="PCA-whiten the descriptors (learned on --whiten-on, else on the evaluated images).")
WhitenOnOption = typer.Option(None, "--whiten-on", help="Folder of other images to learn the whitening on (implies --whiten).")
WhitenDimOption = typer.Option(None, "--whiten-dim", help="Keep this many whitened dimensions.")
QeOption = typer.Option(0, "--qe", help="alpha-query expansion with this many neighbours (0: off).")
QeAlphaOption = typer.Option(3.0, "--qe-alpha", help="alpha of query expansion (0: average QE).")
DbaOption = typer.Option(0, "--dba", help="Database-side augmentation with this many neighbours (0: off).")
DbaAlphaOption = typer.Option(3.0, "--dba-alpha", help="alpha of database-side augmentation.")
JsonOption = typer.Option(None, "--json", help="Write {protocol, metrics, config} to this file.")
ReportOption = typer.Option(None, "--report", help="Write an HTML report with pictures into this folder.")
CacheOption = typer.Option(None, "--cache", help="Descriptor cache folder (default ~/.cache/cbir/descriptors).")
BatchOption = typer.Option(DEFAULT_BATCH_SIZE, help="Images per forward pass.")
WorkersOption = typer.Option(None, help="Decoding worker processes.")


def encoder_choice(backbone, pooling, gem_p, size, multiscale, weights, encoder_file: Optional[Path]) -> EncoderChoice:
    """The encoder the options ask for; an encoder file excludes the other encoder options."""
    from cbir.evaluation.descriptors import EncoderChoice

    spec = encoder_spec_from_options(backbone, pooling, gem_p, size, multiscale, weights)
    if encoder_file is not None:
        encoder_file = encoder_file.expanduser()
        if spec is not None:
            raise ValueError("--encoder already fixes backbone, pooling and size: drop the other encoder options")
        if not encoder_file.is_file():
            raise FileNotFoundError(f"encoder file {encoder_file} does not exist")
    return EncoderChoice.of(spec, encoder_file)


def run_protocol(
    make_benchmark: Callable[[], Benchmark],
    choice_options: tuple,
    whiten: bool,
    whiten_on: Optional[Path],
    whiten_dim: Optional[int],
    reranking: Reranking,
    json_file: Optional[Path],
    report: Optional[Path],
    cache: Optional[Path],
    batch_size: int,
    workers: Optional[int],
) -> None:
    """Build the benchmark, evaluate it with a progress bar, print and write the results."""
    from cbir.evaluation.benchmark import WhiteningPlan, evaluate

    json_file, cache, whiten_on = (path.expanduser() if path is not None else None for path in (json_file, cache, whiten_on))
    with user_errors():
        choice = encoder_choice(*choice_options)
        benchmark = make_benchmark()
        whitening = WhiteningPlan(whiten_on, whiten_dim) if (whiten or whiten_on is not None) else None
        with progress_bar("encoding") as update:
            result = evaluate(benchmark, choice, reranking, whitening, cache, batch_size, workers, update)
        print_result(result)
        if json_file is not None:
            write_json(json_file, result.to_dict())
            console.print(f"metrics written to {json_file}")
        if report is not None:
            from cbir.evaluation.report import write_report

            console.print(f"writing the HTML report to {report} ...")
            page = write_report(result, report, on_step=lambda step: console.print(f"  report: {step}", highlight=False))
            console.print(f"report written to {page}")


def print_result(result: EvaluationResult) -> None:
    """The metrics as a table, then the configuration, skipped files and notes."""
    if "queries" in result.config:
        title = f"{result.protocol}: {result.config['queries']} queries, {result.config['database']} database images"
    else:
        title = f"{result.protocol}: {result.config['pairs']} pairs in {result.config['folds']} folds"
    results.print(f"[bold]{title}[/bold]", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, "n/a" if math.isnan(value) else (f"{value:.3f}" if name == "N-S" else f"{value:.2f}"))
    results.print(table)
    lines = ["encoder: " + ", ".join(f"{key} {value}" for key, value in result.config["encoder"].items() if value is not None)]
    if "whitening" in result.config:
        whitening = result.config["whitening"]
        lines.append(f"whitening: learned on {whitening['learned_on']} ({whitening['images']} images), {whitening['dim']} dimensions")
    for key, name in (("dba", "DBA"), ("alpha_qe", "alpha-QE")):
        if key in result.config:
            lines.append(f"{name}: {result.config[key]['neighbours']} neighbours, alpha {result.config[key]['alpha']:g}")
    lines.append(", ".join(f"{step.replace('_', ' ')} {value:.2f} s" for step, value in result.config["seconds"].items()))
    for line in lines:
        results.print(line, soft_wrap=True, highlight=False)
    warnings = [f"[yellow]skipped[/yellow] {path}: {reason}" for path, reason in result.skipped[:10]]
    if len(result.skipped) > 10:
        warnings.append(f"[yellow]... and {len(result.skipped) - 10} more skipped[/yellow]")
    warnings += [f"[yellow]note:[/yellow] {note}" for note in result.notes]
    for line in warnings:
        console.print(line, soft_wrap=True, highlight=False)


def reranking(qe: int, qe_alpha: float, dba: int, dba_alpha: float) -> Reranking:
    """The re-ranking options (imported here: numpy stays out of the command line's start)."""
    from cbir.search.reranking import Reranking

    return Reranking(qe, qe_alpha, dba, dba_alpha)


@evaluate_app.command()
def labeled(
    data: Path = typer.Argument(..., help="Folder of class subfolders, or the root the --labels file names are relative to."),
    labels: Optional[Path] = typer.Option(None, help="CSV of filename,class_id[,class_name] (file names relative to DATA)."),
    queries: Optional[Path] = typer.Option(None, help="Query split: a CSV like --labels, or a folder of class subfolders."),
    database: Optional[Path] = typer.Option(None, help="Database split (default: the labeled images that are not queries)."),
    k: list[int] = typer.Option([1, 5, 10], "-k", min=1, help="Cut-offs for P@k, R@k and mAP@k (1 or more); repeatable."),
    backbone: Optional[str] = BackboneOption,
    pooling: Optional[str] = PoolingOption,
    gem_p: Optional[float] = GemOption,
    size: Optional[int] = SizeOption,
    multiscale: Optional[bool] = MultiscaleOption,
    weights: Optional[Path] = WeightsOption,
    encoder: Optional[Path] = EncoderFileOption,
    whiten: bool = WhitenOption,
    whiten_on: Optional[Path] = WhitenOnOption,
    whiten_dim: Optional[int] = WhitenDimOption,
    qe: int = QeOption,
    qe_alpha: float = QeAlphaOption,
    dba: int = DbaOption,
    dba_alpha: float = DbaAlphaOption,
    json_file: Optional[Path] = JsonOption,
    report: Optional[Path] = ReportOption,
    cache: Optional[Path] = CacheOption,
    batch_size: int = BatchOption,
    workers: Optional[int] = WorkersOption,
) -> None:
    """Class-level retrieval: leave-one-out (every image queries all others) or queries against a database."""
    from cbir.evaluation import protocols

    run_protocol(
        lambda: protocols.labeled(data, labels, queries, database, tuple(sorted(set(k)))),
        (backbone, pooling, gem_p, size, multiscale, weights, encoder),
        whiten, whiten_on, whiten_dim, reranking(qe, qe_alpha, dba, dba_alpha), json_file, report, cache, batch_size, workers,
    )


@evaluate_app.command()
def ukbench(
    folder: Path = typer.Argument(..., help="Folder of ukbenchNNNNN.jpg images (groups of 4)."),
    backbone: Optional[str] = BackboneOption,
    pooling: Optional[str] = PoolingOption,
    gem_p: Optional[float] = GemOption,
    size: Optional[int] = SizeOption,
    multiscale: Optional[bool] = MultiscaleOption,
    weights: Optional[Path] = WeightsOption,
    encoder: Optional[Path] = EncoderFileOption,
    whiten: bool = WhitenOption,
    whiten_on: Optional[Path] = WhitenOnOption,
    whiten_dim: Optional[int] = WhitenDimOption,
    qe: int = QeOption,
    qe_alpha: float = QeAlphaOption,
    dba: int = DbaOption,
    dba_alpha: float = DbaAlphaOption,
    json_file: Optional[Path] = JsonOption,
    report: Optional[Path] = ReportOption,
    cache: Optional[Path] = CacheOption,
    batch_size: int = BatchOption,
    workers: Optional[int] = WorkersOption,
) -> None:
    """UKBench: N-S score, the mean number of an object's 4 images in the top 4 (out of 4)."""
    from cbir.evaluation import protocols

    run_protocol(
        lambda: protocols.ukbench(folder),
        (backbone, pooling, gem_p, size, multiscale, weights, encoder),
        whiten, whiten_on, whiten_dim, reranking(qe, qe_alpha, dba, dba_alpha), json_file, report, cache, batch_size, workers,
    )


@evaluate_app.command()
def oxford(
    ground_truth: Path = typer.Argument(..., help="Folder of *_query/_good/_ok/_junk.txt files, or a revisited gnd_*.pkl."),
    images: Path = typer.Option(..., "--images", help="Folder of the data set's images."),
    backbone: Optional[str] = BackboneOption,
    pooling: Optional[str] = PoolingOption,
    gem_p: Optional[float] = GemOption,
    size: Optional[int] = SizeOption,
    multiscale: Optional[bool] = MultiscaleOption,
    weights: Optional[Path] = WeightsOption,
    encoder: Optional[Path] = EncoderFileOption,
    whiten: bool = WhitenOption,
    whiten_on: Optional[Path] = WhitenOnOption,
    whiten_dim: Optional[int] = WhitenDimOption,
    qe: int = QeOption,
    qe_alpha: float = QeAlphaOption,
    dba: int = DbaOption,
    dba_alpha: float = DbaAlphaOption,
    json_file: Optional[Path] = JsonOption,
    report: Optional[Path] = ReportOption,
    cache: Optional[Path] = CacheOption,
    batch_size: int = BatchOption,
    workers: Optional[int] = WorkersOption,
) -> None:
    """Oxford5k/Paris6k (mAP, junk ignored) or revisited ROxford/RParis (Easy/Medium/Hard mAP and mP@k)."""
    from cbir.evaluation import protocols

    run_protocol(
        lambda: protocols.oxford(ground_truth, images),
        (backbone, pooling, gem_p, size, multiscale, weights, encoder),
        whiten, whiten_on, whiten_dim, reranking(qe, qe_alpha, dba, dba_alpha), json_file, report, cache, batch_size, workers,
    )


@evaluate_app.command()
def holidays(
    folder: Path = typer.Argument(..., help="Folder of INRIA Holidays images NNNNNN.jpg."),
    backbone: Optional[str] = BackboneOption,
    pooling: Optional[str] = PoolingOption,
    gem_p: Optional[float] = GemOption,
    size: Optional[int] = SizeOption,
    multiscale: Optional[bool] = MultiscaleOption,
    weights: Optional[Path] = WeightsOption,
    encoder: Optional[Path] = EncoderFileOption,
    whiten: bool = WhitenOption,
    whiten_on: Optional[Path] = WhitenOnOption,
    whiten_dim: Optional[int] = WhitenDimOption,
    qe: int = QeOption,
    qe_alpha: float = QeAlphaOption,
    dba: int = DbaOption,
    dba_alpha: float = DbaAlphaOption,
    json_file: Optional[Path] = JsonOption,
    report: Optional[Path] = ReportOption,
    cache: Optional[Path] = CacheOption,
    batch_size: int = BatchOption,
    workers: Optional[int] = WorkersOption,
) -> None:
    """INRIA Holidays: the first image of each group of 100 ids queries the rest (mAP)."""
    from cbir.evaluation import protocols

    run_protocol(
        lambda: protocols.holidays(folder),
        (backbone, pooling, gem_p, size, multiscale, weights, encoder),
        whiten, whiten_on, whiten_dim, reranking(qe, qe_alpha, dba, dba_alpha), json_file, report, cache, batch_size, workers,
    )


@evaluate_app.command()
def pairs(
    pairs_file: Path = typer.Argument(..., help="Pairs in LFW format (pairs.txt), or lines 'a b same'."),
    images: Path = typer.Option(..., "--images", help="Root the pairs' images are relative to."),
    suffix: str = typer.Option(".jpg", help="Image file suffix for LFW-format names."),
    faces: bool = typer.Option(False, "--faces", help="Embed faces (detect, align, face descriptor) instead of whole images."),
    tta: Optional[str] = typer.Option(None, "--tta", help="With --faces: test-time views none, flip (the default), jitter (8 views, 4x slower) or jitter32 (32 random views, 16x slower)."),
    face_encoder: Optional[str] = typer.Option(None, "--face-encoder", help="With --faces: fusion (the default: dlib_resnet_v1 and mobilefacenet together), dlib_resnet_v1 or mobilefacenet."),
    far: float = typer.Option(1e-3, help="False-accept rate for the TAR@FAR figure."),
    backbone: Optional[str] = BackboneOption,
    pooling: Optional[str] = PoolingOption,
    gem_p: Optional[float] = GemOption,
    size: Optional[int] = SizeOption,
    multiscale: Optional[bool] = MultiscaleOption,
    weights: Optional[Path] = WeightsOption,
    encoder: Optional[Path] = EncoderFileOption,
    json_file: Optional[Path] = JsonOption,
    cache: Optional[Path] = CacheOption,
    batch_size: int = BatchOption,
    workers: Optional[int] = WorkersOption,
) -> None:
    """Verification: k-fold accuracy (threshold from the other folds), ROC AUC and TAR@FAR."""
    from cbir.evaluation.protocols import evaluate_pairs

    json_file, cache = (path.expanduser() if path is not None else None for path in (json_file, cache))
    with user_errors():
        options = (backbone, pooling, gem_p, size, multiscale, weights, encoder)
        if faces and any(option is not None for option in options):
            raise ValueError("--faces uses the face encoder: drop the image encoder options")
        if (tta is not None or face_encoder is not None) and not faces:
            raise ValueError("--tta and --face-encoder are face options: add --faces")
        choice = None if faces else encoder_choice(*options)
        with progress_bar("embedding") as update:
            result = evaluate_pairs(pairs_file, images, suffix, choice, far, cache, batch_size, workers, update, face_tta=tta, face_encoder=face_encoder)
        print_result(result)
        if json_file is not None:
            write_json(json_file, result.to_dict())
            console.print(f"metrics written to {json_file}")


@evaluate_app.command()
def objects(
    data: Path = typer.Argument(..., help="Folder of the photos; file names in --objects are relative to it."),
    objects_file: Path = typer.Option(..., "--objects", help="CSV, one row per box: filename, class_name, xmin, ymin, xmax, ymax[, difficult] (VOC 1-based pixels)."),
    detector: Optional[str] = typer.Option(None, "--detector", help="yolox-nano (default, shipped) or a YOLOX / YOLOv8 ONNX file."),
    detector_format: Optional[str] = typer.Option(None, "--detector-format", help="yolox, yolox-decoded or yolov8 (default: from the model's output shape)."),
    regions: str = typer.Option("crop", "--regions", help="crop: re-encode each box (default: better on voc_dev); pooled: from the feature map of the photo's one forward pass."),
    min_score: float = typer.Option(0.3, "--min-score", help="Lowest detector score of an indexed region."),
    max_regions: int = typer.Option(100, "--max-regions", help="Most regions per photo (best scores first)."),
    min_box: float = typer.Option(8.0, "--min-box", help="Drop detected boxes whose shorter side is below this many pixels."),
    backbone: Optional[str] = BackboneOption,
    pooling: Optional[str] = PoolingOption,
    gem_p: Optional[float] = GemOption,
    size: Optional[int] = SizeOption,
    multiscale: Optional[bool] = MultiscaleOption,
    weights: Optional[Path] = WeightsOption,
    encoder: Optional[Path] = EncoderFileOption,
    json_file: Optional[Path] = JsonOption,
    batch_size: int = BatchOption,
) -> None:
    """Object-level retrieval: object and multi-class queries, whole-image vs region index, and the detector's AP50."""
    from cbir.detectors import DetectionSettings, load_detector
    from cbir.evaluation.objects import evaluate_objects

    with user_errors():
        choice = encoder_choice(backbone, pooling, gem_p, size, multiscale, weights, encoder)
        settings = DetectionSettings(score_threshold=min_score, max_boxes=max_regions, min_size=min_box)
        try:
            found = load_detector(detector, settings, detector_format)
        except ImportError as error:
            raise ValueError(str(error)) from None
        with progress_bar("detecting and describing") as update:
            result = evaluate_objects(data, objects_file, choice.build(), choice.describe(), found, regions, batch_size, update)
        print_result(result)
        if json_file is not None:
            write_json(json_file, result.to_dict())
            console.print(f"metrics written to {json_file}")


@evaluate_app.command()
def medmnist(
    data: Path = typer.Argument(..., help="A MedMNIST .npz file (2-D, single-label: {split}_images and {split}_labels)."),
    split: str = typer.Option("test", help="Split whose images are the queries."),
    database: str = typer.Option("train", help="Split that is searched."),
    backbone: Optional[str] = BackboneOption,
    pooling: Optional[str] = PoolingOption,
    gem_p: Optional[float] = GemOption,
    size: Optional[int] = SizeOption,
    multiscale: Optional[bool] = MultiscaleOption,
    weights: Optional[Path] = WeightsOption,
    encoder: Optional[Path] = EncoderFileOption,
    json_file: Optional[Path] = JsonOption,
    report: Optional[Path] = typer.Option(None, "--report", help="Write the most/least similar cases of a few queries (PNG, HTML, JSON) into this folder."),
    report_queries: int = typer.Option(6, "--report-queries", help="Queries shown in --report."),
    k: int = typer.Option(5, "-k", min=1, help="Most and least similar cases shown per query in --report."),
    cache: Optional[Path] = CacheOption,
    batch_size: int = BatchOption,
) -> None:
    """Mahbod et al. 2024: test images query the train split; ACC@1/3/5, mMV@5, mAP@5 and mAP."""
    from cbir.evaluation.medmnist import evaluate_medmnist

    with user_errors():
        choice = encoder_choice(backbone, pooling, gem_p, size, multiscale, weights, encoder)
        with progress_bar("encoding") as update:
            result = evaluate_medmnist(data, choice, split, database, cache, batch_size, update)
        print_result(result)
        if json_file is not None:
            write_json(json_file, result.to_dict())
            console.print(f"metrics written to {json_file}")
        if report is not None:
            from cbir.medical.medmnist_report import write_medmnist_report

            page = write_medmnist_report(result, data, split, database, report, report_queries, k)
            console.print(f"report written to {page}")


from cbir.commands.evaluate_videos import videos  # noqa: E402  (registered here, defined in its own module)

evaluate_app.command()(videos)
