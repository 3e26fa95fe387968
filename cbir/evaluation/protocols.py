"""The evaluation protocols: each reads a data set's layout and ground truth into a ``Benchmark``.

* ``labeled``: class subfolders, or a root plus a CSV (``filename,class_id[,class_name]``);
  leave-one-out, or explicit query and database splits.
* ``ukbench``: groups of 4 consecutive images; the N-S score.
* ``oxford``: Oxford5k/Paris6k text ground truth, or the revisited ``gnd_*.pkl``
  with its Easy/Medium/Hard setups; junk ignored, queries cropped to their box.
* ``holidays``: INRIA Holidays naming; the first image of each group of 100 ids is the query.
* ``pairs``: verification on an LFW-format pairs file (``evaluate_pairs``).
"""

from __future__ import annotations

import csv
import pickle
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from cbir.encoders.encoder import DEFAULT_BATCH_SIZE
from cbir.evaluation.benchmark import Benchmark, EvaluationResult, LabelTruth, ListTruth, QueryScores, image_files
from cbir.evaluation.descriptors import EncoderChoice, ImageRef, ProgressCallback, describe
from cbir.evaluation.pairs import read_pairs, score_pairs, verification_report
from cbir.io.images import is_image_path

REVISITED_SETUPS = {
    "Easy": (("easy",), ("junk", "hard")),
    "Medium": (("easy", "hard"), ("junk",)),
    "Hard": (("hard",), ("junk", "easy")),
}


# labeled ----------------------------------------------------------------------
def read_labeled(source: str | Path, root: str | Path | None = None) -> tuple[list[Path], list[str], dict[str, str]]:
    """(paths, class ids, class id -> name) of a labels CSV or a folder of class subfolders.

    CSV rows are ``filename,class_id[,class_name]`` with file names relative
    to ``root`` (default: the CSV's folder); a first row starting with
    ``filename`` is a header.
    """
    source = Path(source)
    if source.is_dir():
        classes = sorted(folder for folder in source.iterdir() if folder.is_dir())
        if not classes:
            raise ValueError(f"{source} has no class subfolders: give a folder of class folders, or --labels CSV")
        paths, labels = [], []
        for folder in classes:
            members = sorted(path for path in folder.rglob("*") if path.is_file() and is_image_path(path))
            paths += members
            labels += [folder.name] * len(members)
        if not paths:
            raise ValueError(f"the class subfolders of {source} hold no images")
        return paths, labels, {name: name for name in labels}
    if not source.is_file():
        raise FileNotFoundError(f"{source} is neither a labels CSV nor a folder of class subfolders")
    root = Path(root) if root is not None else source.parent
    with open(source, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() == "filename":
        rows = rows[1:]
    if not rows:
        raise ValueError(f"{source} lists no images")
    paths, labels, names = [], [], {}
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise ValueError(f"{source}: row {number} should be 'filename,class_id[,class_name]'")
        paths.append(root / row[0].strip())
        labels.append(row[1].strip())
        names.setdefault(row[1].strip(), row[2].strip() if len(row) > 2 and row[2].strip() else row[1].strip())
    return paths, labels, names


def labeled(
    data: str | Path,
    labels: str | Path | None = None,
    queries: str | Path | None = None,
    database: str | Path | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> Benchmark:
    """Class-level retrieval: every image queries all others, or ``queries`` against ``database``.

    ``data`` is a folder of class subfolders, or the root that the file names
    of ``labels`` (a CSV) are relative to. ``queries`` and ``database`` are
    CSVs (relative to ``data``) or folders of class subfolders; given one,
    the other is the rest of the labeled images.
    """
    data = Path(data)

    def read(source: str | Path | None) -> tuple[list[Path], list[str], dict[str, str]] | None:
        return None if source is None else read_labeled(source, data)

    split_queries, split_database = read(queries), read(database)
    everything = None
    if split_queries is None or split_database is None:
        everything = read_labeled(labels if labels is not None else data, data)
    names: dict[str, str] = {}
    for part in (everything, split_queries, split_database):
        if part is not None:
            names.update(part[2])
    config = {"data": str(data), "labels": str(labels) if labels else None}
    if split_queries is None and split_database is None:
        paths, classes, _ = everything
        refs = [ImageRef(path) for path in paths]
        config["split"] = "leave-one-out"
        return _labeled_benchmark(refs, classes, refs, classes, np.arange(len(refs)), names, ks, config)
    if split_queries is None:
        split_queries = _rest(everything, split_database)
    if split_database is None:
        split_database = _rest(everything, split_queries)
    config.update({"split": "queries against database", "queries_from": str(queries or "the rest"), "database_from": str(database or "the rest")})
    query_refs = [ImageRef(path) for path in split_queries[0]]
    database_refs = [ImageRef(path) for path in split_database[0]]
    return _labeled_benchmark(query_refs, split_queries[1], database_refs, split_database[1], None, names, ks, config)


def _rest(everything, part) -> tuple[list[Path], list[str], dict[str, str]]:
    taken = {path.resolve() for path in part[0]}
    kept = [(path, label) for path, label in zip(everything[0], everything[1]) if path.resolve() not in taken]
    if not kept:
        raise ValueError("the split leaves no images on the other side")
    return [path for path, _ in kept], [label for _, label in kept], everything[2]


def _labeled_benchmark(query_refs, query_labels, database_refs, database_labels, exclude, names, ks, config) -> Benchmark:
    query_labels, database_labels = np.asarray(query_labels), np.asarray(database_labels)
    truth = LabelTruth(query_labels, database_labels)
    return Benchmark(
        "labeled", database_refs, query_refs, {"": truth}, summarise_labeled, ks=tuple(ks), exclude=exclude,
        query_labels=query_labels, database_labels=database_labels, class_names=names, config=config,
    )


def summarise_labeled(scores: dict[str, QueryScores]) -> dict[str, float]:
    """mAP over the full ranking, mAP@k, P@k, Recall@k and MAP@R, in percent."""
    s = scores[""]
    summary = {"mAP": s.mean(s.average_precision)}
    summary.update({f"mAP@{k}": s.mean(v) for k, v in s.average_precision_at.items()})
    summary.update({f"P@{k}": s.mean(v) for k, v in s.precision.items()})
    summary.update({f"R@{k}": s.mean(v) for k, v in s.recall.items()})
    summary["MAP@R"] = s.mean(s.map_at_r)
    return summary


# UKBench ----------------------------------------------------------------------
def _number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    if not digits:
        raise ValueError(f"{path.name}: expected a number in the file name")
    return int(digits[-1])


def ukbench(folder: str | Path) -> Benchmark:
    """UKBench: images ``ukbenchNNNNN.jpg``, object = NNNNN // 4; every image queries all (itself included)."""
    files = sorted(image_files(folder), key=_number)
    groups = np.array([_number(path) // 4 for path in files])
    _, counts = np.unique(groups, return_counts=True)
    if (counts != 4).any():
        raise ValueError(f"{folder}: UKBench groups need 4 images each (numbers 4g..4g+3); found groups of {sorted(set(counts))}")
    refs = [ImageRef(path) for path in files]
    return Benchmark(
        "ukbench", refs, refs, {"": LabelTruth(groups, groups)}, summarise_ukbench, ks=(1, 4),
        query_labels=groups, database_labels=groups, config={"data": str(folder), "groups": int(len(counts))},
    )


def summarise_ukbench(scores: dict[str, QueryScores]) -> dict[str, float]:
    """N-S score (mean number of the 4 group images in the top 4, out of 4), plus mAP and P@1 in percent."""
    s = scores[""]
    return {"N-S": float(np.mean(s.hits[4])), "mAP": s.mean(s.average_precision), "P@1": s.mean(s.precision[1])}


# INRIA Holidays ---------------------------------------------------------------
def holidays(folder: str | Path) -> Benchmark:
    """INRIA Holidays: ``NNNNNN.jpg``, group = NNNNNN // 100, the lowest number of a group is its query.

    Each query ranks the whole set without itself; AP is the trapezoid AP of
    the Holidays evaluation code.
    """
    files = sorted(image_files(folder), key=_number)
    groups = np.array([_number(path) // 100 for path in files])
    query_rows = np.array([int(np.flatnonzero(groups == group)[0]) for group in np.unique(groups)])
    refs = [ImageRef(path) for path in files]
    return Benchmark(
        "holidays", refs, [refs[row] for row in query_rows], {"": LabelTruth(groups[query_rows], groups)},
        summarise_trapezoid, exclude=query_rows, query_labels=groups[query_rows], database_labels=groups,
        config={"data": str(folder), "queries": int(len(query_rows))},
    )


def summarise_trapezoid(scores: dict[str, QueryScores]) -> dict[str, float]:
    """mAP (trapezoid AP as in the Oxford/Holidays code) for each setup, in percent."""
    return {_named("mAP", setup): s.mean(s.trapezoid_average_precision) for setup, s in scores.items()}


def _named(metric: str, setup: str) -> str:
    return f"{setup} {metric}" if setup else metric


# Oxford / Paris -----------------------------------------------------------------
def oxford(ground_truth: str | Path, images: str | Path, ks: Sequence[int] = (1, 5, 10)) -> Benchmark:
    """Oxford5k/Paris6k: a folder of ``*_query/good/ok/junk.txt`` files, or a revisited ``gnd_*.pkl``."""
    ground_truth, images = Path(ground_truth), Path(images)
    if not images.is_dir():
        raise FileNotFoundError(f"{images} is not the folder of the data set's images")
    if ground_truth.suffix == ".pkl":
        return _revisited(ground_truth, images, ks)
    if ground_truth.is_dir():
        return _oxford_text(ground_truth, images)
    raise FileNotFoundError(f"{ground_truth}: give the folder of *_query.txt files or a revisited gnd_*.pkl")


def _image_index(images: Path) -> dict[str, Path]:
    return {path.stem: path for path in image_files(images)}


def _oxford_text(folder: Path, images: Path) -> Benchmark:
    query_files = sorted(folder.glob("*_query.txt"))
    if not query_files:
        raise ValueError(f"no *_query.txt files in {folder}")
    by_name = _image_index(images)
    names = sorted(by_name)
    position = {name: i for i, name in enumerate(names)}
    queries, positives, junk, missing = [], [], [], set()

    def listed(stem: str, kind: str) -> list[int]:
        path = folder / f"{stem}_{kind}.txt"
        entries = path.read_text().split() if path.is_file() else []
        missing.update(entry for entry in entries if entry not in position)
        return [position[entry] for entry in entries if entry in position]

    for query_file in query_files:
        stem = query_file.name.removesuffix("_query.txt")
        fields = query_file.read_text().split()
        if len(fields) != 5:
            raise ValueError(f"{query_file}: expected 'image x1 y1 x2 y2'")
        image = fields[0].removeprefix("oxc1_")
        if image not in by_name:
            raise ValueError(f"{query_file}: query image {image} is not in {images}")
        queries.append(ImageRef(by_name[image], tuple(float(v) for v in fields[1:])))
        positives.append(listed(stem, "good") + listed(stem, "ok"))
        junk.append(listed(stem, "junk"))
    config = {"ground_truth": str(folder), "images": str(images), "queries": len(queries)}
    if missing:
        config["ground_truth_images_missing"] = len(missing)
    truth = ListTruth(positives, junk, len(names))
    database = [ImageRef(by_name[name]) for name in names]
    return Benchmark("oxford", database, queries, {"": truth}, summarise_trapezoid, config=config)


class _GroundTruthUnpickler(pickle.Unpickler):
    """Reads ground-truth pickles: plain containers and numpy arrays only, never arbitrary objects."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "slice"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"ground-truth file refers to {module}.{name}, which is not allowed")


def read_revisited(path: str | Path) -> dict:
    """The ``imlist``, ``qimlist`` and ``gnd`` of a revisited Oxford/Paris ground-truth pickle."""
    with open(path, "rb") as handle:
        data = _GroundTruthUnpickler(handle).load()
    if not isinstance(data, dict) or not {"imlist", "qimlist", "gnd"} <= set(data):
        raise ValueError(f"{path} is not a revisited ground-truth file (needs imlist, qimlist and gnd)")
    return data


def _revisited(path: Path, images: Path, ks: Sequence[int]) -> Benchmark:
    data = read_revisited(path)

    def image(name: str) -> Path:
        file = images / f"{name}.jpg"
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing: --images must hold the {len(data['imlist'])} images of {path.name}")
        return file

    database = [ImageRef(image(name)) for name in data["imlist"]]
    queries = [
        ImageRef(image(name), tuple(float(v) for v in entry["bbx"]) if entry.get("bbx") is not None else None)
        for name, entry in zip(data["qimlist"], data["gnd"])
    ]
    truths = {}
    for setup, (positive_keys, junk_keys) in REVISITED_SETUPS.items():
        positives = [np.concatenate([np.asarray(g.get(k, []), dtype=np.int64) for k in positive_keys]) for g in data["gnd"]]
        junk = [np.concatenate([np.asarray(g.get(k, []), dtype=np.int64) for k in junk_keys]) for g in data["gnd"]]
        truths[setup] = ListTruth(positives, junk, len(database))
    config = {"ground_truth": str(path), "images": str(images), "queries": len(queries), "revisited": True}
    return Benchmark("oxford", database, queries, truths, summarise_revisited, ks=tuple(ks), config=config)


def summarise_revisited(scores: dict[str, QueryScores]) -> dict[str, float]:
    """mAP and mP@k for the Easy, Medium and Hard setups, as the revisited evaluation code computes them."""
    summary = {}
    for setup, s in scores.items():
        summary[f"{setup} mAP"] = s.mean(s.trapezoid_average_precision)
        summary.update({f"{setup} mP@{k}": s.mean(v) for k, v in s.revisited_precision.items()})
    return summary


# pair verification ------------------------------------------------------------
def evaluate_pairs(
    pairs_file: str | Path,
    images: str | Path,
    suffix: str = ".jpg",
    choice: EncoderChoice | None = None,
    far: float = 1e-3,
    cache_dir: Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    face_tta: str | None = None,
    face_encoder: str | None = None,
) -> EvaluationResult:
    """Verification on an LFW-format pairs file, with an image encoder or (``choice`` None) a face encoder
    (``face_encoder`` by name and ``face_tta``, its test-time views; ``cbir.faces`` defaults when None).

    Pairs where an image yields no vector (unreadable, or no face found)
    count as wrong in the k-fold accuracy and are reported.
    """
    started = time.perf_counter()
    pairs = read_pairs(pairs_file, images, suffix)
    paths = list(dict.fromkeys(path for pair in pairs for path in (pair.first, pair.second)))
    if choice is None:
        from cbir.faces.analyzer import FaceAnalyzer, FaceSpec
        from cbir.faces.descriptors import face_embedder

        analyzer = FaceAnalyzer(FaceSpec(tta=face_tta, encoder=face_encoder))
        embed = _with_progress(face_embedder(analyzer), len(paths), progress)
        encoder_config = {
            "faces": "face photo rule (central face, CNN detector second, else the centre), aligned as the encoder needs",
            **analyzer.space_record(),
            "detector": analyzer.detector.record(),
        }
    else:
        described = describe(choice, paths, cache_dir, batch_size, workers, progress)
        table = {paths[position]: vector for position, vector in zip(described.kept, described.vectors)}
        embed, encoder_config = table.get, choice.describe()
    scores, failed = score_pairs(pairs, embed)
    report = verification_report(scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]), far)
    far_name = f"TAR@FAR={far:g}"
    metrics = {"accuracy": report["accuracy"], "accuracy_std": report["accuracy_std"], "AUC": report["roc_auc"], far_name: report[far_name]}
    config = {
        "encoder": encoder_config,
        "pairs_file": str(pairs_file),
        "pairs": report["pairs"],
        "folds": len(report["fold_accuracies"]),
        "fold_accuracies": report["fold_accuracies"],
        "thresholds": report["thresholds"],
        "tar_threshold": report["tar_threshold"],
        "seconds": {"embedding_and_scoring": round(time.perf_counter() - started, 3)},
    }
    notes = []
    if len(report["fold_accuracies"]) == 1:
        notes.append("one fold only: the accuracy threshold was chosen on the evaluated pairs themselves")
    if failed:
        notes.append(f"{len(failed)} of {len(pairs)} pairs had an image without a vector; they count as wrong")
    return EvaluationResult("pairs", metrics, config, notes)


def _with_progress(embed, total: int, progress: ProgressCallback | None):
    done = 0

    def counted(path: Path):
        nonlocal done
        vector = embed(path)
        done += 1
        if progress is not None:
            progress(done, total)
        return vector

    return counted
