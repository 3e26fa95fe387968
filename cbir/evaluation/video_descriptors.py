"""Descriptors of a video's sampled frames, in memory: one streaming scan, frames encoded in batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cbir.encoders.encoder import DEFAULT_BATCH_SIZE, Encoder
from cbir.io.shots import make_shot_detector
from cbir.io.video import Sampling, Shot, VideoScan


@dataclass(frozen=True)
class VideoDescriptors:
    """The sampled frames of one video: descriptors, times and keyframe flags; its shots and length."""

    path: Path
    vectors: np.ndarray  # frames x D
    times: np.ndarray  # seconds
    keyframes: np.ndarray  # bool: first frame of a shot
    shots: list[Shot]
    duration: float


def describe_video(
    path: str | Path,
    encoder: Encoder,
    sampling: Sampling | None = None,
    shot_detector: str | None = "content",
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_frames: Callable[[float], None] | None = None,
) -> VideoDescriptors:
    """Scan ``path`` and encode its sampled frames (frames resized to the encoder's input size by default).

    ``on_frames`` gets the video seconds reached after each batch. Raises a
    ``VideoError`` when the video cannot be read whole.
    """
    sampling = sampling or Sampling(short_side=encoder.spec.image_size)
    detector = make_shot_detector(shot_detector) if shot_detector else None
    scan = VideoScan(path, sampling, detector)
    vectors, times, keyframes, batch = [], [], [], []

    def flush() -> None:
        if batch:
            vectors.append(encoder.encode_images([Image.fromarray(frame.pixels) for frame in batch]))
            times.extend(frame.time for frame in batch)
            keyframes.extend(frame.keyframe for frame in batch)
            if on_frames is not None:
                on_frames(batch[-1].time)
            batch.clear()

    for frame in scan:
        batch.append(frame)
        if len(batch) >= batch_size:
            flush()
    flush()
    return VideoDescriptors(
        Path(path), np.concatenate(vectors), np.asarray(times), np.asarray(keyframes, dtype=bool), scan.shots, scan.duration,
    )
