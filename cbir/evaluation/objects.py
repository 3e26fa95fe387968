"""Object-level retrieval evaluation (``cbir evaluate objects``): object queries, multi-class
queries and the detector's AP50, on photos with annotated boxes. The protocol is in docs/objects.md.

Descriptors stay in memory: one detector run and one encoder pass per photo give the
whole-image descriptor, the descriptors of the detected regions and those of the annotated
query boxes.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cbir.detectors import Detections, Detector
from cbir.encoders.encoder import Encoder
from cbir.encoders.regions import describe_crops, describe_with_regions
from cbir.evaluation import metrics
from cbir.evaluation.detection_ap import VOC_TO_COCO, ClassDetections, class_average_precision
from cbir.search.regions import best_match, match_all
from cbir.io.images import ImageLoadError, load_image

REGION_MODES = ("crop", "pooled")
AP_SCORE_THRESHOLD = 0.01
AP_MAX_BOXES = 100
PRECISION_AT = 10
REQUIRED_COLUMNS = ("filename", "class_name", "xmin", "ymin", "xmax", "ymax")
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class AnnotatedObject:
    """One annotated box: class, ``x0, y0, x1, y1`` in continuous pixel coordinates, difficult flag."""

    class_name: str
    box: tuple[float, float, float, float]
    difficult: bool


@dataclass
class ObjectSet:
    """Photos and their annotated objects."""

    photos: list[Path]
    objects: list[list[AnnotatedObject]]

    def classes(self, photo: int, with_difficult: bool = False) -> frozenset[str]:
        return frozenset(o.class_name for o in self.objects[photo] if with_difficult or not o.difficult)


def read_objects(csv_file: str | Path, root: str | Path) -> tuple[ObjectSet, list[tuple[Path, str]]]:
    """The photos under ``root`` named in ``csv_file`` (one row per box, VOC 1-based inclusive pixel
    boxes) and their objects; photos that are missing come back with a reason."""
    csv_file, root = Path(csv_file), Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of photos")
    if not csv_file.is_file():
        raise FileNotFoundError(f"objects file {csv_file} does not exist: give a CSV with columns {', '.join(REQUIRED_COLUMNS)}[, difficult]")
    with open(csv_file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing_columns = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_columns:
            raise ValueError(f"{csv_file} lacks the columns {', '.join(missing_columns)} (needs {', '.join(REQUIRED_COLUMNS)}[, difficult])")
        by_photo: dict[str, list[AnnotatedObject]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                x0, y0, x1, y1 = (float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise ValueError(f"{csv_file}, line {line}: xmin, ymin, xmax, ymax must be numbers") from None
            if x1 < x0 or y1 < y0:
                raise ValueError(f"{csv_file}, line {line}: the box ends before it starts")
            difficult = str(row.get("difficult") or "0").strip() not in ("0", "", "false", "False")
            by_photo.setdefault(row["filename"], []).append(AnnotatedObject(row["class_name"], (x0 - 1, y0 - 1, x1, y1), difficult))
    photos, objects, skipped = [], [], []
    for name, annotated in by_photo.items():
        path = root / name
        if path.is_file():
            photos.append(path)
            objects.append(annotated)
        else:
            skipped.append((path, "listed in the objects file but not found"))
    if not photos:
        raise ValueError(f"none of the {len(by_photo)} photos of {csv_file} is under {root}")
    return ObjectSet(photos, objects), skipped


@dataclass
class PhotoIndex:
    """In-memory descriptors of the photos: whole images, detected regions, annotated query boxes."""

    whole: np.ndarray  # P x D
    detections: list[Detections]  # per photo, at the AP threshold
    regions: list[Detections]  # per photo, the indexed ones
    region_photo: np.ndarray  # R
    region_vectors: dict[str, np.ndarray]  # mode -> R x D
    query_photo: np.ndarray  # Q object queries: their photo
    query_objects: list[AnnotatedObject]
    crop_queries: np.ndarray  # Q x D: the query box's crop encoded as an image
    pooled_queries: np.ndarray | None  # Q x D: the query box pooled from its photo's feature map
    seconds: dict[str, float] = field(default_factory=dict)

    def region_queries(self, mode: str) -> np.ndarray:
        """Object-query descriptors computed as the regions of ``mode`` are."""
        return self.pooled_queries if mode == "pooled" else self.crop_queries


def index_photos(
    objects: ObjectSet,
    encoder: Encoder,
    detector: Detector,
    modes: Sequence[str] = ("crop",),
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
) -> tuple[PhotoIndex, ObjectSet, list[tuple[Path, str]]]:
    """Detect and describe every photo (unreadable ones are skipped and returned with a reason)."""
    unknown = [m for m in modes if m not in REGION_MODES]
    if unknown:
        raise ValueError(f"unknown region mode {unknown[0]!r}: choose one of {', '.join(REGION_MODES)}")
    settings = detector.settings
    ap_settings = replace(settings, score_threshold=min(settings.score_threshold, AP_SCORE_THRESHOLD), max_boxes=max(settings.max_boxes, AP_MAX_BOXES))
    ap_detector = detector.with_settings(ap_settings)
    seconds = {"detection": 0.0, "encoding": 0.0, "crop_regions": 0.0, "crop_queries": 0.0}
    kept_photos, kept_objects, skipped = [], [], []
    whole, detections, regions, region_vectors = [], [], [], {m: [] for m in modes}
    query_photo, query_objects, crop_queries, pooled_queries = [], [], [], []
    for start in range(0, len(objects.photos), batch_size):
        images, annotated = [], []
        for path, photo_objects in zip(objects.photos[start : start + batch_size], objects.objects[start : start + batch_size]):
            try:
                images.append(load_image(path))
            except ImageLoadError as error:
                skipped.append((path, str(error)))
                continue
            kept_photos.append(path)
            kept_objects.append(photo_objects)
            annotated.append([o for o in photo_objects if not o.difficult])
        step = time.perf_counter()
        found = ap_detector.detect(images)
        seconds["detection"] += time.perf_counter() - step
        chosen = [d.best(settings.score_threshold, settings.max_boxes) for d in found]
        query_boxes = [np.array([o.box for o in photo], np.float32).reshape(-1, 4) for photo in annotated]
        step = time.perf_counter()
        described = describe_with_regions(encoder, images, [np.concatenate([c.boxes, q]) for c, q in zip(chosen, query_boxes)])
        seconds["encoding"] += time.perf_counter() - step
        for offset, (image, choice, boxes, (vector, parts)) in enumerate(zip(images, chosen, query_boxes, described)):
            photo = len(whole)
            whole.append(vector)
            if "pooled" in modes:
                region_vectors["pooled"].append(parts[: len(choice)])
            pooled_queries.append(parts[len(choice) :])
            step = time.perf_counter()
            if "crop" in modes:
                region_vectors["crop"].append(describe_crops(encoder, image, choice.boxes))
            seconds["crop_regions"] += time.perf_counter() - step
            step = time.perf_counter()
            crop_queries.append(describe_crops(encoder, image, boxes))
            seconds["crop_queries"] += time.perf_counter() - step
            query_photo += [photo] * len(boxes)
            query_objects += annotated[offset]
        detections += found
        regions += chosen
        if progress is not None:
            progress(min(start + batch_size, len(objects.photos)), len(objects.photos))
    if not whole:
        raise ValueError(f"none of the {len(objects.photos)} photos could be read")
    dim = whole[0].shape[0]
    index = PhotoIndex(
        whole=np.stack(whole),
        detections=detections,
        regions=regions,
        region_photo=np.array([p for p, r in enumerate(regions) for _ in range(len(r))], dtype=np.int64),
        region_vectors={m: np.concatenate(v).reshape(-1, dim) for m, v in region_vectors.items()},
        query_photo=np.array(query_photo, dtype=np.int64),
        query_objects=query_objects,
        crop_queries=np.concatenate(crop_queries).reshape(-1, dim),
        pooled_queries=np.concatenate(pooled_queries).reshape(-1, dim),
        seconds=seconds,
    )
    return index, ObjectSet(kept_photos, kept_objects), skipped


# ground truth --------------------------------------------------------------------------------
def object_judgement(objects: ObjectSet, index: PhotoIndex) -> np.ndarray:
    """Q x P: photos with a non-difficult object of the query's class are positive; the query's own
    photo and photos whose objects of that class are all difficult are junk."""
    n_photos = len(objects.photos)
    easy = [objects.classes(p) for p in range(n_photos)]
    every = [objects.classes(p, with_difficult=True) for p in range(n_photos)]
    table = np.full((len(index.query_objects), n_photos), metrics.NEGATIVE, dtype=np.int8)
    for row, query in enumerate(index.query_objects):
        for photo in range(n_photos):
            if query.class_name in easy[photo]:
                table[row, photo] = metrics.POSITIVE
            elif query.class_name in every[photo]:
                table[row, photo] = metrics.JUNK
    table[np.arange(len(table)), index.query_photo] = metrics.JUNK
    return table


def multiclass_queries(objects: ObjectSet) -> list[int]:
    """The photos with non-difficult objects of at least two classes."""
    return [p for p in range(len(objects.photos)) if len(objects.classes(p)) >= 2]


def multiclass_judgement(objects: ObjectSet, queries: Sequence[int]) -> np.ndarray:
    """Q x P: photos holding every class of the query photo are positive (junk when that needs
    difficult objects); the query photo itself is junk."""
    n_photos = len(objects.photos)
    easy = [objects.classes(p) for p in range(n_photos)]
    every = [objects.classes(p, with_difficult=True) for p in range(n_photos)]
    table = np.full((len(queries), n_photos), metrics.NEGATIVE, dtype=np.int8)
    for row, query in enumerate(queries):
        wanted = easy[query]
        for photo in range(n_photos):
            if wanted <= easy[photo]:
                table[row, photo] = metrics.POSITIVE
            elif wanted <= every[photo]:
                table[row, photo] = metrics.JUNK
        table[row, query] = metrics.JUNK
    return table


# scoring -------------------------------------------------------------------------------------
def ranked_metrics(scores: np.ndarray, judgement: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query AP and P@10 of rankings by decreasing ``scores`` (queries without positives: NaN)."""
    ranking = np.argsort(-scores, axis=1, kind="stable")
    hits = metrics.ranked_hits(ranking, judgement)
    return {"AP": metrics.average_precision(hits), f"P@{PRECISION_AT}": metrics.precision_at_k(hits, PRECISION_AT), "positives": hits.n_positive}


def mean_percent(values: np.ndarray, positives: np.ndarray) -> float:
    valid = positives > 0
    return 100.0 * float(np.nanmean(values[valid])) if valid.any() else float("nan")


def query_object_vectors(index: PhotoIndex, photo: int, mode: str) -> np.ndarray:
    """The objects of a multi-class query photo: its best-scoring region of each detected class
    (the whole image when nothing was detected)."""
    rows = np.flatnonzero(index.region_photo == photo)
    labels = index.regions[photo].class_ids
    chosen = [rows[np.flatnonzero(labels == label)[0]] for label in dict.fromkeys(labels.tolist())]
    if not chosen:
        return index.whole[photo : photo + 1]
    return index.region_vectors[mode][chosen]


def detector_ap50(objects: ObjectSet, detections: Sequence[Detections]) -> dict[str, float]:
    """AP50 (percent) of each VOC class that has non-difficult boxes, detections named by COCO."""
    results = {}
    for voc, coco in VOC_TO_COCO.items():
        truth_boxes, truth_difficult = {}, {}
        for photo, annotated in enumerate(objects.objects):
            mine = [o for o in annotated if o.class_name == voc]
            if mine:
                truth_boxes[photo] = np.array([o.box for o in mine], np.float32)
                truth_difficult[photo] = np.array([o.difficult for o in mine])
        photos, boxes, scores = [], [], []
        for photo, found in enumerate(detections):
            keep = [i for i, label in enumerate(found.labels) if label == coco]
            photos += [photo] * len(keep)
            boxes.append(found.boxes[keep])
            scores.append(found.scores[keep])
        class_detections = ClassDetections(np.array(photos, dtype=np.int64), np.concatenate(boxes).reshape(-1, 4), np.concatenate(scores))
        ap = class_average_precision(class_detections, truth_boxes, truth_difficult)
        if not np.isnan(ap):
            results[voc] = 100.0 * ap
    return results


@dataclass
class ObjectScores:
    """The protocol's metrics (percent) and per-class details."""

    metrics: dict[str, float]
    object_ap_by_class: dict[str, dict[str, float]]
    detector_ap_by_class: dict[str, float]
    counts: dict[str, int]


def score_objects(objects: ObjectSet, index: PhotoIndex, mode: str) -> ObjectScores:
    """Object queries (whole-image vs best region match), multi-class queries (whole-image vs match
    all over regions) and the detector's AP50."""
    regions = index.region_vectors[mode]
    judgement = object_judgement(objects, index)
    image = ranked_metrics(index.crop_queries @ index.whole.T, judgement)
    region = ranked_metrics(best_match(index.region_queries(mode), index.whole, regions, index.region_photo), judgement)
    queries = multiclass_queries(objects)
    multi_truth = multiclass_judgement(objects, queries)
    multi_image = ranked_metrics(index.whole[queries] @ index.whole.T, multi_truth)
    multi_scores = np.stack([match_all(query_object_vectors(index, q, mode), index.whole, regions, index.region_photo) for q in queries]) if queries else np.zeros((0, len(objects.photos)))
    multi_region = ranked_metrics(multi_scores, multi_truth)
    ap_by_class = detector_ap50(objects, index.detections)
    p_name = f"P@{PRECISION_AT}"
    values = {
        "object_mAP_image": mean_percent(image["AP"], image["positives"]),
        "object_mAP_region": mean_percent(region["AP"], region["positives"]),
        f"object_{p_name}_image": mean_percent(image[p_name], image["positives"]),
        f"object_{p_name}_region": mean_percent(region[p_name], region["positives"]),
        "multiclass_mAP_image": mean_percent(multi_image["AP"], multi_image["positives"]),
        "multiclass_mAP_region": mean_percent(multi_region["AP"], multi_region["positives"]),
        f"multiclass_{p_name}_image": mean_percent(multi_image[p_name], multi_image["positives"]),
        f"multiclass_{p_name}_region": mean_percent(multi_region[p_name], multi_region["positives"]),
        "detector_AP50": float(np.mean(list(ap_by_class.values()))) if ap_by_class else float("nan"),
    }
    by_class: dict[str, dict[str, float]] = {}
    names = np.array([o.class_name for o in index.query_objects])
    for name in sorted(set(names)):
        rows = names == name
        by_class[name] = {
            "queries": int(rows.sum()),
            "image": mean_percent(image["AP"][rows], image["positives"][rows]),
            "region": mean_percent(region["AP"][rows], region["positives"][rows]),
        }
    counts = {
        "photos": len(objects.photos),
        "object_queries": len(index.query_objects),
        "multiclass_queries": len(queries),
        "regions": int(len(regions)),
        "photos_without_regions": int(sum(len(r) == 0 for r in index.regions)),
    }
    return ObjectScores(values, by_class, ap_by_class, counts)


def evaluate_objects(
    root: str | Path,
    objects_file: str | Path,
    encoder: Encoder,
    encoder_config: dict,
    detector: Detector,
    mode: str = "crop",
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
):
    """The whole protocol as an ``EvaluationResult`` (protocol ``objects``, metrics in percent)."""
    from cbir.evaluation.benchmark import EvaluationResult

    objects, skipped = read_objects(objects_file, root)
    started = time.perf_counter()
    index, objects, unreadable = index_photos(objects, encoder, detector, (mode,), batch_size, progress)
    skipped += unreadable
    step = time.perf_counter()
    scores = score_objects(objects, index, mode)
    seconds = {**index.seconds, "ranking": time.perf_counter() - step, "total": time.perf_counter() - started}
    config = {
        "encoder": encoder_config,
        "detector": detector.record(),
        "regions": mode,
        "objects_file": str(objects_file),
        "queries": scores.counts["object_queries"],
        "database": scores.counts["photos"],
        **{key: value for key, value in scores.counts.items() if key not in ("object_queries", "photos")},
        "object_mAP_by_class": {name: {k: round(v, 2) for k, v in row.items()} for name, row in scores.object_ap_by_class.items()},
        "detector_AP50_by_class": {name: round(value, 2) for name, value in scores.detector_ap_by_class.items()},
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
    }
    notes = []
    if scores.counts["photos_without_regions"]:
        notes.append(f"{scores.counts['photos_without_regions']} photos had no detected object: they are searched by their whole image only")
    if skipped:
        notes.append(f"{len(skipped)} photos could not be used")
    return EvaluationResult("objects", scores.metrics, config, notes, skipped=skipped)
