"""Videos: one source per video file, whose sampled frames and shots become items of the ``image`` space.

A video is scanned once, start to end (``cbir.io.video.VideoScan``: about
one frame per second plus the first frame of every shot), and its frames are
encoded in batches by the collection's image encoder, so a photo query finds
frames. Each sampled frame is a ``frame`` item spanning from its time to the
next sampled frame's; each shot is a ``shot`` item whose vector is the mean
of its frames' (L2-normalised). Memory stays bounded by one batch of pixels
plus one vector per sampled frame, whatever the video's length.

A video that cannot be read whole (no video stream, damaged, truncated) is
one skipped source with the reason: none of its items are stored. All items
of a video are handed to the collection in one result, so they are stored in
one transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from cbir.core.items import Item
from cbir.encoders.encoder import DEFAULT_BATCH_SIZE, Encoder, EncoderSpec, shared_encoder
from cbir.io.shots import DEFAULT_SHOT_DETECTOR, make_shot_detector
from cbir.io.video import Sampling, Shot, VideoError, VideoScan, probe
from cbir.io.video_files import is_video_path
from cbir.pipelines.image import ENCODER_TYPE, IMAGE_SPACE
from cbir.pipelines.sources import Source, SourceResult, file_sources

VIDEO_PIPELINE = "video"
FRAME_KIND = "frame"
SHOT_KIND = "shot"
DEFAULT_RATE = 1.0  # sampled frames per second
HASH_CHUNK = 1 << 20


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
    shot_detector: str | None = DEFAULT_SHOT_DETECTOR,
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


def file_hash(path: Path) -> str:
    """The catalog's content hash of one file (``cbir.core.hashing.content_hash``), read in chunks."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def video_items(uri: str, described: VideoDescriptors, content_hash: str) -> list[Item]:
    """``frame`` items in time order, then one ``shot`` item per shot holding sampled frames."""
    times = described.times
    ends = np.append(times[1:], max(described.duration, times[-1]))
    starts = np.array([shot.start for shot in described.shots])
    shot_of = np.maximum(np.searchsorted(starts, times + 1e-6, side="right") - 1, 0)
    items = [
        Item(
            FRAME_KIND, uri, vector, content_hash, t_start=float(start), t_end=float(end),
            metadata={"frame": position, "shot": int(shot), "keyframe": bool(keyframe)},
        )
        for position, (vector, start, end, shot, keyframe) in enumerate(zip(described.vectors, times, ends, shot_of, described.keyframes))
    ]
    sums = np.zeros((len(described.shots), described.vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, shot_of, described.vectors)
    counts = np.bincount(shot_of, minlength=len(described.shots))
    for number in np.flatnonzero(counts):
        shot = described.shots[int(number)]
        vector = (sums[number] / max(np.linalg.norm(sums[number]), 1e-12)).astype(np.float32)
        items.append(Item(
            SHOT_KIND, uri, vector, content_hash, t_start=float(shot.start), t_end=float(shot.end),
            metadata={"shot": int(number), "frames": int(counts[number]), "duration": described.duration},
        ))
    return items


class VideoPipeline:
    """Video files: ``frame`` and ``shot`` items in the ``image`` space, beside the photos.

    ``progress``, when set, gets (video seconds read, video seconds to read)
    over all sources of a run, after every batch of frames.
    """

    kind = VIDEO_PIPELINE
    name = VIDEO_PIPELINE
    space = IMAGE_SPACE

    def __init__(self, encoder: Encoder, rate: float = DEFAULT_RATE, shot_detector: str | None = DEFAULT_SHOT_DETECTOR):
        self.encoder = encoder
        self.sampling = Sampling(rate=rate, short_side=encoder.spec.image_size)
        self.shot_detector = shot_detector
        self.progress: Callable[[float, float], None] | None = None

    @classmethod
    def from_record(cls, record: dict, encoder: Encoder | None = None) -> "VideoPipeline":
        """The pipeline for an image space recorded by ``space_record`` (``encoder``: that encoder, already loaded)."""
        return cls(encoder or shared_encoder(EncoderSpec.from_dict(record)))

    def accepts(self, path: Path) -> bool:
        return is_video_path(path)

    def sources(self, files: Sequence[Path]) -> list[Source]:
        return file_sources(files)

    def space_record(self) -> tuple[dict, int]:
        return {"type": ENCODER_TYPE, **self.encoder.spec.to_dict()}, self.encoder.dim

    def describe(self, path: str | Path, batch_size: int = DEFAULT_BATCH_SIZE, on_frames: Callable[[float], None] | None = None) -> VideoDescriptors:
        """The sampled frames of one video (a query clip, or a source), as the collection stores them."""
        return describe_video(path, self.encoder, self.sampling, self.shot_detector, batch_size, on_frames)

    def run(self, sources: Sequence[Source], known_hashes, batch_size: int, workers: int | None) -> Iterator[list[SourceResult]]:
        """One result per video (so each video is stored in one transaction); ``workers`` is not used: a
        video is decoded as one stream, in this process."""
        lengths = [_stated_length(source.members[0]) for source in sources] if self.progress is not None else [0.0] * len(sources)
        total, done = sum(lengths), 0.0
        for index, source in enumerate(sources):
            yield [self._result(index, source, known_hashes[index], batch_size, self._reporter(done, lengths[index], total))]
            done += lengths[index]
            if self.progress is not None:
                self.progress(done, total)

    def _reporter(self, start: float, length: float, total: float) -> Callable[[float], None] | None:
        """``on_frames`` for one video: seconds reached in it -> ``progress`` over the run."""
        progress = self.progress
        if progress is None:
            return None
        return lambda seconds: progress(start + min(seconds, length), total)

    def _result(self, index: int, source: Source, known_hash: str | None, batch_size: int, on_frames: Callable[[float], None] | None) -> SourceResult:
        path = source.members[0]
        try:
            digest = file_hash(path)
        except OSError as error:
            return SourceResult(index, None, error=f"unreadable: {error.strerror or error}")
        if digest == known_hash:
            return SourceResult(index, digest, unchanged=True)
        try:
            described = self.describe(path, batch_size, on_frames)
        except VideoError as error:
            return SourceResult(index, digest, error=f"{error.reason}{_how_far(error)}")
        return SourceResult(index, digest, items=video_items(source.uri, described, digest))


def _stated_length(path: Path) -> float:
    """The duration a video file states (0 when it states none or cannot be opened)."""
    try:
        return probe(path).duration or 0.0
    except VideoError:
        return 0.0


def _how_far(error: VideoError) -> str:
    if not error.frames_decoded:
        return ""
    return f" (stopped after {error.seconds_decoded:.1f} s; nothing of it was indexed)"
