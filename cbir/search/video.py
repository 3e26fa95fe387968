"""Videos in a collection: a photo's moments, and the videos that hold a query clip.

Frames and shots are items of the image space (``cbir.pipelines.video``).

* ``find_moments``: the photo's nearest ``frame`` items from the index,
  merged per video into moments (``temporal.photo_moments``: adjacent
  matching frames become one segment).
* ``find_clip``: a query clip's sampled frames against the collection's
  videos. Pooled video vectors (the shots' vectors, weighted by their frame
  counts) choose the candidates; only their frames are read from the catalog
  and aligned with the clip (``temporal.search_clip``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cbir.pipelines.image import IMAGE_SPACE
from cbir.pipelines.video import FRAME_KIND, SHOT_KIND, VideoDescriptors
from cbir.search.temporal import DEFAULT_MARGIN, DEFAULT_PREFILTER, FrameTable, l2_normalise, photo_moments, search_clip

if TYPE_CHECKING:
    from cbir.collection.collection import Collection, SearchResult

FRAMES_PER_MOMENT = 20  # frame hits fetched from the index per moment asked for
MIN_FRAME_HITS = 200


@dataclass(frozen=True)
class MomentHit:
    """Where a photo appears in a video: a segment of adjacent matching frames."""

    rank: int
    score: float
    uri: str
    t_start: float
    t_end: float
    best_time: float  # the best-matching frame's time
    frames: list[float]  # times of the matching frames, in order
    item_id: int  # the best-matching frame item

    def to_dict(self) -> dict:
        return {
            "rank": self.rank, "score": round(self.score, 6), "uri": self.uri, "kind": "moment",
            "t_start": round(self.t_start, 3), "t_end": round(self.t_end, 3), "best_time": round(self.best_time, 3),
            "frames": [round(time, 3) for time in self.frames], "item_id": self.item_id,
        }


@dataclass(frozen=True)
class ClipHit:
    """A video that holds the query clip, with the aligned segments in both."""

    rank: int
    score: float
    uri: str
    t_start: float  # in the matched video
    t_end: float
    query_start: float  # in the query clip
    query_end: float
    item_id: int  # the matched video's frame where the segment starts

    def to_dict(self) -> dict:
        return {
            "rank": self.rank, "score": round(self.score, 6), "uri": self.uri, "kind": "video",
            "t_start": round(self.t_start, 3), "t_end": round(self.t_end, 3),
            "query_t_start": round(self.query_start, 3), "query_t_end": round(self.query_end, 3), "item_id": self.item_id,
        }


def has_videos(store: Collection) -> bool:
    """Whether the collection holds frames of videos."""
    return store.catalog.counts_by_kind().get(FRAME_KIND, 0) > 0


def frame_hits_wanted(k: int) -> int:
    """How many frame hits to fetch from the index for ``k`` moments."""
    return max(MIN_FRAME_HITS, FRAMES_PER_MOMENT * k)


def find_moments(store: Collection, vector: np.ndarray, k: int = 10, margin: float = DEFAULT_MARGIN) -> list[MomentHit]:
    """The ``k`` best moments for a photo's raw descriptor (1-d), best first."""
    hits = store.search_vectors(vector[None], frame_hits_wanted(k), kinds=[FRAME_KIND], space=IMAGE_SPACE)[0]
    return moments_from_hits(hits, k, margin)


def moments_from_hits(hits: list[SearchResult], k: int = 10, margin: float = DEFAULT_MARGIN) -> list[MomentHit]:
    """Frame hits of a photo merged into its ``k`` best moments."""
    if not hits:
        return []
    hits.sort(key=lambda hit: (hit.uri, hit.metadata.get("frame", 0)))
    uris = list(dict.fromkeys(hit.uri for hit in hits))
    number = {uri: position for position, uri in enumerate(uris)}
    table = FrameTable(
        vectors=np.zeros((len(hits), 0), dtype=np.float32),
        video=np.array([number[hit.uri] for hit in hits], dtype=np.int64),
        start=np.array([hit.t_start for hit in hits], dtype=np.float64),
        end=np.array([hit.t_end for hit in hits], dtype=np.float64),
        position=np.array([hit.metadata.get("frame", 0) for hit in hits], dtype=np.int64),
    )
    scores = np.array([hit.score for hit in hits])
    moments = photo_moments(table, np.arange(len(hits)), scores, margin=margin, limit=k)
    return [
        MomentHit(
            rank, moment.score, uris[moment.video], moment.t_start, moment.t_end, float(table.start[moment.best_row]),
            [float(time) for time in table.start[moment.first_row : moment.last_row + 1]],
            hits[moment.best_row].item_id,
        )
        for rank, moment in enumerate(moments, start=1)
    ]


def pooled_videos(store: Collection) -> tuple[list[str], np.ndarray]:
    """(video URIs, one pooled L2-normalised vector each), from the stored shots."""
    shots = store.catalog.get_items(store.catalog.items_matching([SHOT_KIND]), with_vectors=True)
    sums: dict[str, np.ndarray] = {}
    for item in shots.values():
        weighted = np.asarray(item.vector, dtype=np.float64) * item.metadata.get("frames", 1)
        sums[item.uri] = sums[item.uri] + weighted if item.uri in sums else weighted
    uris = sorted(sums)
    if not uris:
        return [], np.zeros((0, store.space(IMAGE_SPACE).dim), dtype=np.float32)
    return uris, l2_normalise(np.stack([sums[uri] for uri in uris])).astype(np.float32)


def frame_table(store: Collection, uris: list[str]) -> tuple[FrameTable, np.ndarray]:
    """The stored frames of the videos ``uris`` (numbered in that order), raw descriptors L2-normalised,
    and the item id of each row."""
    vectors, video, start, end, ids = [], [], [], [], []
    for number, uri in enumerate(uris):
        items = store.catalog.get_items(store.catalog.item_ids_with_uri(uri), with_vectors=True)
        frames = sorted((item for item in items.values() if item.kind == FRAME_KIND), key=lambda item: item.metadata.get("frame", 0))
        vectors += [item.vector for item in frames]
        video += [number] * len(frames)
        start += [item.t_start for item in frames]
        end += [item.t_end for item in frames]
        ids += [item.id for item in frames]
    dim = store.space(IMAGE_SPACE).dim
    table = FrameTable(
        l2_normalise(np.asarray(vectors, dtype=np.float32).reshape(-1, dim)),
        np.asarray(video, dtype=np.int64), np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64),
    )
    return table, np.asarray(ids, dtype=np.int64)


def find_clip(store: Collection, clip: VideoDescriptors, k: int = 10, prefilter: int = DEFAULT_PREFILTER) -> list[ClipHit]:
    """The ``k`` videos of the collection that best hold ``clip``, by temporal alignment, best first.

    The ``prefilter`` videos with the closest pooled vectors are aligned.
    """
    uris, pooled = pooled_videos(store)
    if not uris or not len(clip.vectors):
        return []
    query = l2_normalise(np.asarray(clip.vectors, dtype=np.float32))
    closeness = pooled @ l2_normalise(query.mean(axis=0))
    candidates = [uris[i] for i in np.argsort(-closeness, kind="stable")[:prefilter]]
    table, ids = frame_table(store, candidates)
    matches = search_clip(table, query, clip.times, clip.duration, prefilter=len(candidates), limit=k)
    return [
        ClipHit(rank, match.score, candidates[match.video], *match.video_span, *match.query_span, _item_at(table, ids, match))
        for rank, match in enumerate(matches, start=1)
    ]


def _item_at(table: FrameTable, ids: np.ndarray, match) -> int:
    """The id of the matched video's frame where its segment starts."""
    rows = table.rows_of(match.video)
    first = int(np.searchsorted(table.start[rows], match.video_span[0], side="right")) - 1
    return int(ids[rows][max(first, 0)])
