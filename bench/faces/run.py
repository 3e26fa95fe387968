"""Face recognition benchmark: LFW pairs (3 folds), ORL identification, a descriptor head, timing,
thresholds, and an annotated group photo. Writes bench/results/faces.md.

    PYTHONPATH=$PWD python bench/faces/run.py [--data ../shared/data] [--workers 2] [--quick] [--lean] [--cache DIR]

Every variant is computed in the same run as the baseline: dlib used as its
examples show (HOG detector with one upsampling, the first face, 5-point
chip, Euclidean distance, a pair without a detected face counted wrong).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import pickle
import shlex
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import default_data, machine_summary
from cbir.collection.collection import Collection
from cbir.evaluation import metrics
from cbir.evaluation.pairs import read_pairs, verification_report
from cbir.faces.alignment import TTA_VIEWS, View
from cbir.faces.analyzer import DEFAULT_TTA, FaceAnalyzer, FaceSpec
from cbir.faces.annotate import annotate_faces
from cbir.faces.calibration import labeled_pair_scores, threshold_for_far
from cbir.faces.encoders import l2_normalise
from cbir.faces.models import hog_detector, landmark_model, recognition_model
from cbir.faces.people import People, best_matches
from cbir.progress import console, progress_bar

ROOT = Path(__file__).resolve().parents[2]
FAR = 1e-3


# per-image work, run in worker processes ---------------------------------------------------------
_analyzer: FaceAnalyzer | None = None
_yunet: FaceAnalyzer | None = None
_baseline = True
REUSED: list[str] = []  # descriptors read from --cache, for the header


def _start_worker(views: str, yunet_model: str | None, baseline: bool) -> None:
    global _analyzer, _yunet, _baseline
    _baseline = baseline
    _analyzer = FaceAnalyzer(FaceSpec(tta=views))
    _yunet = FaceAnalyzer(FaceSpec(detector="yunet", detector_model=yunet_model, tta="none")) if yunet_model else None


def plain_dlib_descriptor(pixels: np.ndarray) -> np.ndarray | None:
    """The baseline: dlib as in its examples (first HOG face, upsampled once; raw 128-d descriptor)."""
    rects = hog_detector()(pixels, 1)
    if not rects:
        return None
    shape = landmark_model()(pixels, rects[0])
    return np.asarray(recognition_model().compute_face_descriptor(pixels, shape), dtype=np.float32)


def describe_image(path: str) -> dict:
    """Every descriptor the LFW and ORL variants need for one image."""
    pixels = _analyzer.pixels(path)
    result = {"baseline": plain_dlib_descriptor(pixels) if _baseline else None}
    crop = _analyzer.locate_main_face(pixels, face_crop=True)
    largest = _analyzer.locate_main_face(pixels, face_crop=False)
    result["crop_views"] = _analyzer.view_vectors(pixels, [crop.box])[1][0]
    result["crop_detector"] = crop.detector
    result["largest_views"] = None
    if largest is not None:
        same_box = largest.box == crop.box
        result["largest_views"] = result["crop_views"] if same_box else _analyzer.view_vectors(pixels, [largest.box])[1][0]
    if _yunet is not None:
        found = _yunet.main_face(pixels, face_crop=True)
        result["yunet"], result["yunet_detector"] = found.vector, found.detector
    return result


def describe_all(
    paths: list[Path], workers: int, views: str, yunet_model: str | None, baseline: bool, label: str, cache: Path | None
) -> tuple[dict[Path, dict], float]:
    """(``describe_image`` of every path with the test-time views ``views``, computed in worker processes,
    and the seconds it took); with ``cache`` (a folder) stored there and reused by a later run over the
    same images (delete the folder after changing ``cbir.faces``)."""
    key = (label, [str(p) for p in paths], [tuple(vars(v).values()) for v in TTA_VIEWS[views]], yunet_model, baseline)
    file = cache / f"{label.split()[0].lower()}.pkl" if cache is not None else None
    if file is not None and file.is_file():
        stored = pickle.loads(file.read_bytes())
        if stored["key"] == key:
            console.print(f"{label}: descriptors read from {file}")
            REUSED.append(f"{label} ({stored['seconds']:.0f} s when computed)")
            return stored["described"], stored["seconds"]
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    described: dict[Path, dict] = {}
    with concurrent.futures.ProcessPoolExecutor(workers, context, _start_worker, (views, yunet_model, baseline)) as pool:
        with progress_bar(label) as update:
            for path, result in zip(paths, pool.map(describe_image, [str(p) for p in paths], chunksize=8)):
                described[path] = result
                update(len(described), len(paths))
    seconds = time.perf_counter() - started
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(pickle.dumps({"key": key, "described": described, "seconds": seconds}))
    return described, seconds


def view_sets(computed: str) -> list[str]:
    """The test-time view sets whose views are all among the views ``computed``."""
    return [name for name, views in TTA_VIEWS.items() if set(views) <= set(TTA_VIEWS[computed])]


def mean_of_views(vectors: np.ndarray | None, view_set: str, computed: str) -> np.ndarray | None:
    """The descriptor of test-time views ``view_set`` from the ``vectors`` of the views ``computed``."""
    if vectors is None:
        return None
    rows = [TTA_VIEWS[computed].index(view) for view in TTA_VIEWS[view_set]]
    return l2_normalise(vectors[rows].mean(axis=0, keepdims=True))[0]


# LFW --------------------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    vectors: dict[Path, np.ndarray | None]
    metric: str = "cosine"


def pair_scores(pairs, vectors: dict, metric: str) -> np.ndarray:
    scores = np.full(len(pairs), np.nan)
    for position, pair in enumerate(pairs):
        first, second = vectors[pair.first], vectors[pair.second]
        if first is None or second is None:
            continue
        if metric == "euclidean":
            scores[position] = -float(np.linalg.norm(first - second))
        else:
            scores[position] = float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))
    return scores


def rule_name(tta: str) -> str:
    """The row name of the face photo rule with test-time views ``tta``, marking the library's default."""
    name = {"none": "single view", "flip": "flip", "jitter": "jitter (8 views)"}[tta]
    return f"face photo rule + {name}" + (" (default)" if tta == DEFAULT_TTA else "")


def lfw_pairs(data: Path, quick: bool) -> tuple[list, list[Path]]:
    """The LFW dev pairs (with ``quick``, 200 per fold) and the images they use."""
    folder = data / "lfw_dev"
    pairs = read_pairs(folder / "pairs.txt", folder / "lfw-deepfunneled")
    if quick:
        pairs = [p for fold in range(3) for p in [p for p in pairs if p.fold == fold][:200]]
    return pairs, sorted({p.first for p in pairs} | {p.second for p in pairs})


def lfw_section(
    data: Path, workers: int, views: str, yunet_model: str | None, quick: bool, cache: Path | None
) -> tuple[list[str], dict]:
    pairs, paths = lfw_pairs(data, quick)
    described, seconds = describe_all(paths, workers, views, yunet_model, True, "LFW images" + (" (quick)" if quick else ""), cache)
    crop = {p: d["crop_views"] for p, d in described.items()}
    variants = [
        Variant("plain dlib (baseline): HOG, first face, Euclidean distance", {p: d["baseline"] for p, d in described.items()}, "euclidean"),
        Variant("plain dlib, cosine similarity", {p: d["baseline"] for p, d in described.items()}),
        Variant("largest face, normalised, single view", {p: mean_of_views(d["largest_views"], "none", views) for p, d in described.items()}),
    ] + [Variant(rule_name(tta), {p: mean_of_views(v, tta, views) for p, v in crop.items()}) for tta in view_sets(views)]
    if yunet_model:
        variants.append(Variant("YuNet detector + face photo rule + single view", {p: d["yunet"] for p, d in described.items()}))
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    reports = {v.name: verification_report(pair_scores(pairs, v.vectors, v.metric), same, folds, far=FAR) for v in variants}
    baseline_error = 100 - reports[variants[0].name]["accuracy"]
    lines = [
        f"{len(pairs)} pairs ({int(same.sum())} same, {int((~same).sum())} different) in {len(set(folds))} folds, "
        f"{len(paths)} images; threshold of each fold chosen on the other folds. Face photo rule: the face covering the centre, "
        "dlib's CNN detector when HOG finds none, then the centre of the photo. Error ratio = baseline error / variant error.",
        "",
        f"| variant | accuracy % (± std over folds) | ROC AUC % | TAR@FAR={FAR:g} % | pairs without a face | error ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variant in variants:
        r = reports[variant.name]
        error = 100 - r["accuracy"]
        ratio = f"{baseline_error / error:.2f}x" if error > 0 else "-"
        lines.append(
            f"| {variant.name} | {r['accuracy']:.2f} ± {r['accuracy_std']:.2f} | {r['roc_auc']:.3f} | "
            f"{r[f'TAR@FAR={FAR:g}']:.2f} | {r['pairs_without_embedding']} | {ratio} |"
        )
    detectors = Counter(d["crop_detector"] for d in described.values())
    no_face = sum(d["baseline"] is None for d in described.values())
    lines += [
        "",
        f"Face photo rule, which detector gave the face: {dict(detectors)}; the baseline found no face in {no_face} images. "
        f"Descriptors of all variants for the {len(paths)} images took {seconds:.0f} s with {workers} worker processes.",
    ]
    if "jitter" not in view_sets(views):
        lines.append("Jitter (8 views) was not measured on LFW in this run (`--lean`; see ORL).")
    if not yunet_model:
        lines.append("The YuNet detector was not measured on LFW in this run (`--lean` or `--no-yunet`; see Timing).")
    if yunet_model:
        lines.append(f"YuNet run, which detector gave the face: {dict(Counter(d['yunet_detector'] for d in described.values()))}.")
    default = rule_name(DEFAULT_TTA)
    default_scores = pair_scores(pairs, next(v for v in variants if v.name == default).vectors, "cosine")
    return lines, {"scores": default_scores, "same": same, "described": described, "reports": reports, "default": default}


def dense_section(data: Path, workers: int, quick: bool, cache: Path | None) -> list[str]:
    """LFW with the 32 seeded random views of ``jitter32`` (dlib's ``jitter_image`` recipe): accuracy when the
    descriptor averages the first 2, 4, ... 32 of them."""
    pairs, paths = lfw_pairs(data, quick)
    described, seconds = describe_all(paths, workers, "jitter32", None, False, "LFW-dense images" + (" (quick)" if quick else ""), cache)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    lines = [
        "The face photo rule with `--tta jitter32`: 32 views drawn once from a fixed seed as dlib's `jitter_image` draws "
        "them (turned up to 3 degrees, zoomed out up to 3 %, moved up to 2 %, every second one mirrored); the "
        "descriptor is the mean of the first n. Same pairs and folds as above.",
        "",
        f"| views averaged | accuracy % (± std over folds) | ROC AUC % | TAR@FAR={FAR:g} % | wrong pairs |",
        "| --- | --- | --- | --- | --- |",
    ]
    for count in (2, 4, 8, 16, 32):
        vectors = {p: l2_normalise(d["crop_views"][:count].mean(axis=0, keepdims=True))[0] for p, d in described.items()}
        r = verification_report(pair_scores(pairs, vectors, "cosine"), same, folds, far=FAR)
        wrong = round(len(pairs) * (100 - r["accuracy"]) / 100)
        lines.append(f"| {count} | {r['accuracy']:.2f} ± {r['accuracy_std']:.2f} | {r['roc_auc']:.3f} | {r[f'TAR@FAR={FAR:g}']:.2f} | {wrong} |")
    lines += ["", f"The 32 views of the {len(paths)} images took {seconds:.0f} s with {workers} worker processes "
              f"({1000 * seconds * workers / (len(paths) * 32):.0f} ms of one core per view, detection included)."]
    return lines


# ORL --------------------------------------------------------------------------------------------
def orl_section(data: Path, workers: int, cache: Path | None, views: str = "jitter") -> tuple[list[str], dict]:
    folder = data / "orl_faces" / "orl_faces"
    paths = sorted(folder.glob("s*/*.pgm"), key=lambda p: (int(p.parent.name[1:]), int(p.stem)))
    labels = [p.parent.name for p in paths]
    described, _ = describe_all(paths, workers, views, None, False, "ORL images", cache)
    enrolled = np.array([int(p.stem) <= 5 for p in paths])
    lines = [
        f"{len(set(labels))} people x 10 greyscale 92 x 112 photos; images 1-5 of each person enrolled, 6-10 queried "
        f"({int((~enrolled).sum())} queries); the nearest enrolled face names the query.",
        "",
        "| variant | rank-1 % | queries without a face |",
        "| --- | --- | --- |",
    ]
    results = {}
    general = {p: d["largest_views"] for p, d in described.items()}
    crop = {p: d["crop_views"] for p, d in described.items()}
    for name, source, view_set in [("largest face, HOG upsampled once, single view", general, "none")] + [
        (rule_name(tta), crop, tta) for tta in view_sets(views)
    ]:
        vectors = [mean_of_views(source[p], view_set, views) for p in paths]
        gallery = np.stack([v for v, e in zip(vectors, enrolled) if e and v is not None])
        gallery_labels = [lab for lab, v, e in zip(labels, vectors, enrolled) if e and v is not None]
        queries = [(v, lab) for v, lab, e in zip(vectors, labels, enrolled) if not e]
        found = [q for q in queries if q[0] is not None]
        names, _ = best_matches(np.stack([v for v, _ in found]), gallery, gallery_labels)
        correct = sum(n == lab for n, (_, lab) in zip(names, found))
        results[name] = 100 * correct / len(queries)
        lines.append(f"| {name} | {results[name]:.1f} | {len(queries) - len(found)} |")
    detectors = Counter(d["crop_detector"] for d in described.values())
    hog2 = sum(bool(hog_detector()(np.asarray(Image.open(p).convert("RGB")), 2)) for p in paths)
    lines += [
        "",
        f"Small greyscale faces: dlib's HOG detector, which needs faces of 80 px, finds a face in "
        f"{sum(d['largest_views'] is not None for d in described.values())} of {len(paths)} photos when upsampled once and in {hog2} when "
        f"upsampled twice; the face photo rule takes the rest from dlib's CNN detector (upsampled once on photos up to "
        f"400 px) and would fall back to the centre of the photo: {dict(detectors)}.",
    ]
    vectors = np.stack([mean_of_views(described[p]["crop_views"], DEFAULT_TTA, views) for p in paths])
    return lines, {"vectors": vectors, "labels": labels, "rank1": results}


# a head trained on face descriptors ---------------------------------------------------------------
def retrieval_scores(vectors: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """(rank-1 % with images 1-5 enrolled and 6-10 queried, leave-one-out mAP %)."""
    labels_arr = np.asarray(labels)
    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -np.inf)
    ranking = np.argsort(-similarities, axis=1)
    judgement = np.where(labels_arr[None, :] == labels_arr[:, None], metrics.POSITIVE, metrics.NEGATIVE)
    np.fill_diagonal(judgement, metrics.JUNK)
    average_precisions = metrics.average_precision(metrics.ranked_hits(ranking, judgement))
    per_person = len(vectors) // len(set(labels))
    enrolled = np.array([i % per_person < per_person // 2 for i in range(len(vectors))])
    names, _ = best_matches(vectors[~enrolled], vectors[enrolled], list(labels_arr[enrolled]))
    rank1 = np.mean(np.asarray(names) == labels_arr[~enrolled])
    return 100 * float(rank1), 100 * float(np.mean(average_precisions))


def train_head(vectors: np.ndarray, labels: list[str], loss_name: str, seed: int, epochs: int = 40):
    """A linear head (started at the identity) trained with a pytorch-metric-learning loss."""
    import torch
    from pytorch_metric_learning import losses, miners, samplers

    torch.manual_seed(seed)
    head = torch.nn.Linear(vectors.shape[1], vectors.shape[1])
    torch.nn.init.eye_(head.weight)
    torch.nn.init.zeros_(head.bias)
    codes = np.unique(labels, return_inverse=True)[1]
    if loss_name == "contrastive":
        loss_fn, miner = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5), miners.PairMarginMiner(0.0, 0.5)
    else:
        loss_fn, miner = losses.TripletMarginLoss(margin=0.1), miners.TripletMarginMiner(0.1, type_of_triplets="semihard")
    batch_size = min(40, 4 * len(set(codes)))
    sampler = samplers.MPerClassSampler(codes, m=4, batch_size=batch_size, length_before_new_iter=len(codes))
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3)
    inputs, targets = torch.from_numpy(vectors), torch.from_numpy(codes)
    for _ in range(epochs):
        order = list(iter(sampler))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batch = torch.tensor(order[start : start + batch_size])
            embeddings = torch.nn.functional.normalize(head(inputs[batch]), dim=1)
            loss = loss_fn(embeddings, targets[batch], miner(embeddings, targets[batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    def apply(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.nn.functional.normalize(head(torch.from_numpy(x)), dim=1).numpy()

    return apply


def head_lines(orl: dict, seeds: int = 3) -> list[str]:
    vectors, labels = orl["vectors"], np.asarray(orl["labels"])
    people = sorted(set(labels), key=lambda name: int(name[1:]))
    plain = f"off the shelf ({DEFAULT_TTA})"
    rows = {plain: [], "contrastive head": [], "triplet head": []}
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(people)
        half = len(people) // 2
        train, test = set(order[:half]), set(order[half:])
        train_rows = np.array([lab in train for lab in labels])
        test_rows = np.array([lab in test for lab in labels])
        rows[plain].append(retrieval_scores(vectors[test_rows], list(labels[test_rows])))
        for loss_name in ("contrastive", "triplet"):
            head = train_head(vectors[train_rows], list(labels[train_rows]), loss_name, seed)
            rows[f"{loss_name} head"].append(retrieval_scores(head(vectors[test_rows]), list(labels[test_rows])))
    lines = [
        f"A linear 128 -> 128 head, started at the identity, trained for 40 epochs (Adam 1e-3, m-per-class batches of "
        f"10 people x 4) on the descriptors of half the ORL people and evaluated on the other half; mean of {seeds} random splits. "
        "The head is trained here with pytorch-metric-learning directly.",
        "",
        "| descriptor | rank-1 % (5 enrolled / 5 queries) | leave-one-out mAP % |",
        "| --- | --- | --- |",
    ]
    for name, values in rows.items():
        rank1, mean_ap = np.mean(values, axis=0)
        lines.append(f"| {name} | {rank1:.2f} | {mean_ap:.2f} |")
    return lines


# thresholds -------------------------------------------------------------------------------------
def threshold_lines(lfw: dict, orl: dict) -> list[str]:
    lfw_scores, lfw_same = lfw["scores"], lfw["same"]
    orl_scores, orl_same = labeled_pair_scores(orl["vectors"], orl["labels"])
    lines = [
        "Similarity thresholds (cosine of the default descriptors) chosen for a target false-accept rate on one set "
        "and measured on both: a threshold is only as good as the data it was calibrated on.",
        "",
        "| calibrated on | target FAR | threshold | LFW FAR / TAR % | ORL FAR / TAR % |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, scores, same in (("LFW dev pairs", lfw_scores, lfw_same), ("ORL all pairs", orl_scores, orl_same)):
        for far in (1e-2, 1e-3):
            threshold, _, _ = threshold_for_far(scores, same, far)
            measured = []
            for other_scores, other_same in ((lfw_scores, lfw_same), (orl_scores, orl_same)):
                accepted = other_scores >= threshold
                measured.append(f"{100 * accepted[~other_same].mean():.2f} / {100 * accepted[other_same].mean():.2f}")
            lines.append(f"| {name} | {far:g} | {threshold:.4f} | {measured[0]} | {measured[1]} |")
    best = lfw["reports"][lfw["default"]]["thresholds"]
    lines += [
        "",
        f"LFW dev has {int((~lfw_same).sum())} different-person pairs, so a FAR of 1e-3 there means \"accepts none of them\". "
        f"The best-accuracy thresholds of the three folds were {', '.join(f'{t:.4f}' for t in best)}; the default "
        "threshold of an uncalibrated collection is their rounded value.",
    ]
    return lines


# timing -----------------------------------------------------------------------------------------
def timing_lines(data: Path, workers: int, photos: int = 20, indexed: int = 100) -> list[str]:
    sample = sorted((data / "lfw_dev" / "lfw-deepfunneled").glob("*/*.jpg"))[:photos]
    lines = [
        f"Seconds per 250 x 250 LFW photo (one face), one process, mean of {photos} photos "
        f"(wall-clock time on the machine above, shared with other jobs while this ran):",
        "",
        "| step | s/photo |",
        "| --- | --- |",
    ]
    pixels = [FaceAnalyzer.pixels(p) for p in sample]
    timings = {}
    for name, spec in (
        ("HOG detection (upsampled once)", FaceSpec()),
        ("CNN (MMOD) detection (upsampled once)", FaceSpec(detector="cnn")),
    ):
        analyzer = FaceAnalyzer(spec)
        analyzer.detect(pixels[0])  # loads the model
        started = time.perf_counter()
        for image in pixels:
            analyzer.detect(image)
        timings[name] = (time.perf_counter() - started) / len(pixels)
    yunet = data / "weights" / "yunet_face_detector"
    if yunet.is_dir():
        analyzer = FaceAnalyzer(FaceSpec(detector="yunet", detector_model=str(yunet)))
        analyzer.detect(pixels[0])
        started = time.perf_counter()
        for image in pixels:
            analyzer.detect(image)
        timings["YuNet detection"] = (time.perf_counter() - started) / len(pixels)
    for tta in ("none", "flip", "jitter"):
        analyzer = FaceAnalyzer(FaceSpec(tta=tta))
        analyzer.scan(pixels[0])
        started = time.perf_counter()
        for image in pixels:
            analyzer.scan(image)
        timings[f"whole scan (HOG, landmarks, {len(TTA_VIEWS[tta])} view(s))"] = (time.perf_counter() - started) / len(pixels)
    for name, seconds in timings.items():
        lines.append(f"| {name} | {seconds:.3f} |")
    with tempfile.TemporaryDirectory() as folder:
        files = sorted((data / "lfw_dev" / "lfw-deepfunneled").glob("*/*.jpg"))[:indexed]
        with Collection.create(Path(folder) / "c") as store:
            from cbir.faces.pipeline import FacePipeline

            pipeline = FacePipeline()
            report = store.add(files, pipeline=pipeline, workers=workers)
    lines += [
        "",
        f"Indexing {indexed} LFW photos into a collection (`cbir index --faces`, {workers} worker processes, {DEFAULT_TTA}): "
        f"{indexed / report.seconds:.1f} photos/s, {pipeline.counts.describe()}.",
    ]
    return lines


# a group photo ------------------------------------------------------------------------------------
def group_lines(data: Path, out: Path) -> list[str]:
    folder = data / "lfw_dev" / "lfw-deepfunneled"
    people = ["Tony_Blair", "Silvio_Berlusconi", "Wen_Jiabao", "David_Beckham"]
    strangers = ["Hugo_Chavez", "Jiang_Zemin"]
    tiles, expected = [], []
    with tempfile.TemporaryDirectory() as workdir, Collection.create(Path(workdir) / "c") as store:
        directory = People(store)
        for name in people:
            photos = sorted((folder / name).glob("*.jpg"))
            directory.enroll(name, photos[:3], face_crop=True)
            tiles.append(Image.open(photos[-1]).convert("RGB").crop((55, 45, 195, 205)))
            expected.append(name)
        for name in strangers:
            tiles.append(Image.open(sorted((folder / name).glob("*.jpg"))[0]).convert("RGB").crop((55, 45, 195, 205)))
            expected.append("unknown")
        sizes = [240, 200, 260, 220, 230, 210]
        canvas = Image.new("RGB", (3 * 300, 2 * 320), (60, 70, 80))
        centres = []
        for position, (tile, size) in enumerate(zip(tiles, sizes)):
            tile = tile.resize((size, round(size * tile.height / tile.width)))
            x, y = (position % 3) * 300 + (300 - tile.width) // 2, (position // 3) * 320 + 10
            canvas.paste(tile, (x, y))
            centres.append((x + tile.width / 2, y + tile.height / 2))
        found, scan, threshold = directory.identify(canvas)
    annotate_faces(canvas, found, out)
    correct = 0
    for (x, y), name in zip(centres, expected):
        hits = [f for f in found if f.face.box[0] < x < f.face.box[2] and f.face.box[1] < y < f.face.box[3]]
        correct += len(hits) == 1 and hits[0].label == name
    return [
        f"Four people enrolled from 3 LFW photos each; a group photo tiled from another photo of each and of two people "
        f"nobody enrolled (threshold {threshold.describe()}): {scan.describe()}, {correct} of {len(expected)} named "
        f"correctly. Picture: `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}`.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="200 pairs per fold (a check, not the published figures)")
    parser.add_argument(
        "--lean", action="store_true",
        help="LFW with 2 views (none and flip rows) and without the YuNet row, a third of the work; jitter is then measured on ORL only",
    )
    parser.add_argument("--no-yunet", action="store_true", help="leave out the YuNet row of LFW (one more descriptor per image)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faces.md")
    parser.add_argument("--cache", type=Path, help="folder keeping the LFW and ORL descriptors for a later run over the same images")
    parser.add_argument("--dense", action="store_true", help="also LFW with 32 random views per face (jitter32: 16x the descriptor work of flip)")
    args = parser.parse_args()
    if not (args.data / "lfw_dev").is_dir() or not (args.data / "orl_faces").is_dir():
        sys.exit(f"{args.data} lacks lfw_dev/ or orl_faces/: give --data the benchmark data folder")
    yunet = args.data / "weights" / "yunet_face_detector"
    yunet_model = str(yunet) if yunet.is_dir() else None
    lfw_views = "flip" if args.lean else "jitter"
    lfw_yunet = None if args.lean or args.no_yunet else yunet_model
    started = time.perf_counter()
    lfw_text, lfw = lfw_section(args.data, args.workers, lfw_views, lfw_yunet, args.quick, args.cache)
    console.print("\n".join(lfw_text))
    orl_text, orl = orl_section(args.data, args.workers, args.cache)
    console.print("\n".join(orl_text))
    sections = [("LFW verification (lfw_dev, deep-funneled, View 2 folds 1-3)", lfw_text)]
    if args.dense:
        sections.append(("LFW with many test-time views", dense_section(args.data, args.workers, args.quick, args.cache)))
    sections += [
        ("ORL identification", orl_text),
        ("A head trained on face descriptors (ORL, 20 people / 20 people)", head_lines(orl)),
        ("Thresholds", threshold_lines(lfw, orl)),
        ("Timing", timing_lines(args.data, args.workers)),
        ("Group photo", group_lines(args.data, args.out.parent / "faces-group.png")),
    ]
    command = "PYTHONPATH=$PWD python bench/faces/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = [
        "# Faces benchmark",
        "",
        f"Command: `{command.strip()}` ({time.perf_counter() - started:.0f} s). "
        f"Machine: {machine_summary(('dlib-bin', 'opencv-python-headless'))}. Date: {time.strftime('%Y-%m-%d')}."
        + (f" Descriptors read from the cache of an earlier run of this code: {', '.join(REUSED)}." if REUSED else ""),
        "",
        "Faces: dlib's 5-point landmarks, 150 px chips with 25 % padding, dlib's ResNet descriptor "
        "(face_recognition_models). Similarities are cosines of L2-normalised descriptors unless the row says otherwise.",
    ]
    text = header
    for title, lines in sections:
        text += ["", f"## {title}", ""] + lines
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text) + "\n")
    console.print(f"written {args.out}")


if __name__ == "__main__":
    main()
