"""Faces: every face of a photo becomes a ``face`` item of the ``face`` space.

Workers read, hash and decode each photo and run the face analyzer (detect,
align, encode) on it; the main process only assembles items. The models
themselves live in ``cbir.faces``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from cbir.core.items import Item
from cbir.faces.analyzer import FaceAnalyzer, FaceScan, FaceSpec
from cbir.faces.encoders import FaceEncoder, face_encoder_from_record
from cbir.io.images import is_image_path, load_image
from cbir.pipelines.decoding import Decoded, SourceDataset, batches, decoding_workers
from cbir.pipelines.sources import Source, SourceResult, file_sources

FACE_SPACE = "face"
FACE_KIND = "face"


class FaceDecoder:
    """Bytes -> ``FaceScan`` of the photo (only its largest face with ``main_only``; ``face_crop`` as in
    ``FaceAnalyzer.main_face``)."""

    def __init__(self, analyzer: FaceAnalyzer, main_only: bool = False, face_crop: bool = False):
        self.analyzer = analyzer
        self.main_only = main_only
        self.face_crop = face_crop

    def __call__(self, source: Source, contents: list[bytes]) -> FaceScan:
        pixels = self.analyzer.pixels(load_image(contents[0]))
        if not self.main_only:
            return self.analyzer.scan(pixels)
        face = self.analyzer.main_face(pixels, self.face_crop)
        return FaceScan([face] if face is not None else [], pixels.shape[1], pixels.shape[0])


def scan_sources(
    analyzer: FaceAnalyzer,
    sources: Sequence[Source],
    known_hashes: Sequence[str | None] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    main_only: bool = False,
    face_crop: bool = False,
) -> Iterator[list[Decoded[FaceScan]]]:
    """The faces of each source batch by batch, in order (analysed in workers, one per core up to 4)."""
    dataset = SourceDataset(sources, FaceDecoder(analyzer, main_only, face_crop), known_hashes)
    yield from batches(dataset, batch_size, decoding_workers(busy_threads=0) if workers is None else workers, prefetch=2)


def scan_files(analyzer: FaceAnalyzer, paths: Sequence[Path], **options) -> Iterator[list[Decoded[FaceScan]]]:
    """``scan_sources`` for image files."""
    yield from scan_sources(analyzer, file_sources(paths), **options)


@dataclass
class FaceCounts:
    """What a face pipeline found in the files it processed."""

    photos: int = 0
    faces: int = 0
    without_face: int = 0
    too_small: int = 0
    over_limit: int = 0

    def count(self, scan: FaceScan) -> None:
        self.photos += 1
        self.faces += len(scan.faces)
        self.without_face += not scan.faces
        self.too_small += scan.too_small
        self.over_limit += scan.over_limit

    def describe(self) -> str:
        text = f"{self.faces} faces in {self.photos} photos ({self.without_face} without a face"
        if self.too_small:
            text += f", {self.too_small} faces too small to recognise"
        if self.over_limit:
            text += f", {self.over_limit} faces beyond the limit per photo"
        return text + ")"


def face_space_record(analyzer: FaceAnalyzer) -> tuple[dict, int]:
    """(encoder record, dimension) of the face space ``analyzer`` fills."""
    return analyzer.space_record(), analyzer.encoder.dim


class FacePipeline:
    """Every face of a photo: a ``face`` item with its box, detection score and landmarks."""

    kind = "faces"
    name = "faces"
    space = FACE_SPACE

    def __init__(self, analyzer: FaceAnalyzer | None = None):
        self.analyzer = analyzer or FaceAnalyzer()
        self.counts = FaceCounts()

    @classmethod
    def from_record(cls, record: dict, encoder: FaceEncoder | None = None) -> "FacePipeline":
        """The pipeline of a face space recorded by ``space_record`` (``encoder``: its face encoder, already built)."""
        return cls(FaceAnalyzer(FaceSpec(tta=record.get("tta")), encoder or face_encoder_from_record(record)))

    def accepts(self, path: Path) -> bool:
        return is_image_path(path)

    def sources(self, files: Sequence[Path]) -> list[Source]:
        return file_sources(files)

    def space_record(self) -> tuple[dict, int]:
        return face_space_record(self.analyzer)

    def run(self, sources: Sequence[Source], known_hashes, batch_size: int, workers: int | None) -> Iterator[list[SourceResult]]:
        for batch in scan_sources(self.analyzer, sources, known_hashes, batch_size, workers):
            results = []
            for entry in batch:
                results.append(entry.result(lambda scan: self._items(scan, sources[entry.index].uri, entry.content_hash)))
            yield results

    def _items(self, scan: FaceScan, uri: str, content_hash: str | None) -> list[Item]:
        self.counts.count(scan)
        return face_items(scan, uri, content_hash)


def face_items(scan: FaceScan, uri: str, content_hash: str | None, labels: list[str] | None = None, **metadata) -> list[Item]:
    """Catalog items for the faces of one scanned photo."""
    items = []
    for face in scan.faces:
        data = {**face.metadata(), "image_width": scan.width, "image_height": scan.height, **metadata}
        items.append(Item(FACE_KIND, uri, face.vector, content_hash, box=face.box, labels=list(labels or []), metadata=data))
    return items
