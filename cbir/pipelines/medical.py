"""Medical scans: a DICOM series, a NIfTI volume or a MedMNIST split is one source, in the ``medical`` space.

A DICOM series (files grouped by SeriesInstanceUID, in slice order) or a
NIfTI volume gives a few representative ``slice`` items and one ``series``
item, the mean of its slice descriptors; a MedMNIST ``.npz`` split gives one
``slice`` item per image, with its label (each image is a case of its own).
Items keep only what ``cbir.io.deidentify`` lets out of the readers: modality,
body part, series description, pixel spacing and the like, and salted keys
of the patient, study and series; the salt is the space's own, stored in its
record (never shown by ``info``). Files of other kinds found beside the scans
are skipped with the reason, like broken ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from cbir.core.items import Item
from cbir.encoders.encoder import Encoder, EncoderSpec, shared_encoder
from cbir.io.deidentify import new_salt
from cbir.io.dicom import DicomError, read_dicom, scan_dicom
from cbir.io.images import load_image
from cbir.io.medmnist import array_to_image, medmnist_splits, read_medmnist
from cbir.io.nifti import is_nifti_path, read_nifti
from cbir.io.volumes import ScanReadError, representative_slices, to_uint8
from cbir.pipelines.decoding import DecodeError, SourceDataset, batches, decoding_workers
from cbir.pipelines.sources import Source, SourceResult

MEDICAL_SPACE = "medical"
MEDICAL_KIND = "medical"
ENCODER_TYPE = "medical"
SLICE_KIND, SERIES_KIND = "slice", "series"
DEFAULT_SLICES = 5
DEFAULT_AXIS = 2  # axial slices of NIfTI volumes
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
SERIES_MARK = "#series-"
NOT_MEDICAL = "not a medical scan (DICOM, NIfTI .nii/.nii.gz or MedMNIST .npz)"


def scan_format(path: str | Path) -> str | None:
    """``dicom``, ``nifti`` or ``medmnist`` by name or, for DICOM files without a suffix, by the DICM preamble."""
    name = str(path).lower()
    if is_nifti_path(name):
        return "nifti"
    if name.endswith(".npz"):
        return "medmnist"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return "dicom" if stream.read(4) == b"DICM" else None
    except OSError:
        return None


def series_descriptor(slice_vectors: np.ndarray) -> np.ndarray:
    """The mean of L2-normalised slice descriptors (N x D), L2-normalised: one vector for the series."""
    vectors = np.asarray(slice_vectors, dtype=np.float32)
    if vectors.ndim != 2 or not len(vectors):
        raise ValueError("a series descriptor needs at least one slice descriptor (N x D)")
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    pooled = vectors.mean(axis=0)
    return pooled / max(float(np.linalg.norm(pooled)), 1e-12)


@dataclass
class Scan:
    """A decoded source: the pictures to encode, what each one is, and what they share."""

    images: list[Image.Image]
    slices: list[dict]
    metadata: dict
    labels: list[list[str]] = field(default_factory=list)
    series: bool = True  # whether a pooled ``series`` item is made


def dicom_scan(files: Sequence[Path], salt: str, slices: int) -> Scan:
    """Representative slices of a DICOM series (frames of a single multi-frame file, else files in order)."""
    if len(files) == 1:
        image = read_dicom(files[0], salt)
        picks = representative_slices(len(image.frames), slices)
        chosen = [(0, int(frame), image.frames[frame], image.metadata) for frame in picks]
        total, failed = len(image.frames), 0
    else:
        chosen, failed = [], 0
        for position in representative_slices(len(files), slices):
            try:
                image = read_dicom(files[position], salt)
            except DicomError:
                failed += 1
                continue
            frame = len(image.frames) // 2
            chosen.append((int(position), frame, image.frames[frame], image.metadata))
        total = len(files)
        if not chosen:
            raise DecodeError(f"none of the {failed} slices read of the {len(files)}-file series could be decoded")
    metadata = {key: value for key, value in chosen[0][3].items() if key != "frames"}
    metadata.update(format="dicom", slices=total)
    if failed:
        metadata["unreadable_slices"] = failed
    parts = [{"slice": member if len(files) > 1 else frame, "member": member, "frame": frame} for member, frame, _, _ in chosen]
    return Scan([_picture(pixels) for _, _, pixels, _ in chosen], parts, metadata)


def nifti_scan(path: Path, slices: int, axis: int) -> Scan:
    """Representative slices along ``axis`` of the first volume of a NIfTI file."""
    volume = read_nifti(path, axis=axis)
    picks = representative_slices(len(volume), slices)
    return Scan(volume.images(picks), [{"slice": int(i)} for i in picks], dict(volume.metadata, axis=axis))


def medmnist_scan(path: Path, split: str) -> Scan:
    """Every image of a MedMNIST split, each a case with its label."""
    data = read_medmnist(path, split)
    labels = [[str(int(value)) for value in row] for row in data.labels]
    parts = [{"index": index, "label": row[0] if len(row) == 1 else row} for index, row in enumerate(labels)]
    images = [array_to_image(pixels) for pixels in data.images]
    return Scan(images, parts, {"format": "medmnist", "split": split}, labels, series=False)


def _picture(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(to_uint8(pixels)).convert("RGB")


class ScanDecoder:
    """A source -> ``Scan`` (picklable, so it runs in workers); sources refused while grouping raise their reason."""

    def __init__(self, salt: str, slices: int, axis: int, refused: dict[str, str]):
        self.salt, self.slices, self.axis, self.refused = salt, slices, axis, refused

    def __call__(self, source: Source, contents: list[bytes]) -> Scan:
        if source.uri in self.refused:
            raise DecodeError(self.refused[source.uri])
        try:
            if SERIES_MARK in source.uri:
                return dicom_scan(source.members, self.salt, self.slices)
            if is_nifti_path(source.members[0]):
                return nifti_scan(source.members[0], self.slices, self.axis)
            return medmnist_scan(source.members[0], source.uri.rsplit("#", 1)[1])
        except (ScanReadError, ValueError) as error:
            raise DecodeError(str(error)) from None


class MedicalPipeline:
    """Scans in, ``slice`` and ``series`` items out, in the ``medical`` space."""

    kind = MEDICAL_KIND
    name = MEDICAL_KIND
    space = MEDICAL_SPACE

    def __init__(self, encoder: Encoder, salt: str | None = None, slices: int = DEFAULT_SLICES, axis: int = DEFAULT_AXIS):
        if slices < 1:
            raise ValueError("at least one representative slice per series is needed")
        self.encoder = encoder
        self.salt = salt or new_salt()
        self.slices = slices
        self.axis = axis
        self.refused: dict[str, str] = {}

    @classmethod
    def from_record(cls, record: dict, encoder: Encoder | None = None) -> "MedicalPipeline":
        """The pipeline of a space recorded by ``space_record`` (``encoder``: that encoder, already loaded)."""
        encoder = encoder or shared_encoder(EncoderSpec.from_dict(record))
        return cls(encoder, record["salt"], record.get("slices", DEFAULT_SLICES), record.get("axis", DEFAULT_AXIS))

    def accepts(self, path: Path) -> bool:
        return not path.name.startswith(".")

    def sources(self, files: Sequence[Path]) -> list[Source]:
        """One source per DICOM series, NIfTI file and MedMNIST split; every other file a source refused with its reason."""
        found, dicom = [], []
        self.refused = {}

        def refuse(path: Path, reason: str) -> None:
            found.append(Source.file(path))
            self.refused[str(path)] = reason

        for path in files:
            kind = scan_format(path)
            if kind == "nifti":
                found.append(Source.file(path))
            elif kind == "dicom":
                dicom.append(path)
            elif kind == "medmnist":
                try:
                    splits = medmnist_splits(path)
                except (OSError, ValueError) as error:
                    refuse(path, str(error))
                    continue
                if not splits:
                    refuse(path, "no MedMNIST split in the .npz file (arrays NAME_images with NAME_labels)")
                found += [Source(f"{path}#{split}", (path,)) for split in splits]
            else:
                refuse(path, NOT_MEDICAL)
        scan = scan_dicom(dicom, self.salt)
        for series in scan.series:
            found.append(Source(series_uri(series.files, series.key), tuple(series.files)))
        for path, reason in scan.skipped:
            refuse(path, reason)
        return found

    def space_record(self) -> tuple[dict, int]:
        record = {"type": ENCODER_TYPE, **self.encoder.spec.to_dict(), "slices": self.slices, "axis": self.axis, "salt": self.salt}
        return record, self.encoder.dim

    def encode(self, image: str | Path | Image.Image) -> np.ndarray:
        """The descriptor of one query picture (1 x D)."""
        return self.encoder.encode_images([load_image(image, min_side=self.encoder.spec.image_size)])

    def encode_pictures(self, pictures: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Descriptors of pictures (N x D), ``batch_size`` at a time."""
        chunks = [self.encoder.encode_images(list(pictures[start : start + batch_size])) for start in range(0, len(pictures), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.encoder.dim), dtype=np.float32)

    def decoder(self) -> ScanDecoder:
        return ScanDecoder(self.salt, self.slices, self.axis, dict(self.refused))

    def run(self, sources: Sequence[Source], known_hashes, batch_size: int, workers: int | None) -> Iterator[list[SourceResult]]:
        dataset = SourceDataset(sources, self.decoder(), known_hashes)
        workers = decoding_workers(busy_threads=torch.get_num_threads()) if workers is None else workers
        for batch in batches(dataset, max(1, batch_size // max(1, self.slices)), workers, prefetch=2):
            results = []
            for entry in batch:
                uri = sources[entry.index].uri
                results.append(entry.result(lambda scan: scan_items(scan, uri, entry.content_hash, self.encode_pictures(scan.images, batch_size))))
            yield results


def series_uri(files: Sequence[Path], series_key: str) -> str:
    """A series' URI: the folder its files share and its salted key (no UID, nothing that names a patient)."""
    folder = os.path.commonpath([str(Path(f).parent) for f in files])
    return f"{folder}{SERIES_MARK}{series_key}"


def scan_items(scan: Scan, uri: str, content_hash: str | None, vectors: np.ndarray) -> list[Item]:
    """The ``slice`` items of a decoded scan and, for a series or volume, its pooled ``series`` item."""
    items = []
    for position, (vector, part) in enumerate(zip(vectors, scan.slices)):
        labels = scan.labels[position] if scan.labels else []
        items.append(Item(SLICE_KIND, uri, vector, content_hash, labels=labels, metadata={**scan.metadata, **part}))
    if scan.series and len(vectors):
        middle = scan.slices[len(scan.slices) // 2]
        metadata = {**scan.metadata, **middle, "pooled_slices": len(vectors)}
        items.append(Item(SERIES_KIND, uri, series_descriptor(vectors), content_hash, metadata=metadata))
    return items
