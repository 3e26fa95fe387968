"""Face descriptors of image files: one per file for pair protocols, or a labeled folder for training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cbir.faces.analyzer import FaceAnalyzer, FaceSpec
from cbir.io.images import ImageLoadError, is_image_path
from cbir.pipelines.faces import scan_files


def face_embedder(
    analyzer: FaceAnalyzer | None = None, spec: FaceSpec | None = None, face_crop: bool = True
) -> Callable[[Path], np.ndarray | None]:
    """``path -> descriptor`` of the largest face in the image (for ``cbir.evaluation.pairs``).

    By default (``face_crop``) images are taken as face photos centred on
    their subject, as in pair and identification sets: the face covering the
    centre is used and a photo where no detector finds one is encoded from its
    centre instead of being dropped (see ``FaceAnalyzer.main_face``). Returns
    None for an unreadable image, or without ``face_crop`` when no face is found.
    """
    analyzer = analyzer or FaceAnalyzer(spec)

    def embed(path: Path) -> np.ndarray | None:
        try:
            face = analyzer.main_face(path, face_crop)
        except ImageLoadError:
            return None
        return None if face is None else face.vector

    return embed


@dataclass
class LabeledFaces:
    """Descriptors of a labeled folder: row i of ``vectors`` is ``paths[i]`` of person ``labels[i]``."""

    vectors: np.ndarray
    labels: list[str]
    paths: list[Path]
    detectors: list[str]  # which detector found each face ("assumed": the centre of the photo)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def labeled_images(root: str | Path) -> tuple[list[Path], list[str]]:
    """Image files of a folder of class subfolders, with their subfolder names as labels."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of per-person subfolders")
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p)):
            paths.append(file)
            labels.append(folder.name)
    if not paths:
        raise FileNotFoundError(f"{root} holds no images in per-person subfolders (root/NAME/*.jpg)")
    return paths, labels


def labeled_face_descriptors(
    root: str | Path,
    analyzer: FaceAnalyzer | None = None,
    face_crop: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LabeledFaces:
    """The face of every image under ``root/PERSON/``, with the person as label.

    ``face_crop`` as in ``face_embedder``. Images that cannot be read (or,
    without ``face_crop``, hold no face) are listed in ``skipped`` with the reason.
    """
    analyzer = analyzer or FaceAnalyzer()
    paths, labels = labeled_images(root)
    vectors, kept_labels, kept_paths, detectors, skipped = [], [], [], [], []
    done = 0
    for batch in scan_files(analyzer, paths, workers=workers, main_only=True, face_crop=face_crop):
        for entry in batch:
            path = paths[entry.index]
            if entry.error is not None:
                skipped.append((path, entry.error))
            elif not entry.value.faces:
                skipped.append((path, "no face found"))
            else:
                face = entry.value.faces[0]
                vectors.append(face.vector)
                kept_labels.append(labels[entry.index])
                kept_paths.append(path)
                detectors.append(face.detector)
        done += len(batch)
        if progress is not None:
            progress(done, len(paths))
    matrix = np.stack(vectors) if vectors else np.zeros((0, analyzer.encoder.dim), dtype=np.float32)
    return LabeledFaces(matrix, kept_labels, kept_paths, detectors, skipped)
