"""Edited copies of videos, with the time mapping that says where each source moment went.

The copy-detection protocol of ``cbir evaluate videos`` makes, from each
source video, one copy per transformation (``TRANSFORMATIONS``), seeded, with
PyAV; and synthetic distractor videos that copy nothing.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from cbir.io.video import Sampling, VideoScan
from cbir.io.video_writer import VideoWriter

TRANSFORMATIONS = ("reencode", "resize", "crop", "flip", "speed", "brighten", "insert")
SPEED = 1.5  # the "speed" copy plays this much faster
INSERT_PADDING = (3.0, 8.0)  # seconds of unrelated video before and after an "insert" copy


@dataclass(frozen=True)
class Copy:
    """A written copy: which source, which edit, and ``copy time = offset + source time / speed``."""

    path: Path
    source: int
    transformation: str
    offset: float = 0.0
    speed: float = 1.0

    def time_in_copy(self, source_time: float) -> float:
        return self.offset + source_time / self.speed


def source_frames(
    path: Path, short_side: int | None, max_seconds: float | None, max_fps: float = 1000.0
) -> Iterator[tuple[float, np.ndarray]]:
    """(time, RGB pixels) of the frames of ``path`` up to ``max_seconds``, at most ``max_fps`` per second,
    short side at most ``short_side``."""
    for frame in VideoScan(path, Sampling(rate=max_fps, short_side=short_side, shot_keyframes=False)):
        if max_seconds is not None and frame.time >= max_seconds:
            return
        yield frame.time, frame.pixels


def make_copies(
    source: Path, number: int, transformations: Sequence[str], folder: Path, rng: np.random.Generator,
    short_side: int | None = None, max_seconds: float | None = None, max_fps: float = 15.0,
) -> list[Copy]:
    """Write one copy of ``source`` per transformation into ``folder`` (.mp4 files), decoding the source once.

    Sources are read at ``max_fps`` frames per second at most, short side at
    most ``short_side``, for ``max_seconds`` at most.
    """
    unknown = sorted(set(transformations) - set(TRANSFORMATIONS))
    if unknown:
        raise ValueError(f"unknown transformation {', '.join(unknown)}: choose from {', '.join(TRANSFORMATIONS)}")
    frames = source_frames(source, short_side, max_seconds, max_fps)
    first_time, first = next(frames)
    height, width = first.shape[:2]
    outputs = []
    with contextlib.ExitStack() as stack:
        for name in transformations:
            edit, size = _pixel_edit(name, width, height, rng)
            speed = SPEED if name == "speed" else 1.0
            offset = float(rng.uniform(*INSERT_PADDING)) if name == "insert" else 0.0
            target = folder / f"{number:03d}-{source.stem}-{name}.mp4"
            writer = stack.enter_context(VideoWriter(
                target, size, fps=max_fps, codec="mpeg4" if name == "reencode" else "libx264",
                bit_rate=300_000, preset="ultrafast",
            ))
            if offset:
                for time, pixels in synthetic_frames(rng, size, offset, fps=max_fps):
                    writer.write(pixels, time)
            outputs.append((writer, edit, Copy(target, number, name, offset, speed)))
        last = 0.0
        for time, pixels in itertools.chain([(first_time, first)], frames):
            last = time
            for writer, edit, copy in outputs:
                writer.write(edit(pixels), copy.time_in_copy(time))
        for writer, _, copy in outputs:
            if copy.transformation == "insert":
                start = copy.time_in_copy(last) + 1.0 / max_fps
                for time, pixels in synthetic_frames(rng, writer.size, float(rng.uniform(*INSERT_PADDING)), fps=max_fps):
                    writer.write(pixels, start + time)
    return [copy for _, _, copy in outputs]


def _even(value: int) -> int:
    return max(2, value - value % 2)


def _pixel_edit(transformation: str, width: int, height: int, rng: np.random.Generator) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int]]:
    """The per-frame edit and the copy's (width, height)."""
    same = (_even(width), _even(height))
    if transformation == "resize":
        size = (_even(width // 2), _even(height // 2))
        return (lambda pixels: np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))), size
    if transformation == "crop":
        keep = 0.7
        crop_w, crop_h = _even(int(width * keep)), _even(int(height * keep))
        left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
        return (lambda pixels: pixels[top : top + crop_h, left : left + crop_w]), (crop_w, crop_h)
    if transformation == "flip":
        return (lambda pixels: pixels[: same[1], : same[0]][:, ::-1]), same
    if transformation == "brighten":
        return (lambda pixels: np.clip(pixels[: same[1], : same[0]].astype(np.int16) * 1.1 + 40, 0, 255).astype(np.uint8)), same
    return (lambda pixels: pixels[: same[1], : same[0]]), same


def synthetic_frames(rng: np.random.Generator, size: tuple[int, int], seconds: float, fps: float = 25.0) -> Iterator[tuple[float, np.ndarray]]:
    """A made-up scene: a random picture of shapes panned across the frame, ``seconds`` long."""
    width, height = size
    canvas = Image.new("RGB", (width * 2, height), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(25):
        x, y = int(rng.integers(0, width * 2)), int(rng.integers(0, height))
        w, h = int(rng.integers(8, max(9, width // 2))), int(rng.integers(8, max(9, height // 2)))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
    pixels = np.asarray(canvas)
    speed = float(rng.uniform(0.5, 3.0))
    for k in range(max(1, round(seconds * fps))):
        shift = int(k * speed) % width
        yield k / fps, pixels[:, shift : shift + width]


def make_distractor(target: Path, rng: np.random.Generator, size: tuple[int, int] = (320, 180)) -> Path:
    """A synthetic video of 2-4 made-up scenes, 10-20 s, that copies no source."""
    with VideoWriter(target, size, fps=25.0, preset="ultrafast") as writer:
        start = 0.0
        for _ in range(int(rng.integers(2, 5))):
            seconds = float(rng.uniform(3.0, 6.0))
            for time, pixels in synthetic_frames(rng, size, seconds):
                writer.write(pixels, start + time)
            start += seconds + 0.04
    return target
