"""Writing videos with PyAV: frames (RGB arrays) in, an encoded file out.

Used to generate test videos and the edited copies of the video evaluation.
Frames get explicit presentation times, so a variable frame rate is written
as it is given.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

TIME_BASE = Fraction(1, 1000)


class VideoWriter:
    """An open video file; ``write`` frames in display order, then ``close`` (or use ``with``).

    ``rotation`` stores a display matrix (degrees counter-clockwise) instead
    of turning the pixels; ``sample_aspect`` stores non-square pixels;
    ``pixel_format`` ``yuv420p10le`` writes 10-bit video. ``quality`` is x264's CRF and
    ``preset`` its speed preset; other codecs get ``bit_rate`` (bits per second).
    """

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int],
        fps: float = 25.0,
        codec: str = "libx264",
        pixel_format: str = "yuv420p",
        quality: int = 23,
        bit_rate: int = 500_000,
        preset: str = "veryfast",
        rotation: int = 0,
        sample_aspect: Fraction | None = None,
    ):
        import av

        self.path = Path(path)
        self.size = size
        self.fps = fps
        self.container = av.open(str(self.path), "w")
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = pixel_format
        self.stream.time_base = TIME_BASE
        self.stream.codec_context.time_base = TIME_BASE
        if codec == "libx264":
            self.stream.options = {"crf": str(quality), "preset": preset}
        else:
            self.stream.bit_rate = bit_rate
        if sample_aspect is not None:
            self.stream.codec_context.sample_aspect_ratio = sample_aspect
        if rotation:
            self.stream.set_display_rotation(rotation)
        self.frames = 0
        self._last_pts = -1

    def write(self, pixels: np.ndarray, time: float | None = None) -> None:
        """Add one H x W x 3 uint8 RGB frame shown at ``time`` seconds (default: the next frame at ``fps``)."""
        import av

        if pixels.shape[1::-1] != self.size:
            raise ValueError(f"frame is {pixels.shape[1]}x{pixels.shape[0]}, the video {self.size[0]}x{self.size[1]}")
        pts = round((time if time is not None else self.frames / self.fps) / TIME_BASE)
        if pts <= self._last_pts:
            raise ValueError(f"frame times must increase: {pts * TIME_BASE} s after {self._last_pts * TIME_BASE} s")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels, dtype=np.uint8), format="rgb24")
        frame.pts, frame.time_base = pts, TIME_BASE
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        self._last_pts = pts

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.container.close()
