"""Enrolled people of a collection, and identification and verification against them.

An enrolled face is an item of the collection's ``face`` space (kind
``face``, labels ``[NAME]``, metadata ``enrolled: true``) made by the
pipeline ``enrol:NAME``, so enrolling re-reads only new or changed photos
and removing a person removes exactly their faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from cbir.collection.collection import Collection, IndexReport
from cbir.collection.pipeline import SourceResult
from cbir.faces.analyzer import Face, FaceAnalyzer, FaceScan, FaceSpec
from cbir.faces.calibration import (
    DEFAULT_SOURCE,
    Calibration,
    labeled_pair_scores,
    similarity_to_distance,
    threshold_for_far,
)
from cbir.faces.encoders import face_encoder_from_record, make_face_encoder
from cbir.faces.models import FaceError
from cbir.faces.pipeline import FACE_SPACE, face_items, face_space_record
from cbir.io.images import is_image_path

ENROL_PREFIX = "enrol:"


@dataclass(frozen=True)
class Threshold:
    """The similarity a match needs, and where that number came from."""

    similarity: float
    source: str

    @property
    def distance(self) -> float:
        return similarity_to_distance(self.similarity)

    def describe(self) -> str:
        return f"{self.similarity:.4f} (distance {self.distance:.4f}), {self.source}"

    def to_dict(self) -> dict:
        return {"similarity": round(self.similarity, 6), "distance": round(self.distance, 6), "source": self.source}


@dataclass
class Identification:
    """One face of a photo and who it is (``name`` is None for someone not enrolled)."""

    face: Face
    name: str | None
    similarity: float
    candidate: str | None

    @property
    def label(self) -> str:
        return self.name or "unknown"

    def to_dict(self) -> dict:
        return {
            "box": [round(v, 1) for v in self.face.box],
            "name": self.label,
            "similarity": round(self.similarity, 6),
            "closest": self.candidate,
            "detection_score": round(self.face.score, 4),
        }


@dataclass
class Verification:
    """Whether two photos show the same person."""

    same: bool
    similarity: float
    threshold: Threshold
    boxes: tuple[tuple[float, ...], tuple[float, ...]]
    faces: tuple[int, int]

    @property
    def distance(self) -> float:
        return similarity_to_distance(self.similarity)

    def to_dict(self) -> dict:
        return {
            "same": self.same,
            "similarity": round(self.similarity, 6),
            "distance": round(self.distance, 6),
            "threshold": self.threshold.to_dict(),
            "boxes": [[round(v, 1) for v in box] for box in self.boxes],
            "faces_found": list(self.faces),
        }


@dataclass
class EnrolmentReport:
    """What enrolling did: the collection's report plus a note for photos with several faces."""

    name: str
    report: IndexReport
    faces: int
    notes: list[tuple[str, str]] = field(default_factory=list)


class EnrolmentPipeline:
    """The largest face of each photo of one person, as an enrolled ``face`` item."""

    space = FACE_SPACE

    def __init__(self, analyzer: FaceAnalyzer, person: str, face_crop: bool = False):
        self.analyzer = analyzer
        self.person = person
        self.name = ENROL_PREFIX + person
        self.face_crop = face_crop
        self.notes: list[tuple[str, str]] = []
        self.faces = 0

    def accepts(self, path: Path) -> bool:
        return is_image_path(path)

    def space_record(self) -> tuple[dict, int]:
        return face_space_record(self.analyzer)

    def run(self, paths: Sequence[Path], known_hashes, batch_size: int, workers: int | None) -> Iterator[list[SourceResult]]:
        from cbir.faces.batch import scan_files  # decoding workers (torch) load when photos are read

        for batch in scan_files(self.analyzer, paths, known_hashes, batch_size, workers, self.face_crop, self.face_crop):
            results = []
            for entry in batch:
                result = SourceResult(entry.index, entry.content_hash, error=entry.error, unchanged=entry.unchanged)
                if entry.scan is not None:
                    self._enrol(result, entry.scan, paths[entry.index])
                results.append(result)
            yield results

    def _enrol(self, result: SourceResult, scan: FaceScan, path: Path) -> None:
        if not scan.faces:
            small = f" ({scan.too_small} too small)" if scan.too_small else ""
            result.error = f"no face found{small}: use a photo where the face is visible and at least 40 px wide, or enrol it as a face photo (--crops)"
            return
        if len(scan.faces) > 1:
            self.notes.append((str(path), f"{len(scan.faces)} faces: enrolled the largest"))
        main = FaceScan(scan.faces[:1], scan.width, scan.height)
        result.items = face_items(main, str(path), result.content_hash, [self.person], enrolled=True, faces_in_photo=len(scan.faces))
        self.faces += 1


def encoder_mismatch(collection: Collection, stored: dict, wanted: dict) -> FaceError:
    """The error for faces asked of a collection with another face encoder than the one that built it."""
    stored_name, wanted_name = stored.get("type"), wanted.get("type")
    if stored_name == wanted_name:
        stored_name, wanted_name = f"{stored_name} {stored}", f"{wanted_name} {wanted}"
    return FaceError(
        f"the faces of {collection.path} were encoded with the face encoder {stored_name}, not {wanted_name}, and "
        f"descriptors of two encoders cannot be compared: drop --face-encoder to use the collection's, or index the "
        f"photos into a new collection with the other one (cbir faces index PHOTOS --face-encoder {wanted.get('type')} -c NEW)"
    )


def collection_analyzer(collection: Collection, spec: FaceSpec | None = None) -> FaceAnalyzer:
    """A face analyzer whose vectors match the collection's face space (its encoder and test-time views);
    a ``spec`` that names another encoder is refused."""
    space = collection.manifest.spaces.get(FACE_SPACE)
    spec = spec or FaceSpec()
    if space is None:
        return FaceAnalyzer(spec)
    stored_tta = space.encoder.get("tta")
    if spec.tta is not None and spec.tta != stored_tta:
        raise FaceError(f"the faces of {collection.path} were encoded with --tta {stored_tta}, not {spec.tta}: omit --tta")
    encoder = face_encoder_from_record(space.encoder)
    if spec.encoder is not None and make_face_encoder(spec.encoder).record() != encoder.record():
        raise encoder_mismatch(collection, encoder.record(), make_face_encoder(spec.encoder).record())
    return FaceAnalyzer(replace(spec, tta=stored_tta), encoder)


def best_matches(queries: np.ndarray, gallery: np.ndarray, names: Sequence[str]) -> tuple[list[str | None], np.ndarray]:
    """For each query vector, the enrolled person with the most similar face and that similarity."""
    if not len(gallery) or not len(queries):
        return [None] * len(queries), np.full(len(queries), -1.0, dtype=np.float32)
    people, codes = np.unique(np.asarray(names), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    per_person = np.maximum.reduceat((queries @ gallery.T)[:, order], starts, axis=1)
    best = per_person.argmax(axis=1)
    return [str(people[i]) for i in best], per_person[np.arange(len(queries)), best]


class People:
    """Enrol, list, remove, identify and verify people in a collection's face space."""

    def __init__(self, collection: Collection, spec: FaceSpec | None = None, analyzer: FaceAnalyzer | None = None):
        self.collection = collection
        self.analyzer = analyzer or collection_analyzer(collection, spec)
        space = collection.manifest.spaces.get(FACE_SPACE)
        if space is not None and self.analyzer.space_record() != space.encoder:
            raise encoder_mismatch(collection, space.encoder, self.analyzer.space_record())
        self._gallery: tuple[np.ndarray, list[str]] | None = None

    # people --------------------------------------------------------------------
    def enroll(
        self,
        name: str,
        images: Iterable[str | Path],
        face_crop: bool = False,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> EnrolmentReport:
        """Add the largest face of each image (files or folders) as a face of ``name``; with
        ``face_crop``, the images are face photos (see ``FaceAnalyzer.main_face``)."""
        name = name.strip()
        if not name:
            raise FaceError("a person needs a non-empty name")
        pipeline = EnrolmentPipeline(self.analyzer, name, face_crop)
        report = self.collection.add(images, pipeline=pipeline, workers=workers, progress=progress)
        self._gallery = None
        return EnrolmentReport(name, report, pipeline.faces, pipeline.notes)

    def people(self) -> dict[str, int]:
        """Enrolled people and how many photos each has."""
        return {pipeline[len(ENROL_PREFIX):]: count for pipeline, count in self.collection.catalog.pipelines(ENROL_PREFIX).items()}

    def remove(self, name: str) -> int:
        """Forget a person; returns how many of their photos were removed."""
        if name not in self.people():
            known = ", ".join(self.people()) or "nobody is enrolled"
            raise FaceError(f"{name!r} is not enrolled ({known})")
        removed = self.collection.remove_sources(ENROL_PREFIX + name, FACE_SPACE)
        self._gallery = None
        return removed

    def gallery(self) -> tuple[np.ndarray, list[str]]:
        """(descriptors, names) of every enrolled face."""
        if self._gallery is None:
            catalog = self.collection.catalog
            vectors, names = [], []
            for person in self.people():
                ids = [i for state in catalog.sources(ENROL_PREFIX + person).values() for i in catalog.item_ids_of_source(state.id)]
                for _, chunk in catalog.vectors(FACE_SPACE, ids):
                    vectors.append(chunk)
                    names += [person] * len(chunk)
            matrix = np.concatenate(vectors) if vectors else np.zeros((0, self.analyzer.encoder.dim), dtype=np.float32)
            self._gallery = (matrix, names)
        return self._gallery

    # thresholds ------------------------------------------------------------------
    def calibration(self) -> Calibration | None:
        """The calibration stored for this collection's face encoder (and test-time views), if any."""
        return Calibration.load(self.collection.path, self.analyzer.space_record())

    def threshold(self, override: float | None = None) -> Threshold:
        """The similarity threshold in force: an explicit one, the calibrated one, or the default."""
        if override is not None:
            return Threshold(override, "given explicitly")
        stored = self.calibration()
        if stored is not None:
            return Threshold(stored.threshold, f"calibrated for FAR <= {stored.target_far:g} on {stored.source}")
        return Threshold(self.analyzer.encoder.default_threshold, DEFAULT_SOURCE)

    def calibrate_pairs(
        self, pairs_file: str | Path, images: str | Path, target_far: float = 1e-3, face_crop: bool = True
    ) -> tuple[Calibration, dict]:
        """Choose and store the threshold for ``target_far`` on an LFW-format pairs file; also returns
        the k-fold verification report of those pairs."""
        from cbir.evaluation.pairs import read_pairs, score_pairs, verification_report
        from cbir.faces.descriptors import face_embedder

        pairs = read_pairs(pairs_file, images)
        scores, _ = score_pairs(pairs, face_embedder(self.analyzer, face_crop=face_crop))
        same = np.array([pair.same for pair in pairs])
        report = verification_report(scores, same, np.array([pair.fold for pair in pairs]), far=target_far)
        return self._store(scores, same, target_far, f"pairs {Path(pairs_file).name}"), report

    def calibrate_folder(
        self,
        folder: str | Path,
        target_far: float = 1e-3,
        face_crop: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[Calibration, dict]:
        """Choose and store the threshold for ``target_far`` from every pair of a folder of per-person subfolders."""
        from cbir.faces.descriptors import labeled_face_descriptors

        faces = labeled_face_descriptors(folder, self.analyzer, face_crop, progress=progress)
        if len(set(faces.labels)) < 2:
            raise FaceError(f"{folder} needs faces of at least two people (one subfolder each) to calibrate")
        scores, same = labeled_pair_scores(faces.vectors, faces.labels)
        report = {"images": len(faces.labels), "people": len(set(faces.labels)), "skipped": len(faces.skipped)}
        return self._store(scores, same, target_far, f"folder {Path(folder).name}"), report

    def _store(self, scores: np.ndarray, same: np.ndarray, target_far: float, source: str) -> Calibration:
        valid = ~np.isnan(scores)
        threshold, far, tar = threshold_for_far(scores, same, target_far)
        calibration = Calibration(
            threshold, target_far, far, tar, int((same & valid).sum()), int((~same & valid).sum()), source,
            self.analyzer.space_record(),
        )
        calibration.save(self.collection.path)
        return calibration

    # matching --------------------------------------------------------------------
    def identify(self, image, threshold: float | None = None) -> tuple[list[Identification], FaceScan, Threshold]:
        """Every face of ``image`` with the enrolled person it matches, or unknown."""
        scan = self.analyzer.scan(image)
        in_force = self.threshold(threshold)
        vectors, names = self.gallery()
        if scan.faces and not names:
            raise FaceError("nobody is enrolled: add people with 'cbir faces enroll NAME IMAGE...'")
        queries = np.stack([face.vector for face in scan.faces]) if scan.faces else np.zeros((0, self.analyzer.encoder.dim))
        candidates, similarities = best_matches(queries, vectors, names)
        found = [
            Identification(face, candidate if similarity >= in_force.similarity else None, float(similarity), candidate)
            for face, candidate, similarity in zip(scan.faces, candidates, similarities)
        ]
        return found, scan, in_force

    def verify(self, first, second, threshold: float | None = None, face_crop: bool = False) -> Verification:
        """Whether the largest faces of two images are the same person."""
        return verify_faces(self.analyzer, first, second, self.threshold(threshold), face_crop)


def verify_faces(analyzer: FaceAnalyzer, first, second, threshold: Threshold, face_crop: bool = False) -> Verification:
    """Compare the largest faces of two images (with ``face_crop``, their central faces) under ``threshold``."""
    faces, counts = [], []
    for image in (first, second):
        if face_crop:
            faces.append(analyzer.main_face(image, face_crop=True))
            counts.append(1)
            continue
        scan = analyzer.scan(image)
        if not scan.faces:
            named = image if isinstance(image, (str, Path)) else "the image"
            raise FaceError(f"no face found in {named} ({scan.describe()}); for small faces try --upsample 2, for face crops --crops")
        faces.append(scan.faces[0])
        counts.append(len(scan.faces))
    similarity = float(np.dot(faces[0].vector, faces[1].vector))
    return Verification(similarity >= threshold.similarity, similarity, threshold, (faces[0].box, faces[1].box), tuple(counts))
