"""Videos with known shot boundaries: segments of real clips and generated scenes, cut or dissolved together."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from cbir.evaluation.video_copies import synthetic_frames
from cbir.io.video import Sampling, VideoScan
from cbir.io.video_writer import VideoWriter


@dataclass
class Montage:
    """A written montage and its ground truth: indices of the first frame of each new shot."""

    path: Path
    cuts: list[int] = field(default_factory=list)  # hard cuts
    dissolves: list[tuple[int, int]] = field(default_factory=list)  # (first, last) frame of each dissolve
    frames: int = 0


def clip_frames(path: Path, start: float, length: float, fps: float, size: tuple[int, int]) -> list[np.ndarray]:
    """Frames of ``path`` from ``start`` for ``length`` seconds at a constant ``fps`` (the latest frame at each tick)."""
    wanted = [start + k / fps for k in range(max(1, round(length * fps)))]
    out: list[np.ndarray] = []
    latest = None
    for frame in VideoScan(path, Sampling(rate=1000.0)):
        while len(out) < len(wanted) and frame.time > wanted[len(out)] + 1e-6 and latest is not None:
            out.append(latest)
        latest = frame.pixels
        if len(out) == len(wanted):
            break
    while len(out) < len(wanted) and latest is not None:
        out.append(latest)
    return [np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR)) for pixels in out]


def write_montage(
    path: Path, sources: Sequence[Path], rng: np.random.Generator, shots: int = 12, fps: float = 25.0,
    size: tuple[int, int] = (384, 216), dissolve_share: float = 0.25, dissolve_frames: int = 10,
) -> Montage:
    """A montage of ``shots`` segments (1-5 s) from random sources or generated scenes, joined by hard
    cuts or (``dissolve_share`` of the joins) cross-dissolves of ``dissolve_frames`` frames."""
    montage = Montage(path)
    with VideoWriter(path, size, fps, quality=18) as writer:
        held: list[np.ndarray] = []  # the last frames of the previous segment, kept for a dissolve
        previous: Path | None = None
        for number in range(shots):
            segment, previous = _segment(sources, previous, rng, fps, size)
            if held and rng.random() < dissolve_share:
                montage.dissolves.append((montage.frames, montage.frames + dissolve_frames - 1))
                for k, (old, new) in enumerate(zip(held, segment)):
                    weight = (k + 1) / (dissolve_frames + 1)
                    writer.write(((1 - weight) * old + weight * new).astype(np.uint8))
                    montage.frames += 1
                segment = segment[len(held):]
            else:
                for pixels in held:
                    writer.write(pixels)
                    montage.frames += 1
                if number:
                    montage.cuts.append(montage.frames)
            keep = dissolve_frames if number + 1 < shots else 0
            for pixels in segment[: len(segment) - keep]:
                writer.write(pixels)
                montage.frames += 1
            held = segment[len(segment) - keep :] if keep else []
    return montage


def _segment(
    sources: Sequence[Path], previous: Path | None, rng: np.random.Generator, fps: float, size: tuple[int, int]
) -> tuple[list[np.ndarray], Path | None]:
    """A segment of 1.5-5 s from a source other than ``previous``, or a generated scene; and its source."""
    length = float(rng.uniform(1.5, 5.0))
    others = [source for source in sources if source != previous]
    if rng.random() < 0.25 or not others:
        return [pixels for _, pixels in synthetic_frames(rng, size, length, fps)], None
    source = others[int(rng.integers(len(others)))]
    start = float(rng.uniform(0, max(0.0, _duration(source) - length)))
    return clip_frames(source, start, length, fps, size), source


def _duration(path: Path) -> float:
    from cbir.io.video import probe

    return probe(path).duration or 0.0
