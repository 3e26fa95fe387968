"""Faces of many files, read and analysed in worker processes, in order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from torch.utils.data import DataLoader, Dataset

from cbir.extraction import content_hash
from cbir.faces.analyzer import FaceAnalyzer, FaceScan
from cbir.io.images import ImageLoadError, load_image


@dataclass
class FileFaces:
    """What one file gave: its faces, or why it was skipped."""

    index: int
    content_hash: str | None
    scan: FaceScan | None = None
    error: str | None = None
    unchanged: bool = False


class _FaceFiles(Dataset):
    def __init__(self, analyzer: FaceAnalyzer, paths: Sequence[Path], known_hashes, main_only: bool, face_crop: bool):
        self.analyzer = analyzer
        self.paths = list(paths)
        self.known_hashes = list(known_hashes) if known_hashes is not None else [None] * len(self.paths)
        self.main_only = main_only
        self.face_crop = face_crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> FileFaces:
        try:
            data = Path(self.paths[index]).read_bytes()
        except OSError as error:
            return FileFaces(index, None, error=f"unreadable: {error.strerror or error}")
        digest = content_hash(data)
        if digest == self.known_hashes[index]:
            return FileFaces(index, digest, unchanged=True)
        try:
            pixels = self.analyzer.pixels(load_image(data))
        except ImageLoadError as error:
            return FileFaces(index, digest, error=str(error))
        if not self.main_only:
            return FileFaces(index, digest, self.analyzer.scan(pixels))
        face = self.analyzer.main_face(pixels, self.face_crop)
        scan = FaceScan([face] if face is not None else [], pixels.shape[1], pixels.shape[0])
        return FileFaces(index, digest, scan)


def face_workers(files: int, batch_size: int) -> int:
    """Worker processes for face analysis: one per core (up to 4), none for a single small batch."""
    return 0 if files <= batch_size else max(1, min(4, os.cpu_count() or 1))


def scan_files(
    analyzer: FaceAnalyzer,
    paths: Sequence[Path],
    known_hashes: Sequence[str | None] | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    main_only: bool = False,
    face_crop: bool = False,
) -> Iterator[list[FileFaces]]:
    """The faces of ``paths`` batch by batch, in order; ``main_only`` keeps the largest face per file
    (``face_crop`` as in ``FaceAnalyzer.main_face``)."""
    workers = face_workers(len(paths), batch_size) if workers is None else workers
    loader = DataLoader(
        _FaceFiles(analyzer, paths, known_hashes, main_only, face_crop),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
        prefetch_factor=2 if workers else None,
    )
    yield from loader
