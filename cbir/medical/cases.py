"""The most and least similar cases of a collection's medical space for a query case.

A query is a DICOM file or series folder, a NIfTI volume, a picture (PNG,
JPEG) or a stored item. A series or volume is compared with the ``series``
items, a single picture or slice with the ``slice`` items; only cases of the
query's modality are candidates, never the query's own source, and with
``exclude_same_patient`` none of its patient (same salted key). A case is a
source (a series, a volume; each MedMNIST image on its own) and scores as its
best item. The ranking is exhaustive cosine similarity over the raw
descriptors: the least similar cases need the whole ranking, which an
approximate index does not give.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from cbir.collection.collection import Collection, CollectionError
from cbir.core.items import Item
from cbir.io.dicom import DicomError, dicom_candidates, read_dicom, scan_dicom
from cbir.io.images import is_image_path, load_image
from cbir.io.medmnist import array_to_image, read_medmnist
from cbir.io.nifti import read_nifti
from cbir.io.volumes import ScanReadError, to_uint8
from cbir.medical.report import Case, SimilarCases, most_and_least
from cbir.pipelines.medical import (
    MEDICAL_KIND, MEDICAL_SPACE, SERIES_KIND, SLICE_KIND, MedicalPipeline, Scan, dicom_scan, nifti_scan, scan_format,
    series_descriptor, series_uri,
)

PICTURE_SIDE = 160


@dataclass
class Query:
    """A query case: its descriptor, the kind of items it is compared with, its picture and what is known of it."""

    vector: np.ndarray
    kind: str
    picture: Image.Image
    name: str
    modality: str | None = None
    patient_key: str | None = None
    label: str | None = None
    source_uri: str | None = None
    series_key: str | None = None
    item_id: int | None = None
    format: str | None = None  # dicom, nifti, medmnist; None for a picture

    def same_modality(self, item: Item) -> bool:
        """Whether ``item`` is of the query's modality; without one (NIfTI, MedMNIST) of its format too, unless the
        query is a picture, which is compared with every item without a modality."""
        if item.metadata.get("modality") != self.modality:
            return False
        return self.modality is not None or self.format is None or item.metadata.get("format") == self.format

    def is_own(self, item: Item) -> bool:
        """Whether ``item`` comes from the query's own source (the same file, volume or DICOM series)."""
        key = item.metadata.get("series_key")
        return self.source_uri in (item.uri, case_key(item)) or (key is not None and key == self.series_key)


@dataclass
class CaseHit:
    """A candidate case: its best item and that item's similarity to the query."""

    item: Item
    score: float

    def to_dict(self) -> dict:
        return {"item_id": self.item.id, "score": round(self.score, 4), "label": case_label(self.item), "name": case_name(self.item)}


@dataclass
class CaseReport:
    """A query's most similar cases (best first), its least similar (least similar last), and the vote."""

    query: Query
    most: list[CaseHit]
    least: list[CaseHit]
    candidates: int

    def similar_cases(self, picture: Callable[[CaseHit], Image.Image | None]) -> SimilarCases:
        """The report's ``SimilarCases``: each case's picture from ``picture(hit)`` (a blank one when None), fitted."""
        def case(hit: CaseHit) -> Case:
            return Case(thumbnail(picture(hit) or blank()), case_name(hit.item), case_label(hit.item), hit.score)

        query = Case(thumbnail(self.query.picture), self.query.name, self.query.label)
        return SimilarCases(query, [case(hit) for hit in self.most], [case(hit) for hit in self.least])

    def to_dict(self) -> dict:
        votes = Counter(case_label(hit.item) for hit in self.most if case_label(hit.item) is not None).most_common()
        return {
            "query": {"name": self.query.name, "kind": self.query.kind, "modality": self.query.modality,
                      "label": self.query.label, "item_id": self.query.item_id},
            "candidates": self.candidates,
            "most_similar": [hit.to_dict() for hit in self.most],
            "least_similar": [hit.to_dict() for hit in self.least],
            "vote": dict(votes),
            "vote_winners": [label for label, count in votes if count == votes[0][1]],
        }


def case_label(item: Item) -> str | None:
    return item.labels[0] if item.labels else None


def case_name(item: Item) -> str:
    """A short name of an item's case: its id, source file or folder, and modality (no patient data)."""
    base = item.uri.rsplit("/", 1)[-1]
    if item.metadata.get("format") == "medmnist":
        base = f"{base}[{item.metadata.get('index')}]"
    modality = item.metadata.get("modality")
    return f"#{item.id} {base}" + (f" ({modality})" if modality else "")


def case_key(item: Item) -> str:
    """What one case is: a source, or a single image of a MedMNIST split."""
    return f"{item.uri}[{item.metadata['index']}]" if item.metadata.get("format") == "medmnist" else item.uri


# queries ----------------------------------------------------------------------------------------
def medical_pipeline(store: Collection) -> MedicalPipeline:
    """The pipeline of the collection's medical space (refusing a collection without one)."""
    if MEDICAL_SPACE not in store.manifest.spaces:
        raise CollectionError(f"{store.path} holds no medical scans: index them with 'cbir index DIR --medical -c {store.path}'")
    return store.pipeline(MEDICAL_SPACE)


def query_from_item(store: Collection, item_id: int) -> Query:
    """A stored slice or series as the query."""
    found = store.catalog.get_items([item_id], with_vectors=True)
    if item_id not in found or store.catalog.item_space(item_id) != MEDICAL_SPACE:
        raise CollectionError(f"no medical item with id {item_id} in {store.path}")
    item = found[item_id]
    return Query(
        np.array(item.vector), item.kind, case_picture(store, item), case_name(item), item.metadata.get("modality"),
        item.metadata.get("patient_key"), case_label(item), case_key(item), item.metadata.get("series_key"), item.id,
        item.metadata.get("format"),
    )


def query_from_path(store: Collection, path: Path, modality: str | None = None) -> Query:
    """A DICOM file or series folder, a NIfTI volume or a picture as the query (``modality``: that of a picture)."""
    pipeline = medical_pipeline(store)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    path = path.resolve()
    try:
        if path.is_dir():
            return _series_query(pipeline, path)
        kind = scan_format(path)
        if kind == "nifti":
            return _scan_query(pipeline, nifti_scan(path, pipeline.slices, pipeline.axis), path.name, str(path))
        if kind == "dicom":
            image = read_dicom(path, pipeline.salt)
            if len(image.frames) > 1:
                scan = dicom_scan([path], pipeline.salt, pipeline.slices)
                return _scan_query(pipeline, scan, path.name, series_uri([path], image.metadata["series_key"]))
            picture = Image.fromarray(to_uint8(image.frames[0])).convert("RGB")
            return Query(pipeline.encode_pictures([picture])[0], SLICE_KIND, picture, path.name, image.metadata.get("modality"),
                         image.metadata.get("patient_key"), series_key=image.metadata.get("series_key"), format="dicom")
    except (ScanReadError, DicomError) as error:
        raise CollectionError(f"{path.name}: {error}") from None
    if is_image_path(path):
        picture = load_image(path)
        return Query(pipeline.encode_pictures([picture])[0], SLICE_KIND, picture, path.name, modality)
    raise CollectionError(f"{path.name}: not a DICOM file or series folder, NIfTI volume or picture (a MedMNIST image: give its item id)")


def _series_query(pipeline: MedicalPipeline, folder: Path) -> Query:
    scan = scan_dicom(dicom_candidates(folder), pipeline.salt)
    if not scan.series:
        reasons = "; ".join(sorted({reason for _, reason in scan.skipped})[:3])
        raise CollectionError(f"{folder.name} holds no readable DICOM series" + (f" ({reasons})" if reasons else ""))
    series = max(scan.series, key=lambda s: len(s.files))  # the largest series when a folder holds several
    return _scan_query(pipeline, dicom_scan(series.files, pipeline.salt, pipeline.slices), folder.name, series_uri(series.files, series.key))


def _scan_query(pipeline: MedicalPipeline, scan: Scan, name: str, uri: str) -> Query:
    vectors = pipeline.encode_pictures(scan.images)
    middle = scan.images[len(scan.images) // 2]
    kind = SERIES_KIND if scan.series else SLICE_KIND
    metadata = scan.metadata
    return Query(series_descriptor(vectors), kind, middle, name, metadata.get("modality"), metadata.get("patient_key"),
                 source_uri=uri, series_key=metadata.get("series_key"), format=metadata.get("format"))


# ranking ----------------------------------------------------------------------------------------
def similar_cases(store: Collection, query: Query, k: int = 5, exclude_same_patient: bool = False) -> CaseReport:
    """The ``k`` most and ``k`` least similar cases of the query's modality (the query's own source left out)."""
    if exclude_same_patient and query.patient_key is None:
        raise CollectionError("the query carries no patient ID, so its patient's cases cannot be excluded")
    ids, vectors = store.vectors(MEDICAL_SPACE)
    items = store.catalog.get_items(ids)
    best: dict[str, tuple[float, Item]] = {}
    scores = vectors @ np.asarray(query.vector, dtype=np.float32)
    for item_id, score in zip(ids, scores):
        item = items[int(item_id)]
        if item.kind != query.kind or not query.same_modality(item):
            continue
        if query.is_own(item) or (exclude_same_patient and item.metadata.get("patient_key") == query.patient_key):
            continue
        key = case_key(item)
        if key not in best or score > best[key][0]:
            best[key] = (float(score), item)
    cases = list(best.values())
    most, least = most_and_least(np.array([score for score, _ in cases]), k)
    hits = [[CaseHit(cases[i][1], cases[i][0]) for i in chosen] for chosen in (most, least)]
    return CaseReport(query, hits[0], hits[1], len(cases))


# pictures ---------------------------------------------------------------------------------------
def case_picture(store: Collection, item: Item) -> Image.Image | None:
    """The slice an item shows (a series: its middle representative slice), or None when its file is gone or changed."""
    metadata = item.metadata
    try:
        if metadata.get("format") == "medmnist":
            path, split = item.uri.rsplit("#", 1)
            return _medmnist_picture(path, split, int(metadata["index"]))
        if metadata.get("format") == "nifti":
            volume = read_nifti(item.uri, axis=int(metadata.get("axis", 2)), volume=int(metadata.get("volume", 0)))
            return volume.image(int(metadata["slice"]))
        state = store.catalog.sources(MEDICAL_KIND).get(item.uri)
        if state is None:
            return None
        image = read_dicom(state.members[int(metadata.get("member", 0))][0], medical_pipeline(store).salt)
        return Image.fromarray(to_uint8(image.frames[int(metadata.get("frame", 0))])).convert("RGB")
    except (ScanReadError, OSError, ValueError, IndexError, KeyError):
        return None


@functools.lru_cache(maxsize=4)
def _medmnist_split(path: str, split: str):
    return read_medmnist(path, split)


def _medmnist_picture(path: str, split: str, index: int) -> Image.Image:
    return array_to_image(_medmnist_split(path, split).images[index])


def blank(text: str = "file not available") -> Image.Image:
    """A grey square saying why a case has no picture."""
    picture = Image.new("RGB", (PICTURE_SIDE, PICTURE_SIDE), (200, 200, 200))
    ImageDraw.Draw(picture).text((8, PICTURE_SIDE // 2 - 6), text, fill=(60, 60, 60))
    return picture


def thumbnail(picture: Image.Image, side: int = PICTURE_SIDE) -> Image.Image:
    """A picture fitted into a ``side`` square (small MedMNIST images are enlarged without smoothing)."""
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.NEAREST if scale > 2 else Image.BICUBIC)

