"""Search in time: photo -> moments, clip -> videos with aligned segments, shot descriptors. Pure numpy.

Frames of many videos live in one ``FrameTable``: one row per sampled frame,
the rows of a video contiguous and in time order, each frame standing for the
span from its time to the next sampled frame's.

* ``photo_moments``: the frames that match a photo (all, or the top hits of
  an index), merged into moments: runs of adjacent frames of one video that
  score within ``margin`` of that video's best frame, one segment each.
* ``search_clip``: videos ranked for a query clip. Pooled video vectors
  prefilter the candidates; each candidate's frame-to-frame similarity
  matrix with the query is aligned (``align``: the best monotonic path that
  visits every query frame, stepping 0, 1 or 2 video frames per query frame,
  so copies sped up or slowed down by up to 2x still align), and the mean
  similarity along the path ranks it. The path gives the matching segment.
* ``pool_groups``: mean-pooled, L2-normalised descriptors of frame groups
  (shots, whole videos).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_MARGIN = 0.05
DEFAULT_SKIP_PENALTY = 0.02
DEFAULT_PREFILTER = 100


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def frame_ends(times: Sequence[float], duration: float) -> np.ndarray:
    """The end of each sampled frame's span: the next frame's time, the video's end for the last."""
    times = np.asarray(times, dtype=np.float64)
    return np.append(times[1:], max(duration, times[-1])) if len(times) else times


def pool_groups(vectors: np.ndarray, groups: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(group ids in sorted order, one L2-normalised mean descriptor per group)."""
    groups = np.asarray(groups)
    ids, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(ids), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, vectors)
    return ids, l2_normalise(sums).astype(np.float32)


@dataclass(frozen=True)
class FrameTable:
    """Sampled frames of many videos: descriptor, video number and time span of each row."""

    vectors: np.ndarray  # N x D, L2-normalised
    video: np.ndarray  # N video numbers; a video's rows are contiguous and in time order
    start: np.ndarray  # N seconds
    end: np.ndarray  # N seconds
    position: np.ndarray | None = None  # N frame numbers within their video (None: the rows are all of each video's frames)

    @classmethod
    def of(cls, videos: Sequence[tuple[np.ndarray, Sequence[float], float]]) -> "FrameTable":
        """From (frame vectors, frame times, duration) per video, numbered in order."""
        vectors = [np.asarray(v, dtype=np.float32) for v, _, _ in videos]
        dim = next((v.shape[1] for v in vectors if v.ndim == 2 and len(v)), 0)
        return cls(
            vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
            video=np.concatenate([np.full(len(v), number, dtype=np.int64) for number, v in enumerate(vectors)]) if vectors else np.zeros(0, np.int64),
            start=np.concatenate([np.asarray(t, dtype=np.float64) for _, t, _ in videos]) if videos else np.zeros(0),
            end=np.concatenate([frame_ends(t, d) for _, t, d in videos]) if videos else np.zeros(0),
        )

    def rows_of(self, video: int) -> slice:
        """The rows of one video."""
        first = int(np.searchsorted(self.video, video, side="left"))
        last = int(np.searchsorted(self.video, video, side="right"))
        return slice(first, last)

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """(video numbers, pooled video vectors)."""
        return pool_groups(self.vectors, self.video)


@dataclass(frozen=True)
class Moment:
    """A run of adjacent matching frames of one video."""

    video: int
    t_start: float
    t_end: float
    score: float  # the best frame's similarity
    best_row: int  # the best frame (for a thumbnail)
    first_row: int
    last_row: int


def photo_moments(
    table: FrameTable,
    rows: np.ndarray,
    scores: np.ndarray,
    margin: float = DEFAULT_MARGIN,
    max_gap: int = 1,
    limit: int | None = 10,
) -> list[Moment]:
    """Moments from frame hits (``rows`` of ``table`` with their ``scores``), best first.

    A video's hits within ``margin`` of its best hit are kept; kept rows at
    most ``max_gap`` missing frames apart (by ``table.position`` when the
    table holds only some frames of each video) merge into one moment.
    """
    rows, scores = np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    if len(rows) == 0:
        return []
    videos = table.video[rows]
    best = np.full(int(videos.max()) + 1, -np.inf)
    np.maximum.at(best, videos, scores)
    kept = scores >= best[videos] - margin
    order = np.lexsort((rows[kept], videos[kept]))
    rows, scores, videos = rows[kept][order], scores[kept][order], videos[kept][order]
    positions = rows if table.position is None else table.position[rows]
    breaks = np.flatnonzero((np.diff(videos) != 0) | (np.diff(positions) > max_gap + 1)) + 1
    moments = []
    for members in np.split(np.arange(len(rows)), breaks):
        peak = members[np.argmax(scores[members])]
        first, last = int(rows[members[0]]), int(rows[members[-1]])
        moments.append(Moment(int(videos[peak]), float(table.start[first]), float(table.end[last]), float(scores[peak]), int(rows[peak]), first, last))
    moments.sort(key=lambda moment: -moment.score)
    return moments if limit is None else moments[:limit]


@dataclass(frozen=True)
class Alignment:
    """The best monotonic path of a query clip through a video's frames."""

    score: float  # mean similarity along the path, step penalties included
    path: np.ndarray  # (query frame, video frame) pairs, one per query frame

    @property
    def video_frames(self) -> tuple[int, int]:
        return int(self.path[0, 1]), int(self.path[-1, 1])


def chamfer_similarity(similarity: np.ndarray) -> float:
    """Mean over query frames of their best similarity anywhere in the video (no temporal order)."""
    return float(similarity.max(axis=1).mean())


def align(similarity: np.ndarray, skip_penalty: float = DEFAULT_SKIP_PENALTY) -> Alignment:
    """Subsequence alignment of the query (rows) in the video (columns) of a similarity matrix.

    Every query frame is matched to one video frame; from one query frame to
    the next the video advances 1 frame, or 0 or 2 at a cost of
    ``skip_penalty``; the path may start and end anywhere in the video.
    """
    rows, columns = similarity.shape
    if rows == 0 or columns == 0:
        raise ValueError("cannot align an empty query or video")
    total = similarity[0].astype(np.float64)
    choices = np.zeros((rows, columns), dtype=np.int8)  # video step taken to reach each cell
    candidates = np.full((3, columns), -np.inf)
    for row in range(1, rows):
        candidates[0] = total - skip_penalty
        candidates[1, 1:] = total[:-1]
        candidates[2, 2:] = total[:-2] - skip_penalty
        step = np.argmax(candidates, axis=0)
        choices[row] = step
        total = similarity[row] + candidates[step, np.arange(columns)]
    column = int(np.argmax(total))
    score = float(total[column]) / rows
    path = np.empty((rows, 2), dtype=np.int64)
    for row in range(rows - 1, -1, -1):
        path[row] = row, column
        column -= int(choices[row, column])
    return Alignment(score, path)


@dataclass(frozen=True)
class ClipMatch:
    """A video that contains the query clip, with the aligned segments."""

    video: int
    score: float
    video_span: tuple[float, float]  # seconds in the matched video
    query_span: tuple[float, float]  # seconds in the query clip


def search_clip(
    table: FrameTable,
    query_vectors: np.ndarray,
    query_times: Sequence[float],
    query_duration: float,
    prefilter: int = DEFAULT_PREFILTER,
    limit: int | None = 10,
    skip_penalty: float = DEFAULT_SKIP_PENALTY,
) -> list[ClipMatch]:
    """Videos of ``table`` ranked for a query clip (its sampled frames' vectors and times), best first.

    The ``prefilter`` videos whose pooled vectors are closest to the query's
    are aligned frame by frame; the others are not returned.
    """
    query_vectors = np.asarray(query_vectors, dtype=np.float32)
    if len(query_vectors) == 0 or len(table.vectors) == 0:
        return []
    video_ids, pooled = table.pooled()
    closeness = pooled @ l2_normalise(query_vectors.mean(axis=0))
    candidates = video_ids[np.argsort(-closeness, kind="stable")[:prefilter]]
    query_ends = frame_ends(query_times, query_duration)
    matches = []
    for video in candidates:
        rows = table.rows_of(int(video))
        alignment = align(query_vectors @ table.vectors[rows].T, skip_penalty)
        first, last = alignment.video_frames
        matches.append(ClipMatch(
            int(video), alignment.score,
            (float(table.start[rows][first]), float(table.end[rows][last])),
            (float(query_times[0]), float(query_ends[-1])),
        ))
    matches.sort(key=lambda match: -match.score)
    return matches if limit is None else matches[:limit]
