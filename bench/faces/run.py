"""Face recognition benchmark: LFW pairs (3 folds) and ORL identification for each face encoder (dlib's ResNet,
MobileFaceNet, their fusion) and detector (dlib HOG, YuNet), the fusion weight chosen by the fold protocol,
speed per encoder, thresholds, a descriptor head, and an annotated group photo. Writes bench/results/faces.md.

    PYTHONPATH=$PWD python bench/faces/run.py [--data ../shared/data] [--workers 2] [--quick] [--cache DIR]

The baseline in every table is the previous default: dlib's descriptor with the face photo rule and flip.
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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import default_data, machine_summary
from cbir.collection.collection import Collection
from cbir.evaluation import metrics
from cbir.evaluation.pairs import best_threshold, read_pairs, verification_report
from cbir.faces.alignment import TTA_VIEWS
from cbir.faces.analyzer import DEFAULT_FACE_ENCODER, DEFAULT_TTA, FaceAnalyzer, FaceSpec
from cbir.faces.annotate import annotate_faces
from cbir.faces.calibration import labeled_pair_scores, threshold_for_far
from cbir.faces.encoders import DlibResNetEncoder, l2_normalise, make_face_encoder
from cbir.faces.fusion import DEFAULT_WEIGHTS
from cbir.faces.mobilefacenet import MobileFaceNetEncoder
from cbir.faces.people import People, best_matches
from cbir.progress import console, progress_bar

ROOT = Path(__file__).resolve().parents[2]
FAR = 1e-3
VIEWS = TTA_VIEWS["flip"]  # view 0: the aligned face; view 1: its mirror image
# the weight of dlib's descriptor in the fused similarity, w * dlib + (1 - w) * MobileFaceNet
WEIGHT_GRID = tuple(round(0.05 * i, 2) for i in range(21))
DESCRIBE_VERSION = 2  # bump when describe_hog or describe_yunet change: cached descriptors of another version are recomputed


# per-image work, run in worker processes ---------------------------------------------------------
_dlib: DlibResNetEncoder | None = None
_mfn: MobileFaceNetEncoder | None = None
REUSED: list[str] = []  # descriptors read from --cache, for the header


def _start_worker() -> None:
    global _dlib, _mfn
    _dlib, _mfn = DlibResNetEncoder(), MobileFaceNetEncoder()


def describe_hog(path: str) -> dict:
    """Both views of dlib's and MobileFaceNet's descriptors (MobileFaceNet aligned from dlib's 68 points) of the face
    the face photo rule finds with dlib's HOG detector (the face covering the centre, dlib's CNN detector when HOG
    finds none, then the centre of the photo)."""
    analyzer = _analyzer("hog")
    pixels = analyzer.pixels(path)
    found = analyzer.locate_main_face(pixels, face_crop=True)
    faces = analyzer.face_landmarks(pixels, [found])
    return {
        "hog_detector": found.detector,
        "dlib": _dlib.view_descriptors(pixels, faces, VIEWS)[0],
        "mfn": _mfn.view_descriptors(pixels, faces, VIEWS)[0],
    }


def describe_yunet(path: str) -> dict:
    """Both views of dlib's and MobileFaceNet's descriptors of the face the face photo rule finds with YuNet
    (MobileFaceNet aligned from YuNet's own points, dlib's descriptor from dlib's 5 points in YuNet's box)."""
    analyzer = _analyzer("yunet")
    pixels = analyzer.pixels(path)
    found = analyzer.locate_main_face(pixels, face_crop=True)
    faces = analyzer.face_landmarks(pixels, [found])
    return {
        "yunet_detector": found.detector,
        "yunet_dlib": _dlib.view_descriptors(pixels, faces, VIEWS)[0],
        "yunet_mfn": _mfn.view_descriptors(pixels, faces, VIEWS)[0],
    }


_ANALYZERS: dict[str, FaceAnalyzer] = {}
YUNET_MODEL: str | None = None  # set by main (the worker processes are forked after)


def _analyzer(detector: str) -> FaceAnalyzer:
    if detector not in _ANALYZERS:
        spec = FaceSpec(detector=detector, detector_model=YUNET_MODEL if detector == "yunet" else None)
        _ANALYZERS[detector] = FaceAnalyzer(spec, encoder=_dlib)
    return _ANALYZERS[detector]


def describe_all(paths: list[Path], workers: int, yunet_model: str | None, label: str, cache: Path | None) -> tuple[dict[Path, dict], float]:
    """(the descriptors of every path, each a dict of ``describe_hog`` and, with ``yunet_model``, ``describe_yunet``;
    the seconds they took), computed in worker processes; with ``cache`` (a folder) kept there as they come, so
    that an interrupted or later run over the same images computes only what is missing."""
    global YUNET_MODEL
    YUNET_MODEL = yunet_model
    described: dict[Path, dict] = {p: {} for p in paths}
    seconds = 0.0
    for function in [describe_hog] + ([describe_yunet] if yunet_model else []):
        part, taken = _describe_part(function, paths, workers, label, cache)
        for path in paths:
            described[path].update(part[path])
        seconds += taken
    return described, seconds


def _describe_part(function, paths: list[Path], workers: int, label: str, cache: Path | None) -> tuple[dict[Path, dict], float]:
    name = function.__name__.split("_")[1]
    key = (DESCRIBE_VERSION, name)
    file = cache / f"{label.split()[0].lower()}-{name}-v{DESCRIBE_VERSION}.pkl" if cache is not None else None
    stored = pickle.loads(file.read_bytes()) if file is not None and file.is_file() else {}
    described: dict[Path, dict] = stored.get("described", {}) if stored.get("key") == key else {}
    seconds = stored.get("seconds", 0.0) if described else 0.0
    todo = [p for p in paths if p not in described]
    if len(todo) < len(paths):
        console.print(f"{label} ({name}): {len(paths) - len(todo)} of {len(paths)} images' descriptors read from {file}")
        REUSED.append(f"{label}, {name} ({len(paths) - len(todo)} of {len(paths)} images)")
    if todo:
        started = time.perf_counter()
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(workers, context, _start_worker) as pool:
            with progress_bar(f"{label} ({name})") as update:
                for done, (path, result) in enumerate(zip(todo, pool.map(function, [str(p) for p in todo], chunksize=4)), start=1):
                    described[path] = result
                    update(done, len(todo))
                    if file is not None and (done % 50 == 0 or done == len(todo)):
                        _save(file, key, described, seconds + time.perf_counter() - started)
        seconds += time.perf_counter() - started
    return {p: described[p] for p in paths}, seconds


def _save(file: Path, key: tuple, described: dict, seconds: float) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(".tmp")
    partial.write_bytes(pickle.dumps({"key": key, "described": described, "seconds": seconds}))
    partial.replace(file)


def lfw_pairs(data: Path, quick: bool) -> tuple[list, list[Path]]:
    """The LFW dev pairs (with ``quick``, 200 per fold) and the images they use."""
    folder = data / "lfw_dev"
    pairs = read_pairs(folder / "pairs.txt", folder / "lfw-deepfunneled")
    if quick:
        pairs = [p for fold in range(3) for p in [p for p in pairs if p.fold == fold][:200]]
    return pairs, sorted({p.first for p in pairs} | {p.second for p in pairs})


def orl_paths(data: Path) -> list[Path]:
    folder = data / "orl_faces" / "orl_faces"
    return sorted(folder.glob("s*/*.pgm"), key=lambda p: (int(p.parent.name[1:]), int(p.stem)))


def view_mean(views: np.ndarray, count: int) -> np.ndarray:
    """The descriptor of the first ``count`` views (1: the face as is, 2: with its mirror image)."""
    return l2_normalise(views[:count].mean(axis=0, keepdims=True))[0]


def similarities(pairs, described: dict[Path, dict], key: str, count: int) -> np.ndarray:
    """Cosine similarity of each pair's descriptors ``key`` averaged over ``count`` views."""
    vectors = {path: view_mean(entry[key], count) for path, entry in described.items()}
    return np.array([float(vectors[pair.first] @ vectors[pair.second]) for pair in pairs])


# the fold protocol ---------------------------------------------------------------------------------
def inner_score(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, train: np.ndarray) -> tuple[float, float]:
    """(accuracy with each training fold's threshold chosen on the other training folds, ROC AUC) on ``train`` only."""
    report = verification_report(scores[train], same[train], folds[train], far=FAR)
    return report["accuracy"], report["roc_auc"]


def nested_protocol(candidates: dict[str, np.ndarray], same: np.ndarray, folds: np.ndarray) -> dict:
    """Each fold scored with the candidate (and threshold) chosen on the other folds only: the candidate with the
    best accuracy there (each of those folds' threshold chosen on the remaining ones), ties broken by ROC AUC."""
    chosen, accuracies = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        name = max(candidates, key=lambda n: inner_score(candidates[n], same, folds, train))
        threshold = best_threshold(candidates[name][train], same[train])
        accuracies.append(100 * float(np.mean((candidates[name][test] >= threshold) == same[test])))
        chosen.append(name)
    everywhere = max(candidates, key=lambda n: inner_score(candidates[n], same, folds, np.ones_like(same)))
    return {"chosen": chosen, "accuracies": accuracies, "all_folds": everywhere}


def fused_candidates(dlib: dict[int, np.ndarray], mfn: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    """Fused similarities w * dlib + (1 - w) * MobileFaceNet for every weight of the grid and view count."""
    return {
        f"w={w:.2f}, {'flip' if count == 2 else 'single view'}": w * dlib[count] + (1 - w) * mfn[count]
        for count in sorted(dlib) for w in WEIGHT_GRID
    }


# LFW --------------------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    scores: np.ndarray


def lfw_section(data: Path, workers: int, yunet_model: str | None, quick: bool, cache: Path | None) -> tuple[list[str], dict]:
    pairs, paths = lfw_pairs(data, quick)
    described, seconds = describe_all(paths, workers, yunet_model, "LFW images" + (" (quick)" if quick else ""), cache)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    dlib = {count: similarities(pairs, described, "dlib", count) for count in (1, 2)}
    mfn = {count: similarities(pairs, described, "mfn", count) for count in (1, 2)}
    w = DEFAULT_WEIGHTS[0] / sum(DEFAULT_WEIGHTS)
    rows = [
        Row("dlib ResNet, flip (baseline: the previous default)", dlib[2]),
        Row("dlib ResNet, single view", dlib[1]),
        Row("MobileFaceNet, single view", mfn[1]),
        Row("MobileFaceNet, flip", mfn[2]),
        Row(f"fused (w = {w:.2f}), single view", w * dlib[1] + (1 - w) * mfn[1]),
        Row(f"fused (w = {w:.2f}), flip", w * dlib[2] + (1 - w) * mfn[2]),
    ]
    if yunet_model:
        yunet_dlib = {count: similarities(pairs, described, "yunet_dlib", count) for count in (1, 2)}
        yunet_mfn = {count: similarities(pairs, described, "yunet_mfn", count) for count in (1, 2)}
        rows += [
            Row("YuNet: dlib ResNet, flip", yunet_dlib[2]),
            Row("YuNet: MobileFaceNet (YuNet's points), single view", yunet_mfn[1]),
            Row("YuNet: MobileFaceNet (YuNet's points), flip", yunet_mfn[2]),
            Row(f"YuNet: fused (w = {w:.2f}), flip", w * yunet_dlib[2] + (1 - w) * yunet_mfn[2]),
        ]
    reports = {row.name: verification_report(row.scores, same, folds, far=FAR) for row in rows}
    baseline_error = 100 - reports[rows[0].name]["accuracy"]
    lines = [
        f"{len(pairs)} pairs ({int(same.sum())} same, {int((~same).sum())} different) in {len(set(folds))} folds, "
        f"{len(paths)} images; the threshold of each fold is chosen on the other folds. Every row uses the face photo rule "
        "(the face covering the centre, dlib's CNN detector when the detector finds none, then the centre of the photo); "
        "rows without \"YuNet\" use dlib's HOG detector. dlib's descriptor is aligned from dlib's 5 points in the box, "
        "MobileFaceNet's from the five standard points (read from dlib's 68-point shape with HOG, YuNet's own with YuNet). "
        "Fused: similarity w * dlib + (1 - w) * MobileFaceNet. Error ratio = baseline error / row error.",
        "",
        f"| variant | accuracy % (± std over folds) | ROC AUC % | TAR@FAR={FAR:g} % | wrong pairs | error ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        r = reports[row.name]
        error = 100 - r["accuracy"]
        ratio = f"{baseline_error / error:.2f}x" if error > 0 else "-"
        lines.append(
            f"| {row.name} | {r['accuracy']:.2f} ± {r['accuracy_std']:.2f} | {r['roc_auc']:.3f} | "
            f"{r[f'TAR@FAR={FAR:g}']:.2f} | {round(len(pairs) * error / 100)} | {ratio} |"
        )
    detectors = Counter(d["hog_detector"] for d in described.values())
    lines += ["", f"Which detector gave the face: HOG rule {dict(detectors)}"]
    if yunet_model:
        lines[-1] += f"; YuNet rule {dict(Counter(d['yunet_detector'] for d in described.values()))}"
    lines[-1] += f". Descriptors of all rows for the {len(paths)} images: {seconds:.0f} s of wall-clock time (see Speed for the cost per face)."

    protocol = nested_protocol(fused_candidates(dlib, mfn), same, folds)
    nested = np.array(protocol["accuracies"])
    chosen_default = f"w={w:.2f}, {'flip' if DEFAULT_TTA == 'flip' else 'single view'}"
    lines += [
        "",
        "### Choosing the fusion weight (the fold protocol)",
        "",
        f"Candidates: the weight w of dlib's similarity in {WEIGHT_GRID[0]:.2f}, {WEIGHT_GRID[1]:.2f}, ... {WEIGHT_GRID[-1]:.2f} "
        f"(w = 1: dlib alone, w = 0: MobileFaceNet alone), each with a single view or flip: {len(WEIGHT_GRID) * 2} candidates. "
        "For each fold, the candidate is chosen on the two other folds alone (its accuracy there, each of them scored with "
        "the threshold chosen on the other one; ties broken by ROC AUC), and the fold is scored with that candidate and the "
        "threshold chosen on the two other folds.",
        "",
        "| tested fold | candidate chosen on the other folds | accuracy % on the tested fold |",
        "| --- | --- | --- |",
    ]
    for fold, (name, accuracy) in enumerate(zip(protocol["chosen"], protocol["accuracies"]), start=1):
        lines.append(f"| {fold} | {name} | {accuracy:.2f} |")
    lines += [
        "",
        f"Accuracy of the protocol: **{nested.mean():.2f} ± {nested.std():.2f} %**. Chosen on all three folds together: "
        f"{protocol['all_folds']}; the library's default fused encoder: {chosen_default}.",
    ]
    by_weight = []
    for name, scores in fused_candidates(dlib, mfn).items():
        if name.endswith(DEFAULT_TTA if DEFAULT_TTA == "flip" else "single view"):
            by_weight.append(f"{name.split(',')[0][2:]}: {verification_report(scores, same, folds, far=FAR)['accuracy']:.2f}")
    lines += ["", "For reference only (these use every fold), accuracy by weight with flip: " + ", ".join(by_weight) + "."]
    default_name = rows[5].name if DEFAULT_FACE_ENCODER == "fusion" else rows[0].name
    return lines, {
        "scores": {row.name: row.scores for row in rows}, "same": same, "reports": reports, "default": default_name,
        "fused": rows[5].name,
    }


# ORL --------------------------------------------------------------------------------------------
def orl_section(data: Path, workers: int, yunet_model: str | None, cache: Path | None) -> tuple[list[str], dict]:
    paths = orl_paths(data)
    labels = [p.parent.name for p in paths]
    described, _ = describe_all(paths, workers, yunet_model, "ORL images", cache)
    enrolled = np.array([int(p.stem) <= 5 for p in paths])
    w = DEFAULT_WEIGHTS[0] / sum(DEFAULT_WEIGHTS)

    def fused(first: str, second: str, count: int) -> dict[Path, np.ndarray]:
        return {p: np.concatenate([np.sqrt(w) * view_mean(d[first], count), np.sqrt(1 - w) * view_mean(d[second], count)]).astype(np.float32) for p, d in described.items()}

    variants = {
        "dlib ResNet, flip (baseline)": {p: view_mean(d["dlib"], 2) for p, d in described.items()},
        "MobileFaceNet, flip": {p: view_mean(d["mfn"], 2) for p, d in described.items()},
        f"fused (w = {w:.2f}), flip": fused("dlib", "mfn", 2),
    }
    if yunet_model:
        variants["YuNet: dlib ResNet, flip"] = {p: view_mean(d["yunet_dlib"], 2) for p, d in described.items()}
        variants["YuNet: MobileFaceNet (YuNet's points), flip"] = {p: view_mean(d["yunet_mfn"], 2) for p, d in described.items()}
        variants[f"YuNet: fused (w = {w:.2f}), flip"] = fused("yunet_dlib", "yunet_mfn", 2)
    lines = [
        f"{len(set(labels))} people x 10 greyscale 92 x 112 photos; images 1-5 of each person enrolled, 6-10 queried "
        f"({int((~enrolled).sum())} queries); the nearest enrolled face names the query. Face photo rule as above.",
        "",
        "| variant | rank-1 % |",
        "| --- | --- |",
    ]
    results = {}
    for name, vectors in variants.items():
        gallery = np.stack([vectors[p] for p, e in zip(paths, enrolled) if e])
        names, _ = best_matches(np.stack([vectors[p] for p, e in zip(paths, enrolled) if not e]), gallery, [lab for lab, e in zip(labels, enrolled) if e])
        results[name] = 100 * float(np.mean(np.asarray(names) == np.asarray([lab for lab, e in zip(labels, enrolled) if not e])))
        lines.append(f"| {name} | {results[name]:.1f} |")
    lines += [
        "",
        f"Small greyscale faces, which detector gave the face (the rule falls back to dlib's CNN detector, then the centre): "
        f"HOG rule {dict(Counter(d['hog_detector'] for d in described.values()))}"
        + (f"; YuNet rule {dict(Counter(d['yunet_detector'] for d in described.values()))}" if yunet_model else "")
        + f", of {len(paths)} photos.",
    ]
    default = variants[f"fused (w = {w:.2f}), flip"] if DEFAULT_FACE_ENCODER == "fusion" else variants["dlib ResNet, flip (baseline)"]
    return lines, {"vectors": np.stack([default[p] for p in paths]), "labels": labels, "rank1": results}
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
    plain = f"off the shelf ({DEFAULT_FACE_ENCODER}, {DEFAULT_TTA})"
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
        f"A linear {vectors.shape[1]} -> {vectors.shape[1]} head on the default descriptor, started at the identity, trained for 40 epochs (Adam 1e-3, m-per-class batches of "
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
    lfw_scores, lfw_same = lfw["scores"][lfw["default"]], lfw["same"]
    orl_scores, orl_same = labeled_pair_scores(orl["vectors"], orl["labels"])
    lines = [
        f"Similarity thresholds of the default encoder ({lfw['default']}) chosen for a target false-accept rate on one set "
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
    lines += [
        "",
        f"LFW dev has {int((~lfw_same).sum())} different-person pairs, so a FAR of 1e-3 there means \"accepts none of them\". "
        "Best-accuracy thresholds of the three folds (each chosen on the other two), per encoder with flip, and the default "
        "threshold of an uncalibrated collection:",
        "",
        "| encoder | fold thresholds | default threshold |",
        "| --- | --- | --- |",
    ]
    for name, encoder in (("dlib ResNet, flip (baseline: the previous default)", "dlib_resnet_v1"), ("MobileFaceNet, flip", "mobilefacenet"), (lfw["fused"], "fusion")):
        folds = ", ".join(f"{t:.4f}" for t in lfw["reports"][name]["thresholds"])
        lines.append(f"| {encoder} | {folds} | {make_face_encoder(encoder).default_threshold:.4f} |")
    return lines


# timing -----------------------------------------------------------------------------------------
def timing_lines(data: Path, workers: int, yunet_model: str | None, photos: int = 10, indexed: int = 30) -> list[str]:
    sample = sorted((data / "lfw_dev" / "lfw-deepfunneled").glob("*/*.jpg"))[:photos]
    pixels = [FaceAnalyzer.pixels(p) for p in sample]
    lines = [
        f"One process, {photos} LFW photos of 250 x 250 (one face each), wall-clock time on the machine above "
        f"(load average {os.getloadavg()[0]:.1f} when this section started). Detection alone:",
        "",
        "| detector | s/photo |",
        "| --- | --- |",
    ]
    detectors = [("HOG (upsampled once)", FaceSpec()), ("CNN (MMOD, upsampled once)", FaceSpec(detector="cnn"))]
    if yunet_model:
        detectors.append(("YuNet", FaceSpec(detector="yunet", detector_model=yunet_model)))
    for name, spec in detectors:
        analyzer = FaceAnalyzer(spec, encoder=DlibResNetEncoder())
        subset = pixels[:5] if spec.detector == "cnn" else pixels
        analyzer.detect(subset[0])  # loads the model
        started = time.perf_counter()
        for image in subset:
            analyzer.detect(image)
        lines.append(f"| {name} | {(time.perf_counter() - started) / len(subset):.3f} |")
    lines += [
        "",
        "A whole scan (detection, landmarks, alignment, descriptor of both flip views), faces per second and the ratio "
        "to the baseline (dlib ResNet with HOG):",
        "",
        "| detector | encoder | faces/s | speed ratio |",
        "| --- | --- | --- | --- |",
    ]
    baseline = None
    for detector_name, spec in [("HOG", FaceSpec())] + ([("YuNet", FaceSpec(detector="yunet", detector_model=yunet_model))] if yunet_model else []):
        for encoder in ("dlib_resnet_v1", "mobilefacenet", "fusion"):
            analyzer = FaceAnalyzer(replace(spec, encoder=encoder, tta="flip"))
            analyzer.scan(pixels[0])
            started = time.perf_counter()
            faces = sum(len(analyzer.scan(image).faces) for image in pixels)
            rate = faces / (time.perf_counter() - started)
            baseline = baseline or rate
            lines.append(f"| {detector_name} | {encoder} | {rate:.1f} | {rate / baseline:.2f}x |")
    with tempfile.TemporaryDirectory() as folder:
        files = sorted((data / "lfw_dev" / "lfw-deepfunneled").glob("*/*.jpg"))[:indexed]
        with Collection.create(Path(folder) / "c") as store:
            from cbir.pipelines.faces import FacePipeline

            pipeline = FacePipeline()
            report = store.add(files, pipeline=pipeline, workers=workers)
    lines += [
        "",
        f"Indexing {indexed} LFW photos into a collection (`cbir index --faces`, the default encoder {DEFAULT_FACE_ENCODER}, "
        f"{workers} worker processes, {DEFAULT_TTA}): {indexed / report.seconds:.1f} photos/s, {pipeline.counts.describe()}.",
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
    parser.add_argument("--no-yunet", action="store_true", help="leave out the YuNet rows (half the descriptor work)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faces.md")
    parser.add_argument("--cache", type=Path, help="folder keeping the LFW and ORL descriptors for a later run over the same images")
    args = parser.parse_args()
    if not (args.data / "lfw_dev").is_dir() or not (args.data / "orl_faces").is_dir():
        sys.exit(f"{args.data} lacks lfw_dev/ or orl_faces/: give --data the benchmark data folder")
    yunet = args.data / "weights" / "yunet_face_detector"
    yunet_model = str(yunet) if yunet.is_dir() and not args.no_yunet else None
    started, load = time.perf_counter(), os.getloadavg()
    lfw_text, lfw = lfw_section(args.data, args.workers, yunet_model, args.quick, args.cache)
    console.print("\n".join(lfw_text))
    orl_text, orl = orl_section(args.data, args.workers, yunet_model, args.cache)
    console.print("\n".join(orl_text))
    sections = [
        ("LFW verification (lfw_dev, deep-funneled, View 2 folds 1-3)", lfw_text),
        ("ORL identification", orl_text),
        ("A head trained on face descriptors (ORL, 20 people / 20 people)", head_lines(orl)),
        ("Thresholds", threshold_lines(lfw, orl)),
        ("Speed", timing_lines(args.data, args.workers, yunet_model)),
        ("Group photo", group_lines(args.data, args.out.parent / "faces-group.png")),
    ]
    command = "PYTHONPATH=$PWD python bench/faces/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = [
        "# Faces benchmark",
        "",
        f"Command: `{command.strip()}` ({time.perf_counter() - started:.0f} s). "
        f"Machine: {machine_summary(('dlib-bin', 'opencv-python-headless', 'onnxruntime'))}; load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the start and {os.getloadavg()[0]:.1f} at the end. "
        f"Date: {time.strftime('%Y-%m-%d')}."
        + (f" Descriptors read from the cache of an earlier run of this code: {', '.join(REUSED)}." if REUSED else ""),
        "",
        "Encoders: dlib's ResNet (`dlib_resnet_v1`: dlib's 5-point landmarks, 150 px chips with 25 % padding, "
        "face_recognition_models), MobileFaceNet (`mobilefacenet`: the five standard points, 112 px similarity-aligned "
        f"chips, the ONNX file shipped in `cbir/faces/weights/`), and their fusion (`fusion`, the default: weights "
        f"{list(DEFAULT_WEIGHTS)} for dlib and MobileFaceNet). Similarities are cosines of L2-normalised descriptors.",
    ]
    text = header
    for title, lines in sections:
        text += ["", f"## {title}", ""] + lines
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(text) + "\n")
    console.print(f"written {args.out}")


if __name__ == "__main__":
    main()
