"""Objects: a photo becomes its whole-image item plus one ``region`` item per detected object, all in
the ``image`` space, so a crop, a region and a whole photo are compared alike.

Workers read and hash each photo once and decode it twice: the pixels the
whole-image descriptor needs (exactly as the image pipeline makes them, from a
draft-scaled decode) and a working copy, at most ``WORKING_SIDE`` pixels long,
for the detector and the crops. The main
process detects the objects of a batch together, encodes the whole images
and re-encodes each object's crop (the default chosen in
bench/results/objects.md). A photo with no object stays an image item.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from cbir.core.items import Item
from cbir.detectors import DETECTORS, DetectionSettings, Detections, Detector, load_detector
from cbir.encoders.encoder import Encoder, EncoderSpec, shared_encoder
from cbir.encoders.regions import describe_crops
from cbir.io.images import is_image_path, load_image
from cbir.pipelines.decoding import Decoded, SourceDataset, batches
from cbir.pipelines.image import IMAGE_SPACE, ImageDecoder, ImagePipeline, Pixels, encode_decoded, image_item, image_workers
from cbir.pipelines.sources import Source, SourceResult, file_sources

REGION_KIND = "region"
WORKING_SIDE = 1024


@dataclass
class ObjectPhoto:
    """A decoded photo: the whole-image pixels and a working copy (``scale``: original pixels per working pixel)."""

    whole: Pixels
    image: Image.Image
    scale: float


class ObjectDecoder:
    """Bytes -> ``ObjectPhoto`` (picklable, so it runs in workers)."""

    def __init__(self, encoder: Encoder):
        self.whole = ImageDecoder(encoder)

    def __call__(self, source: Source, contents: list[bytes]) -> ObjectPhoto:
        whole = self.whole(source, contents)
        image = load_image(contents[0])
        image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.BICUBIC)
        return ObjectPhoto(whole, image, whole.width / image.width)


def detector_record(detector: Detector) -> dict:
    """What rebuilds ``detector`` with its settings: its record, plus its file when it is not a named one."""
    record = detector.record()
    if record["detector"] not in DETECTORS:
        record["path"] = str(Path(detector.path).resolve())
    return record


def detector_from_record(record: dict) -> Detector:
    """The detector a space was built with, with its settings; its file must be the one recorded."""
    settings = DetectionSettings(record["score_threshold"], record["iou_threshold"], record["max_boxes"], record["min_size"])
    name = record["detector"]
    detector = load_detector(name if name in DETECTORS else record["path"], settings, None if name in DETECTORS else record["format"])
    if detector.record()["sha256"] != record["sha256"]:
        raise ValueError(f"the detector file {record.get('path', name)} has changed since the collection was built with it")
    return detector


@dataclass
class ObjectCounts:
    """What an objects pipeline found in the photos it processed."""

    photos: int = 0
    objects: int = 0
    without_object: int = 0

    def count(self, found: Detections) -> None:
        self.photos += 1
        self.objects += len(found)
        self.without_object += not len(found)

    def describe(self) -> str:
        return f"{self.objects} objects in {self.photos} photos ({self.without_object} without an object: whole image only)"


class ObjectPipeline:
    """Whole images and their detected objects, in the ``image`` space."""

    kind = "objects"
    name = "objects"
    space = IMAGE_SPACE

    def __init__(self, encoder: Encoder, detector: Detector | None = None):
        self.encoder = encoder
        self.detector = detector or load_detector()
        self.counts = ObjectCounts()

    @classmethod
    def from_record(cls, record: dict, encoder: Encoder | None = None) -> "ObjectPipeline":
        """The pipeline of a space recorded by ``space_record``."""
        return cls(encoder or shared_encoder(EncoderSpec.from_dict(record)), detector_from_record(record["detector"]))

    def accepts(self, path: Path) -> bool:
        return is_image_path(path)

    def sources(self, files: Sequence[Path]) -> list[Source]:
        return file_sources(files)

    def space_record(self) -> tuple[dict, int]:
        record, dim = ImagePipeline(self.encoder).space_record()
        return {**record, "detector": detector_record(self.detector)}, dim

    def encode(self, image: str | Path | Image.Image) -> np.ndarray:
        """The whole-image descriptor of one query image (1 x D)."""
        return ImagePipeline(self.encoder).encode(image)

    def describe_boxes(self, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """Descriptors (N x D) of boxes of ``image`` (its own pixels), as regions are indexed."""
        return describe_crops(self.encoder, image, np.asarray(boxes, np.float32).reshape(-1, 4))

    def run(self, sources: Sequence[Source], known_hashes, batch_size: int, workers: int | None) -> Iterator[list[SourceResult]]:
        dataset = SourceDataset(sources, ObjectDecoder(self.encoder), known_hashes)
        for batch in batches(dataset, batch_size, image_workers() if workers is None else workers):
            yield self._results(batch, sources)

    def _results(self, batch: list[Decoded[ObjectPhoto]], sources: Sequence[Source]) -> list[SourceResult]:
        decoded = [entry.value for entry in batch if entry.value is not None]
        wholes = iter(encode_decoded(self.encoder, [Decoded(0, None, photo.whole) for photo in decoded]))
        found = iter(self.detector.detect([photo.image for photo in decoded]))
        results = []
        for entry in batch:
            uri = sources[entry.index].uri
            results.append(entry.result(lambda photo: self._items(photo, next(found), next(wholes), uri, entry.content_hash)))
        return results

    def _items(self, photo: ObjectPhoto, found: Detections, whole: np.ndarray, uri: str, content_hash: str | None) -> list[Item]:
        self.counts.count(found)
        items = [image_item(uri, whole, content_hash, photo.whole)]
        vectors = self.describe_boxes(photo.image, found.boxes)
        for box, label, score, vector in zip(found.boxes * photo.scale, found.labels, found.scores, vectors):
            box = tuple(round(float(v), 1) for v in box)
            metadata = {"label": label, "score": round(float(score), 4), "width": photo.whole.width, "height": photo.whole.height}
            items.append(Item(REGION_KIND, uri, vector, content_hash, box=box, labels=[label], metadata=metadata))
        return items
