"""The video copy-detection protocol behind ``cbir evaluate videos``.

From a folder of source videos: one edited copy of each source per
transformation (``video_copies.TRANSFORMATIONS``) and synthetic distractor
videos form the database; excerpts of the sources are the clip queries and
single frames of the sources the photo queries. All seeded.

* clip -> video: each excerpt ranks the database videos (``search_clip``);
  AP with the source's copies as positives. Per transformation, the database
  is that transformation's copies plus the distractors (one positive per
  query); "all" uses every copy. The same run ranks by pooled video vectors
  and by chamfer similarity, as baselines.
* temporal IoU: between the segment the alignment returns in the right copy
  and where the excerpt truly is in that copy.
* photo -> moment: a hit when the best moment is in a copy of the photo's
  source and its span, widened by one sampling period on each side, holds
  the photo's time in that copy.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cbir.encoders.encoder import DEFAULT_BATCH_SIZE
from cbir.evaluation.benchmark import EvaluationResult
from cbir.evaluation.descriptors import EncoderChoice
from cbir.evaluation.temporal_metrics import temporal_iou
from cbir.evaluation.video_copies import TRANSFORMATIONS, Copy, make_copies, make_distractor, source_frames
from cbir.pipelines.video import VideoDescriptors, describe_video
from cbir.io.video import Sampling, VideoError, probe
from cbir.io.video_files import is_video_path
from cbir.search.temporal import FrameTable, chamfer_similarity, l2_normalise, photo_moments, search_clip

StepCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class VideoProtocol:
    """The protocol's settings (all recorded in the result)."""

    seed: int = 0
    rate: float = 1.0  # sampled frames per second, database and queries
    query_seconds: float = 8.0  # length of a clip query
    photos: int = 3  # photo queries per source
    distractors: int = 10  # synthetic distractor videos
    max_seconds: float | None = 60.0  # sources are cut to this length
    work_side: int | None = 360  # sources are reduced to this short side before editing
    max_fps: float = 15.0  # and to at most this many frames per second
    shot_detector: str | None = "content"
    transformations: tuple[str, ...] = TRANSFORMATIONS


@dataclass
class _Query:
    source: int
    vectors: np.ndarray
    times: np.ndarray
    span: tuple[float, float]  # where the excerpt is in the source


@dataclass
class _Photo:
    source: int
    vector: np.ndarray
    time: float


def video_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of videos")
    files = sorted(path for path in folder.rglob("*") if path.is_file() and is_video_path(path))
    if not files:
        raise ValueError(f"no video files under {folder} (looked for .mp4, .mkv, .mov, .webm, ...)")
    return files


def evaluate_videos(
    folder: str | Path,
    work: str | Path,
    choice: EncoderChoice | None = None,
    protocol: VideoProtocol = VideoProtocol(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    step: StepCallback | None = None,
) -> EvaluationResult:
    """Generate the copies into ``work``, encode everything, and score the three tasks."""
    started = time.perf_counter()
    step = step or (lambda name, done, total: None)
    choice = choice or EncoderChoice.of()
    encoder = choice.build()
    rng = np.random.default_rng(protocol.seed)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    sources, skipped = _readable(video_files(folder))
    if not sources:
        raise ValueError(f"none of the videos under {folder} could be read: " + "; ".join(f"{p.name}: {r}" for p, r in skipped[:5]))
    copies: list[Copy] = []
    steps = len(sources) + protocol.distractors
    for number, source in enumerate(sources):
        step("editing copies", number, steps)
        copies += make_copies(source, number, protocol.transformations, work, rng, protocol.work_side, protocol.max_seconds, protocol.max_fps)
    distractors = []
    for index in range(protocol.distractors):
        step("editing copies", len(sources) + index, steps)
        distractors.append(make_distractor(work / f"distractor-{index:03d}.mp4", rng))
    seconds = {"generation": time.perf_counter() - started}

    database_paths = [copy.path for copy in copies] + distractors
    sampling = Sampling(rate=protocol.rate, short_side=encoder.spec.image_size)
    described: list[VideoDescriptors] = []
    for done, path in enumerate(database_paths):
        step("encoding database", done, len(database_paths))
        described.append(describe_video(path, encoder, sampling, protocol.shot_detector, batch_size))
    seconds["database"] = time.perf_counter() - started - seconds["generation"]

    queries, photos = [], []
    for done, source in enumerate(sources):
        step("encoding queries", done, len(sources))
        query, source_photos = _queries(source, done, encoder, protocol, rng)
        queries.append(query)
        photos += source_photos
    step("scoring", 0, 1)
    per_transformation = {}
    groups = {name: [i for i, c in enumerate(copies) if c.transformation == name] for name in protocol.transformations}
    groups["all"] = list(range(len(copies)))
    for name, members in groups.items():
        per_transformation[name] = _score(copies, members, described, queries, photos, protocol)
    seconds["total"] = time.perf_counter() - started
    overall = per_transformation["all"]
    metrics = {
        "clip mAP": overall["clip mAP"],
        "photo hit rate": overall["photo hit rate"],
        "temporal IoU": overall["temporal IoU"],
        "clip mAP (pooled baseline)": overall["clip mAP (pooled)"],
        "clip mAP (chamfer baseline)": overall["clip mAP (chamfer)"],
    }
    frames = sum(len(d.times) for d in described)
    video_seconds = sum(d.duration for d in described)
    config = {
        "data": str(folder),
        "sources": len(sources),
        "copies": len(copies),
        "distractors": len(distractors),
        "clip queries": len(queries),
        "photo queries": len(photos),
        "database frames": frames,
        "database video seconds": round(video_seconds, 1),
        "frames per video second": round(frames / max(video_seconds, 1e-9), 3),
        "descriptor bytes per frame": int(described[0].vectors.shape[1] * 4),
        "protocol": {key: (list(value) if isinstance(value, tuple) else value) for key, value in asdict(protocol).items()},
        "encoder": choice.describe(),
        "per_transformation": per_transformation,
        "seconds": {key: round(value, 2) for key, value in seconds.items()},
    }
    notes = [f"time window of a photo hit: the moment's span widened by {1 / protocol.rate:g} s on each side"]
    return EvaluationResult("videos", metrics, config, notes, skipped=skipped)


def _readable(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    readable, skipped = [], []
    for path in paths:
        try:
            probe(path)
            readable.append(path)
        except VideoError as error:
            skipped.append((path, error.reason))
    return readable, skipped


def _queries(source: Path, number: int, encoder, protocol: VideoProtocol, rng: np.random.Generator) -> tuple[_Query, list[_Photo]]:
    """The clip excerpt (sampled at the protocol's rate from its own start) and the photo frames of a source."""
    frames = list(source_frames(source, encoder.spec.image_size, protocol.max_seconds))
    times = np.array([t for t, _ in frames])
    end = times[-1]
    length = min(protocol.query_seconds, end)
    start = float(rng.uniform(0.0, max(0.0, end - length)))
    grid = start + np.arange(max(1, int(np.floor(length * protocol.rate + 1e-9)))) / protocol.rate
    picked = np.unique(np.minimum(np.searchsorted(times, grid - 1e-9), len(times) - 1))
    clip_images = [Image.fromarray(frames[i][1]) for i in picked]
    photo_rows = rng.choice(len(frames), size=min(protocol.photos, len(frames)), replace=False)
    vectors = encoder.encode_images(clip_images + [Image.fromarray(frames[i][1]) for i in photo_rows])
    query = _Query(number, vectors[: len(picked)], times[picked] - start, (start, start + length))
    photos = [_Photo(number, vectors[len(picked) + k], float(times[row])) for k, row in enumerate(photo_rows)]
    return query, photos


def _score(copies, members, described, queries, photos, protocol) -> dict:
    """Clip mAP (alignment, pooled, chamfer), temporal IoU and photo hit rate over ``members`` plus the distractors."""
    videos = members + list(range(len(copies), len(described)))
    table = FrameTable.of([(described[v].vectors, described[v].times, described[v].duration) for v in videos])
    source_of = np.array([copies[v].source if v < len(copies) else -1 for v in videos])
    _, pooled = table.pooled()
    ap = {"clip mAP": [], "clip mAP (pooled)": [], "clip mAP (chamfer)": []}
    ious = []
    for query in queries:
        positives = source_of == query.source
        if not positives.any():
            continue
        duration = query.times[-1] + 1.0 / protocol.rate
        matches = search_clip(table, query.vectors, query.times, duration, prefilter=len(videos), limit=None)
        aligned = np.full(len(videos), -np.inf)
        for match in matches:
            aligned[match.video] = match.score
        ap["clip mAP"].append(_average_precision(aligned, positives))
        ap["clip mAP (pooled)"].append(_average_precision(pooled @ l2_normalise(query.vectors.mean(axis=0)), positives))
        chamfer = np.array([chamfer_similarity(query.vectors @ table.vectors[table.rows_of(v)].T) for v in range(len(videos))])
        ap["clip mAP (chamfer)"].append(_average_precision(chamfer, positives))
        for match in matches:
            if positives[match.video]:
                copy = copies[videos[match.video]]
                truth = (copy.time_in_copy(query.span[0]), copy.time_in_copy(query.span[1]))
                ious.append(temporal_iou(match.video_span, truth))
    hits = []
    tolerance = 1.0 / protocol.rate
    for photo in photos:
        if not (source_of == photo.source).any():
            continue
        scores = table.vectors @ photo.vector
        moments = photo_moments(table, np.arange(len(scores)), scores, limit=1)
        best = moments[0]
        hit = source_of[best.video] == photo.source
        if hit:
            moment_time = copies[videos[best.video]].time_in_copy(photo.time)
            hit = best.t_start - tolerance <= moment_time <= best.t_end + tolerance
        hits.append(float(hit))
    result = {name: 100.0 * float(np.mean(values)) if values else float("nan") for name, values in ap.items()}
    result["temporal IoU"] = 100.0 * float(np.mean(ious)) if ious else float("nan")
    result["photo hit rate"] = 100.0 * float(np.mean(hits)) if hits else float("nan")
    return {key: round(value, 2) for key, value in result.items()}


def _average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of a full ranking by ``scores`` (ties broken by position)."""
    order = np.argsort(-scores, kind="stable")
    found = positives[order]
    ranks = np.flatnonzero(found) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks)) if len(ranks) else 0.0
