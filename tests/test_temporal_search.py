"""Temporal search on hand-made descriptors: moments, alignment, clip ranking, pooling."""

from __future__ import annotations

import numpy as np
import pytest

from cbir.search.temporal import (
    FrameTable, align, chamfer_similarity, frame_ends, l2_normalise, photo_moments, pool_groups, search_clip,
)


def random_video(rng: np.random.Generator, frames: int, dim: int = 32, drift: float = 0.3) -> np.ndarray:
    """Unit vectors that change slowly from frame to frame, as a video's frame descriptors do."""
    steps = rng.normal(size=(frames, dim)) * drift
    steps[0] = rng.normal(size=dim)
    return l2_normalise(np.cumsum(steps, axis=0)).astype(np.float32)


def table_of(videos: list[np.ndarray]) -> FrameTable:
    return FrameTable.of([(vectors, np.arange(len(vectors), dtype=float), float(len(vectors))) for vectors in videos])


def test_frame_ends_follow_the_next_frame():
    assert frame_ends([0.0, 1.0, 2.5], 4.0).tolist() == [1.0, 2.5, 4.0]


def test_photo_moments_merge_adjacent_frames_into_one_segment():
    table = table_of([np.eye(4, 8, dtype=np.float32)[[0, 1, 2, 3, 0, 1]], np.eye(4, 8, dtype=np.float32)])
    scores = np.array([0.1, 0.9, 0.93, 0.2, 0.1, 0.95, 0.3, 0.1, 0.5, 0.2])
    moments = photo_moments(table, np.arange(len(scores)), scores, margin=0.05)
    first = moments[0]
    assert (first.video, first.t_start, first.t_end, first.score, first.best_row) == (0, 5.0, 6.0, 0.95, 5)
    second = moments[1]
    assert (second.video, second.t_start, second.t_end, second.best_row) == (0, 1.0, 3.0, 2)
    assert moments[2].video == 1 and moments[2].best_row == 8
    assert len(photo_moments(table, np.arange(len(scores)), scores, limit=1)) == 1


def test_photo_moments_bridge_one_missing_frame_only():
    table = table_of([np.eye(8, 8, dtype=np.float32)])
    rows, scores = np.array([1, 3, 6]), np.array([0.9, 0.9, 0.9])
    spans = sorted((m.t_start, m.t_end) for m in photo_moments(table, rows, scores, max_gap=1))
    assert spans == [(1.0, 4.0), (6.0, 7.0)]


def test_align_finds_an_inserted_copy_at_its_offset():
    rng = np.random.default_rng(0)
    query = random_video(rng, 10)
    video = np.concatenate([random_video(rng, 15), query, random_video(rng, 5)])
    alignment = align(query @ video.T)
    assert alignment.video_frames == (15, 24)
    assert alignment.score == pytest.approx(1.0, abs=1e-5)


def test_align_follows_a_copy_played_faster():
    rng = np.random.default_rng(1)
    source = random_video(rng, 30, drift=0.5)
    faster = source[::2]  # twice as fast: the video advances 2 source frames per frame
    slower_query = source[:20]
    alignment = align(slower_query @ faster.T)
    assert alignment.video_frames[0] == 0 and alignment.video_frames[1] in (9, 10)  # source frame 19 is between 18 and 20
    assert alignment.score > 0.9
    reverse = align(faster[:10] @ source.T)  # the query is the faster one: the video skips a frame each step
    assert reverse.video_frames == (0, 18)


def test_search_clip_ranks_the_copy_first_and_returns_its_segment():
    rng = np.random.default_rng(2)
    sources = [random_video(rng, 40) for _ in range(5)]
    noisy_copy = l2_normalise(sources[3][10:30] + rng.normal(size=(20, 32)).astype(np.float32) * 0.05)
    table = table_of([*sources[:3], np.concatenate([random_video(rng, 7), noisy_copy]), sources[4]])
    query_times = np.arange(20, dtype=float)
    matches = search_clip(table, sources[3][10:30], query_times, 20.0)
    assert matches[0].video == 3
    assert matches[0].video_span == (7.0, 27.0)
    assert matches[0].query_span == (0.0, 20.0)
    assert matches[0].score > matches[1].score + 0.2
    assert len(search_clip(table, sources[3][10:30], query_times, 20.0, prefilter=2)) == 2


def test_chamfer_ignores_order_where_alignment_does_not():
    rng = np.random.default_rng(3)
    query = l2_normalise(rng.normal(size=(12, 32))).astype(np.float32)
    shuffled = query[rng.permutation(12)]
    similarity = query @ shuffled.T
    assert chamfer_similarity(similarity) == pytest.approx(1.0, abs=1e-5)
    assert align(similarity).score < 0.6


def test_pool_groups_gives_unit_means_per_group():
    vectors = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    ids, pooled = pool_groups(vectors, [7, 7, 2])
    assert ids.tolist() == [2, 7]
    np.testing.assert_allclose(pooled, [[1, 0], [2**-0.5, 2**-0.5]], atol=1e-6)
