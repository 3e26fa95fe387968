"""Video retrieval end to end with the real encoder: moments of a photo, copies of a clip, the evaluation command."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("scenedetect")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cbir.evaluation.video_copies import make_copies, synthetic_frames  # noqa: E402
from cbir.pipelines.video import describe_video  # noqa: E402
from cbir.io.video import Sampling  # noqa: E402
from cbir.search.temporal import FrameTable, photo_moments, search_clip  # noqa: E402
from tests.video_support import FPS, SIZE, write_scenes  # noqa: E402


def test_a_photo_finds_its_moment(tmp_path, encoder):
    video = write_scenes(tmp_path / "three.mp4", [11, 12, 13])
    other = write_scenes(tmp_path / "other.mp4", [21, 22])
    described = [describe_video(path, encoder, Sampling(rate=2.0)) for path in (video, other)]
    assert [shot.start for shot in described[0].shots] == pytest.approx([0.0, 2.0, 4.0])
    table = FrameTable.of([(d.vectors, d.times, d.duration) for d in described])
    frames = list(synthetic_frames(np.random.default_rng(12), SIZE, 2.0, FPS))
    photo = encoder.encode_images([Image.fromarray(frames[8][1])])[0]  # 0.8 s into the second scene: 2.8 s
    moments = photo_moments(table, np.arange(len(table.vectors)), table.vectors @ photo)
    best = moments[0]
    assert best.video == 0
    assert 1.5 <= best.t_start <= 2.8 <= best.t_end <= 4.0
    assert best.t_end - best.t_start >= 0.5  # adjacent matching frames merged into one segment


def test_a_clip_ranks_its_edited_copies_first(tmp_path, encoder):
    sources = [write_scenes(tmp_path / f"source{k}.mp4", [30 + 2 * k, 31 + 2 * k]) for k in range(3)]
    rng = np.random.default_rng(0)
    copies = make_copies(sources[1], 1, ("flip", "speed", "insert"), tmp_path, rng)
    database = [*sources[::2], *(copy.path for copy in copies)]  # sources 0 and 2, then the copies of source 1
    sampling = Sampling(rate=2.0)
    described = [describe_video(path, encoder, sampling) for path in database]
    table = FrameTable.of([(d.vectors, d.times, d.duration) for d in described])
    query = describe_video(sources[1], encoder, sampling)
    keep = (query.times >= 1.0) & (query.times < 3.0)  # the excerpt 1-3 s, across the cut
    matches = search_clip(table, query.vectors[keep], query.times[keep] - 1.0, 2.0, limit=None)
    assert {match.video for match in matches[:3]} == {2, 3, 4}
    for match in matches[:3]:
        copy = copies[match.video - 2]
        truth = (copy.time_in_copy(1.0), copy.time_in_copy(3.0))
        assert abs(match.video_span[0] - truth[0]) <= 0.6 and abs(match.video_span[1] - truth[1]) <= 0.6


def test_evaluate_videos_command(tmp_path):
    from cbir.cli import app

    folder = tmp_path / "sources"
    folder.mkdir()
    for k in range(2):
        write_scenes(folder / f"clip{k}.mp4", [40 + 2 * k, 41 + 2 * k], seconds=2.5)
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    output = tmp_path / "result.json"
    result = CliRunner().invoke(app, [
        "evaluate", "videos", str(folder), "--work", str(tmp_path / "work"), "-t", "flip", "-t", "insert",
        "--distractors", "1", "--query-seconds", "3", "--photos", "2", "--rate", "2", "--json", str(output),
    ])
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    per = document["config"]["per_transformation"]
    assert set(per) == {"flip", "insert", "all"}
    for name in ("flip", "insert", "all"):
        assert per[name]["clip mAP"] == 100.0
        assert per[name]["photo hit rate"] == 100.0
        assert per[name]["temporal IoU"] > 50.0
    assert document["config"]["copies"] == 4
    assert [entry["file"].endswith("broken.mp4") for entry in document["skipped"]] == [True]
    bad = CliRunner().invoke(app, ["evaluate", "videos", str(folder), "-t", "mirror"])
    assert bad.exit_code == 2 and "unknown transformation mirror" in bad.output
