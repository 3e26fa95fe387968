"""Faces as collection items: every face of every photo becomes a ``face`` item of the ``face`` space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from cbir.collection.catalog import Item
from cbir.collection.pipeline import SourceResult
from cbir.faces.analyzer import FaceAnalyzer, FaceScan
from cbir.io.images import is_image_path

FACE_SPACE = "face"
FACE_KIND = "face"


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

    name = "faces"
    space = FACE_SPACE

    def __init__(self, analyzer: FaceAnalyzer | None = None):
        self.analyzer = analyzer or FaceAnalyzer()
        self.counts = FaceCounts()

    def accepts(self, path: Path) -> bool:
        return is_image_path(path)

    def space_record(self) -> tuple[dict, int]:
        return face_space_record(self.analyzer)

    def run(self, paths: Sequence[Path], known_hashes, batch_size: int, workers: int | None) -> Iterator[list[SourceResult]]:
        from cbir.faces.batch import scan_files  # decoding workers (torch) load when photos are read

        for batch in scan_files(self.analyzer, paths, known_hashes, batch_size, workers):
            results = []
            for entry in batch:
                result = SourceResult(entry.index, entry.content_hash, error=entry.error, unchanged=entry.unchanged)
                if entry.scan is not None:
                    self.counts.count(entry.scan)
                    result.items = face_items(entry.scan, str(paths[entry.index]), entry.content_hash)
                results.append(result)
            yield results


def face_items(scan: FaceScan, uri: str, content_hash: str | None, labels: list[str] | None = None, **metadata) -> list[Item]:
    """Catalog items for the faces of one scanned photo."""
    items = []
    for face in scan.faces:
        data = {**face.metadata(), "image_width": scan.width, "image_height": scan.height, **metadata}
        items.append(Item(FACE_KIND, uri, face.vector, content_hash, box=face.box, labels=list(labels or []), metadata=data))
    return items
