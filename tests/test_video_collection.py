"""Videos in a collection, through the command line: frames and shots indexed beside photos, damaged
files skipped whole, a photo's moments, a clip's copies ranked first, re-index, sync and interruption."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("scenedetect")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cbir.cli import app  # noqa: E402
from cbir.evaluation.video_copies import make_copies  # noqa: E402
from tests.video_support import scene_frame, write_scenes  # noqa: E402


def write_audio_only(path):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


def run(*arguments: str) -> dict | str:
    result = CliRunner().invoke(app, [str(argument) for argument in arguments])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in arguments else result.stdout


def items(collection, uri=None) -> list[tuple]:
    with sqlite3.connect(collection / "catalog.sqlite") as connection:
        query = "SELECT kind, uri, t_start, t_end, metadata FROM items"
        rows = connection.execute(query + (" WHERE uri = ? ORDER BY id" if uri else " ORDER BY id"), (str(uri),) if uri else ()).fetchall()
    return [(kind, path, start, end, json.loads(metadata)) for kind, path, start, end, metadata in rows]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A folder of photos and videos (with damaged ones), indexed once."""
    root = tmp_path_factory.mktemp("videos")
    folder = root / "library"
    folder.mkdir()
    write_scenes(folder / "three.mp4", [11, 12, 13])
    write_scenes(folder / "other.mp4", [21, 22])
    scene_frame(40, 5).save(folder / "photo.png")
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    write_audio_only(folder / "voice.mp4")
    whole = write_scenes(root / "whole.mkv", [5, 6], seconds=2.5)
    (folder / "cut.mkv").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    collection = root / "collection"
    report = run("index", folder, "--collection", collection, "--json")
    return folder, collection, report


def test_videos_are_indexed_as_frames_and_shots_beside_photos(library):
    folder, collection, report = library
    assert report["added"] == 1 and report["videos"]["added"] == 2
    reasons = {entry["uri"].rsplit("/", 1)[-1]: entry["reason"] for entry in report["videos"]["skipped"]}
    assert set(reasons) == {"broken.mp4", "voice.mp4", "cut.mkv"}
    assert "no video stream" in reasons["voice.mp4"] and "truncated" in reasons["cut.mkv"]
    for name in reasons:  # never half indexed
        assert items(collection, folder / name) == []
    three = items(collection, folder / "three.mp4")
    frames = [row for row in three if row[0] == "frame"]
    shots = [row for row in three if row[0] == "shot"]
    assert [start for _, _, start, _, _ in frames] == pytest.approx([0, 1, 2, 3, 4, 5], abs=0.01)
    assert [end for _, _, _, end, _ in frames] == pytest.approx([1, 2, 3, 4, 5, 6], abs=0.11)
    assert [value for _, _, start, end, _ in shots for value in (start, end)] == pytest.approx([0, 2, 2, 4, 4, 6], abs=0.11)  # the known cuts
    assert [meta["frames"] for *_, meta in shots] == [2, 2, 2]
    assert {kind for kind, *_ in items(collection)} == {"image", "frame", "shot"}


def test_a_photo_finds_its_moment(library, tmp_path):
    folder, collection, _ = library
    photo = tmp_path / "query.png"
    scene_frame(12, 8).save(photo)  # 0.8 s into the second scene of three.mp4: 2.8 s
    grid = tmp_path / "strips.png"
    found = run("search", photo, "--collection", collection, "--json", "--grid", grid)
    assert [hit["kind"] for hit in found["results"]] == ["image"]  # photos rank as photos, frames as moments
    best = found["moments"][0]
    assert best["uri"] == str(folder / "three.mp4")
    assert 2.0 <= best["t_start"] <= 2.8 <= best["t_end"] <= 4.0
    assert best["t_end"] - best["t_start"] >= 1.5  # the scene's two sampled frames merged into one moment
    assert best["score"] > found["moments"][1]["score"] + 0.05
    with Image.open(grid) as picture:
        assert picture.height >= 3 * 150  # query, the photo, one strip per moment
    table = run("search", photo, "--collection", collection)
    assert "moments in videos" in table and "0:02.0" in table


def test_reindex_keeps_unchanged_videos_and_replaces_changed_ones(library):
    folder, collection, _ = library
    again = run("index", folder, "--collection", collection, "--json")
    assert again["videos"]["added"] == 0 and again["videos"]["unchanged"] == 2 and again["videos"]["previously_skipped"] == 3
    write_scenes(folder / "other.mp4", [23, 24, 25, 26])
    changed = run("index", folder, "--collection", collection, "--json")
    assert changed["videos"]["updated"] == 1
    other = items(collection, folder / "other.mp4")
    assert sum(kind == "frame" for kind, *_ in other) == 8 and sum(kind == "shot" for kind, *_ in other) == 4
    (folder / "other.mp4").unlink()
    synced = run("index", folder, "--collection", collection, "--sync", "--json")
    assert synced["videos"]["removed"] == 1 and items(collection, folder / "other.mp4") == []
    assert synced["removed"] == 0 and len(items(collection, folder / "photo.png")) == 1


def test_no_video_leaves_videos_out(library, tmp_path):
    folder, _, _ = library
    report = run("index", folder, "--collection", tmp_path / "photos", "--no-video", "--json")
    assert report["added"] == 1 and "videos" not in report
    assert {kind for kind, *_ in items(tmp_path / "photos")} == {"image"}
    no_videos = CliRunner().invoke(app, ["search", str(folder / "three.mp4"), "--collection", str(tmp_path / "photos")])
    assert no_videos.exit_code == 2 and "holds no video" in no_videos.output
    unreadable = CliRunner().invoke(app, ["search", str(folder / "broken.mp4"), "--collection", str(library[1])])
    assert unreadable.exit_code == 2 and "the query clip cannot be read" in unreadable.output


def test_a_clip_ranks_its_copies_first_with_aligned_segments(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    sources = [write_scenes(tmp_path / f"source{k}.mp4", [30 + 3 * k, 31 + 3 * k, 32 + 3 * k]) for k in range(3)]
    for k in (0, 2):
        (folder / sources[k].name).write_bytes(sources[k].read_bytes())
    copies = make_copies(sources[1], 1, ("flip", "insert"), folder, np.random.default_rng(0))
    collection = tmp_path / "collection"
    run("index", folder, "--collection", collection, "--json")
    clip = write_scenes(tmp_path / "clip.mp4", [34, 35])  # seconds 2-6 of source 1 (its last two scenes)
    found = run("search", clip, "--collection", collection, "--json", "--grid", tmp_path / "clip.png")
    ranked = [hit["uri"] for hit in found["results"]]
    assert set(ranked[:2]) == {str(copy.path) for copy in copies}
    assert found["results"][1]["score"] > found["results"][2]["score"] + 0.05
    for hit in found["results"][:2]:
        copy = next(copy for copy in copies if str(copy.path) == hit["uri"])
        assert hit["t_start"] == pytest.approx(copy.time_in_copy(2.0), abs=0.6)
        assert hit["t_end"] == pytest.approx(copy.time_in_copy(6.0), abs=0.6)
        assert (hit["query_t_start"], hit["query_t_end"]) == pytest.approx((0.0, 4.0), abs=0.11)
    assert (tmp_path / "clip.png").is_file()
    flagged = run("search", clip, "--collection", collection, "--clip", "--json", "-k", "1")
    assert [hit["uri"] for hit in flagged["results"]] == ranked[:1]


def test_an_interrupted_video_leaves_none_of_its_items(tmp_path):
    from cbir.collection.collection import Collection
    from cbir.encoders.encoder import EncoderSpec, shared_encoder
    from cbir.pipelines.video import VideoPipeline

    folder = tmp_path / "videos"
    folder.mkdir()
    write_scenes(folder / "a.mp4", [1, 2])
    write_scenes(folder / "b.mp4", [3, 4, 5, 6])
    encoder = shared_encoder(EncoderSpec())

    class Interrupted(Exception):
        pass

    class FailingEncoder:  # the real encoder, stopped at its third batch as a kill would stop it
        def __init__(self):
            self.calls = 0

        def __getattr__(self, name):
            return getattr(encoder, name)

        def encode_images(self, images):
            self.calls += 1
            if self.calls == 3:
                raise Interrupted
            return encoder.encode_images(images)

    with Collection.create(tmp_path / "collection", EncoderSpec()) as store:
        with pytest.raises(Interrupted):
            store.add([folder], pipeline=VideoPipeline(FailingEncoder()), batch_size=2)
    partial = items(tmp_path / "collection")
    assert {uri for _, uri, *_ in partial} == {str(folder / "a.mp4")}  # b.mp4 was interrupted: none of it stored
    with Collection.open(tmp_path / "collection") as store:
        report = store.add([folder], pipeline=VideoPipeline(encoder), batch_size=2)
    assert report.added == 1 and report.unchanged == 1
    assert sum(kind == "frame" for kind, uri, *_ in items(tmp_path / "collection") if uri.endswith("b.mp4")) == 8


def test_killing_cbir_index_during_videos_leaves_only_whole_videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for number in range(4):
        write_scenes(folder / f"video{number}.mp4", [60 + 3 * number, 61 + 3 * number, 62 + 3 * number])
    collection = tmp_path / "collection"
    database = collection / "catalog.sqlite"
    command = [sys.executable, "-m", "cbir.cli", "index", str(folder), "--collection", str(collection), "--batch-size", "2", "--json"]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def per_video() -> dict[str, tuple[int, int]]:
        counts: dict[str, list[int]] = {}
        for kind, uri, *_ in items(collection):
            counts.setdefault(uri, [0, 0])[kind == "shot"] += 1
        return {Path(uri).name: tuple(count) for uri, count in counts.items()}

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        try:
            if database.exists() and per_video():
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    seen = per_video()
    assert 1 <= len(seen) < 4, f"could not kill between videos: {seen}"
    assert set(seen.values()) == {(6, 3)}  # each stored video whole: 6 frames, 3 shots
    finished = subprocess.run(command, capture_output=True, timeout=300, env=environment)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert per_video() == {f"video{number}.mp4": (6, 3) for number in range(4)}  # complete, nothing twice


def test_without_pyav_videos_are_left_for_later_not_skipped(library, tmp_path, monkeypatch):
    import importlib.util

    folder, _, _ = library
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "av" else find_spec(name, *rest))
    result = CliRunner().invoke(app, ["index", str(folder), "--collection", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "video file(s) not indexed" in result.output and "pip install 'cbir[video]'" in result.output
    monkeypatch.undo()
    with sqlite3.connect(tmp_path / "c" / "catalog.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM sources WHERE pipeline = 'video'").fetchone()[0] == 0
    report = run("index", folder, "--collection", tmp_path / "c", "--json")  # once installed, they are indexed
    assert report["videos"]["added"] >= 1
