"""Video decoding with PyAV: one streaming pass that samples frames and finds shots.

``VideoScan`` decodes a file from start to end without seeking, in bounded
memory whatever its length. It yields ``SampledFrame``s: one every
``1 / rate`` seconds of presentation time, plus the first frame of every
shot the shot detector reports (the shot's keyframe; the sampling grid
restarts there). Frames come out upright (display-matrix rotation applied),
with square pixels (sample aspect ratio corrected) and as 8-bit RGB whatever
the source bit depth. Times are the frames' presentation timestamps, so they
stay right under a variable frame rate.

A file that cannot be read raises a ``VideoError`` subclass that says why and
how far decoding got (``NoVideoStream``, ``VideoOpenError``,
``VideoDecodeError``, ``TruncatedVideo``): a consumer that sees one must
discard what it received, since the video was not read whole.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

import numpy as np

# A decode that stops more than this short of the stated duration is a truncated file.
TRUNCATION_TOLERANCE_S = 0.5
TRUNCATION_TOLERANCE_FRAMES = 3


class VideoError(Exception):
    """A video that could not be read whole; ``seconds_decoded``/``frames_decoded`` say how far it got."""

    def __init__(self, path: str | Path, reason: str, seconds_decoded: float = 0.0, frames_decoded: int = 0):
        self.path = Path(path)
        self.reason = reason
        self.seconds_decoded = seconds_decoded
        self.frames_decoded = frames_decoded
        progress = f" (decoded {frames_decoded} frames, {seconds_decoded:.1f} s, before it stopped)" if frames_decoded else ""
        super().__init__(f"{self.path.name}: {reason}{progress}")


class VideoOpenError(VideoError):
    """Not a file FFmpeg can open: missing, not a media container, or damaged beyond its header."""


class NoVideoStream(VideoError):
    """A media file without a video stream (audio only, subtitles, ...)."""


class VideoDecodeError(VideoError):
    """Decoding failed part way: corrupt data."""


class TruncatedVideo(VideoError):
    """The stream ended well before the duration the file states."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream."""

    path: Path
    codec: str
    pixel_format: str
    coded_size: tuple[int, int]  # (width, height) as stored
    display_size: tuple[int, int]  # (width, height) upright with square pixels
    rotation: int  # degrees counter-clockwise that display applies (display matrix)
    sample_aspect: Fraction  # pixel width / height
    frame_rate: float  # average frames per second (0 when unknown)
    duration: float | None  # seconds, None when the file does not say


@dataclass(frozen=True)
class SampledFrame:
    """One decoded frame kept by the sampler."""

    time: float  # presentation time, seconds from the first frame
    index: int  # position in decoding order among all frames
    pixels: np.ndarray  # H x W x 3 uint8 RGB, upright, square pixels
    keyframe: bool  # the first frame of a shot


@dataclass(frozen=True)
class Shot:
    """A shot: frames ``first_index`` to ``last_index``, shown from ``start`` to ``end`` seconds."""

    start: float
    end: float
    first_index: int
    last_index: int


@dataclass(frozen=True)
class Sampling:
    """Which frames a scan keeps and at what size."""

    rate: float = 1.0  # regular samples per second of video
    short_side: int | None = None  # resize kept frames so their short side is this (None: display size)
    shot_keyframes: bool = True  # also keep the first frame of every shot

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"sampling rate must be positive, got {self.rate}")
        if self.short_side is not None and self.short_side < 8:
            raise ValueError(f"short side must be at least 8 pixels, got {self.short_side}")


class ShotDetector(Protocol):
    """Finds shot changes in a stream of small frames, pushed one at a time in display order.

    ``push`` and ``finish`` return the decoding indices of frames that begin a
    new shot; a detector may report a cut up to ``latency`` frames after it happened.
    """

    def analysis_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) of the frames it wants for an upright video of this size."""
        ...

    def push(self, pixels: np.ndarray) -> list[int]:
        ...

    def finish(self) -> list[int]:
        ...

    latency: int  # at most how many frames after a shot's first frame ``push`` reports it


def probe(path: str | Path) -> VideoInfo:
    """The description of a video's first video stream (its first frame is decoded for the rotation).

    Raises ``VideoOpenError`` or ``NoVideoStream``.
    """
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        rotation = 0
        try:
            for frame in container.decode(stream):
                rotation = _right_angle(frame.rotation)
                break
        except av.FFmpegError:
            pass  # the scan reports damaged data with its position
        return _info(Path(path), container, stream, rotation)
    finally:
        container.close()


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoOpenError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as error:
        raise VideoOpenError(path, f"not a readable video ({_ffmpeg_reason(error)})") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise VideoOpenError(path, f"not a readable video ({error})") from None
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["none"]
        container.close()
        raise NoVideoStream(path, f"no video stream (streams: {', '.join(kinds)}): nothing to look at")
    return container


def _ffmpeg_reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _info(path: Path, container, stream, rotation: int) -> VideoInfo:
    context = stream.codec_context
    width, height = context.width, context.height
    if not width or not height:
        raise VideoOpenError(path, "the video stream has no picture size: damaged header")
    sample_aspect = _sample_aspect(stream)
    display = _display_size(width, height, sample_aspect, rotation)
    rate = stream.average_rate or stream.guessed_rate or 0
    return VideoInfo(
        path=path,
        codec=context.name,
        pixel_format=context.pix_fmt or "unknown",
        coded_size=(width, height),
        display_size=display,
        rotation=rotation,
        sample_aspect=sample_aspect,
        frame_rate=float(rate),
        duration=_duration(container, stream),
    )


def _sample_aspect(stream) -> Fraction:
    for owner in (stream, stream.codec_context):
        ratio = getattr(owner, "sample_aspect_ratio", None)
        if ratio is not None and ratio.numerator > 0 and ratio.denominator > 0:
            return Fraction(ratio.numerator, ratio.denominator)
    return Fraction(1)


def _display_size(width: int, height: int, sample_aspect: Fraction, rotation: int) -> tuple[int, int]:
    if sample_aspect != 1:
        width = max(1, round(width * sample_aspect))
    return (height, width) if rotation % 180 else (width, height)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        start = container.start_time if container.start_time is not None else 0
        return max(0.0, (container.duration - max(start, 0)) / 1_000_000)
    return None


def _right_angle(rotation: float | None) -> int:
    """The display rotation rounded to a multiple of 90 degrees, in 0, 90, 180, 270."""
    if rotation is None or not math.isfinite(rotation):
        return 0
    return int(round(rotation / 90.0)) % 4 * 90


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) scaled so the short side is ``short_side`` (never enlarged), each at least 2."""
    if short_side is None or min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(2, round(width * scale)), max(2, round(height * scale))


class VideoScan:
    """One decoding pass over a video: iterate to get the sampled frames; ``shots`` and the counters fill as it goes.

    Iterating again decodes again. After a complete iteration ``complete`` is
    True, ``shots`` covers the whole video and ``duration`` is the decoded
    length; an incomplete one raises a ``VideoError`` instead of ending.
    """

    def __init__(self, path: str | Path, sampling: Sampling = Sampling(), detector: ShotDetector | None = None):
        self.path = Path(path)
        self.sampling = sampling
        self.detector = detector
        self.info = probe(self.path)
        self.shots: list[Shot] = []
        self.frames_decoded = 0
        self.duration = 0.0
        self.complete = False

    def __iter__(self) -> Iterator[SampledFrame]:
        import av

        self.shots, self.frames_decoded, self.duration, self.complete = [], 0, 0.0, False
        container = _open(self.path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                yield from self._frames(container.decode(stream))
            except av.FFmpegError as error:
                reason = f"corrupt data ({_ffmpeg_reason(error)})"
                raise VideoDecodeError(self.path, reason, self.duration, self.frames_decoded) from None
        finally:
            container.close()
        if self.frames_decoded == 0:
            raise VideoDecodeError(self.path, "no frame could be decoded")
        self._check_length()
        self.complete = True

    def _frames(self, decoded) -> Iterator[SampledFrame]:
        """The sampling rule over the decoded frames; fills ``shots``, ``frames_decoded`` and ``duration``.

        A detector that reports cuts ``latency`` frames late is that many
        frames ahead of the sampler: the frames in between wait, already at
        the kept size, so that each shot's keyframe is its first frame.
        """
        info, sampling, detector = self.info, self.sampling, self.detector
        step = 1.0 / info.frame_rate if info.frame_rate > 0 else 1.0 / 25
        kept_size = scaled_size(*info.display_size, sampling.short_side)
        analysis_size = detector.analysis_size(*info.display_size) if detector is not None else None
        latency = getattr(detector, "latency", 0) if detector is not None else 0
        clock = _Clock(step)
        starts: list[tuple[int, float]] = [(0, 0.0)]
        cuts: deque[int] = deque()  # shot starts the sampler has not reached yet
        waiting: deque[tuple[int, float, object]] = deque()  # (index, time, frame or its kept pixels)
        times: deque[float] = deque(maxlen=latency + 2)  # to date the cuts
        sampler = _Sampler(sampling, lambda picture: picture if isinstance(picture, np.ndarray) else _rgb(picture, kept_size, info.rotation))

        def add_cuts(found: list[int], current: int) -> None:
            for cut in found:
                if starts[-1][0] < cut <= current:
                    starts.append((cut, times[len(times) - 1 - min(current - cut, len(times) - 1)]))
                    cuts.append(cut)

        for frame in decoded:
            index, time = self.frames_decoded, clock.time(frame)
            times.append(time)
            if detector is not None:
                add_cuts(detector.push(_rgb(frame, analysis_size, info.rotation)), index)
            waiting.append((index, time, _rgb(frame, kept_size, info.rotation) if latency else frame))
            self.frames_decoded += 1
            self.duration = clock.end
            while len(waiting) > latency:
                yield from sampler.offer(*waiting.popleft(), cuts)
        if detector is not None:
            add_cuts(detector.finish(), self.frames_decoded - 1)
        while waiting:
            yield from sampler.offer(*waiting.popleft(), cuts)
        self.shots = _shots(starts, self.frames_decoded, self.duration)

    def _check_length(self) -> None:
        stated = self.info.duration
        if stated is None:
            return
        step = 1.0 / self.info.frame_rate if self.info.frame_rate > 0 else 1.0 / 25
        tolerance = max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRAMES * step)
        if self.duration < stated - tolerance:
            raise TruncatedVideo(
                self.path,
                f"the stream ends at {self.duration:.1f} s but the file states {stated:.1f} s: truncated or damaged file",
                self.duration,
                self.frames_decoded,
            )


class _Clock:
    """Frame times in seconds from the first frame, from presentation timestamps.

    Frames without a timestamp are placed one nominal frame after the
    previous one; times never go backwards.
    """

    def __init__(self, step: float):
        self.step = step
        self.origin: float | None = None
        self.previous: float | None = None
        self.end = 0.0

    def time(self, frame) -> float:
        stamp = None if frame.pts is None or frame.time_base is None else float(frame.pts * frame.time_base)
        if self.origin is None:
            self.origin = stamp if stamp is not None else 0.0
        if stamp is None:
            time = 0.0 if self.previous is None else self.previous + self.step
        else:
            time = stamp - self.origin
        if self.previous is not None:
            time = max(time, self.previous + 1e-6)
        duration = float(frame.duration * frame.time_base) if frame.duration and frame.time_base is not None else self.step
        self.previous, self.end = time, time + duration
        return time


class _Sampler:
    """Keeps the first frame of each shot and one frame per sampling period (the grid restarts at each shot)."""

    def __init__(self, sampling: Sampling, pixels):
        self.sampling = sampling
        self.period = 1.0 / sampling.rate
        self.pixels = pixels
        self.next_sample = 0.0

    def offer(self, index: int, time: float, picture, cuts: deque[int]) -> Iterator[SampledFrame]:
        while cuts and cuts[0] < index:
            cuts.popleft()
        keyframe = index == 0 or (self.sampling.shot_keyframes and bool(cuts) and cuts[0] == index)
        if keyframe or time >= self.next_sample - 1e-9:
            yield SampledFrame(time, index, self.pixels(picture), keyframe)
            self.next_sample = time + self.period if keyframe else _grid_after(self.next_sample, time, self.period)


def _grid_after(start: float, time: float, period: float) -> float:
    """The first point of the grid ``start + k * period`` (k >= 1) strictly after ``time``."""
    return start + max(1, math.floor((time - start) / period + 1e-9) + 1) * period


def _rgb(frame, size: tuple[int, int], rotation: int) -> np.ndarray:
    """The frame as upright H x W x 3 uint8 RGB of ``size`` (width, height, upright)."""
    width, height = (size[1], size[0]) if rotation % 180 else size
    pixels = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    if rotation:
        pixels = np.ascontiguousarray(np.rot90(pixels, k=rotation // 90))
    return pixels


def _shots(starts: list[tuple[int, float]], frames: int, end: float) -> list[Shot]:
    shots = []
    for position, (first, start) in enumerate(starts):
        if position + 1 < len(starts):
            last, stop = starts[position + 1][0] - 1, starts[position + 1][1]
        else:
            last, stop = frames - 1, end
        shots.append(Shot(start=start, end=stop, first_index=first, last_index=last))
    return shots


def frames_at(source: str | Path | BinaryIO, times: list[float], short_side: int | None = None) -> list[np.ndarray]:
    """Upright RGB frames with square pixels shown at ``times`` (seconds from the first frame, as
    ``VideoScan`` counts them), found by seeking, for thumbnails; a time past the end gives the last frame.

    ``source``: a path, or a file opened for reading. Raises ``VideoError``
    when it cannot be opened or nothing decodes.
    """
    import av

    name = Path(source) if isinstance(source, (str, Path)) else Path(str(getattr(source, "name", "video")))
    container = _open(source) if isinstance(source, (str, Path)) else _open_stream(source, name)
    try:
        stream = container.streams.video[0]
        aspect = _sample_aspect(stream)
        origin = stream.start_time or 0
        pictures = []
        for time in times:
            target = origin + round(time / stream.time_base) if stream.time_base else origin
            frame = _frame_at(container, stream, target, name)
            rotation = _right_angle(frame.rotation)
            size = scaled_size(*_display_size(frame.width, frame.height, aspect, rotation), short_side)
            pictures.append(_rgb(frame, size, rotation))
        return pictures
    except av.FFmpegError as error:
        raise VideoDecodeError(name, f"corrupt data ({_ffmpeg_reason(error)})") from None
    finally:
        container.close()


def _open_stream(stream: BinaryIO, name: Path):
    import av

    try:
        container = av.open(stream, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as error:
        raise VideoOpenError(name, f"not a readable video ({_ffmpeg_reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise NoVideoStream(name, "no video stream: nothing to look at")
    return container


def _frame_at(container, stream, target: int, name: Path):
    """The last frame whose timestamp is at most ``target`` (or the first after it)."""
    container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
    shown = None
    for frame in container.decode(stream):
        if shown is not None and frame.pts is not None and frame.pts > target:
            break
        shown = frame
        if frame.pts is not None and frame.pts >= target:
            break
    if shown is None:
        raise VideoDecodeError(name, "no frame could be decoded")
    return shown
