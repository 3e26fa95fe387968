"""Videos written by the tests (PyAV): generated scenes with hard cuts at known times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cbir.evaluation.video_copies import synthetic_frames
from cbir.io.video_writer import VideoWriter

SIZE = (128, 96)
FPS = 10.0


def write_scenes(path: Path, seeds: list[int], seconds: float = 2.0, codec: str = "libx264") -> Path:
    """One generated scene per seed, hard cuts between them (at multiples of ``seconds``)."""
    with VideoWriter(path, SIZE, FPS, codec=codec) as writer:
        start = 0.0
        for seed in seeds:
            for time, pixels in synthetic_frames(np.random.default_rng(seed), SIZE, seconds, FPS):
                writer.write(pixels, start + time)
            start += seconds
    return path


def scene_frame(seed: int, index: int) -> Image.Image:
    """Frame ``index`` of the scene ``seed`` (at ``index / FPS`` seconds into it)."""
    return Image.fromarray(list(synthetic_frames(np.random.default_rng(seed), SIZE, 2.0, FPS))[index][1])
