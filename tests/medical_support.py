"""Files for the medical tests: the DICOM and NIfTI files pydicom and nibabel ship, and small series written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="the medical extra is not installed (pip install 'cbir[medical]')")

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

SALT = "salt-of-the-test-collection"


def shipped(name: str) -> Path:
    """A file of pydicom's own test data (inside its wheel; nothing is downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom does not ship {name}")
    return Path(path)


def shipped_cr() -> list[Path]:
    """The MONOCHROME1 computed radiographs of pydicom's DICOMDIR test tree."""
    root = shipped("CT_small.dcm").parent / "dicomdirtests" / "77654033"
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name.startswith("CR"))
    if not files:
        pytest.skip("pydicom's DICOMDIR test tree with CR images is absent")
    return files


def write_slice(
    path: Path,
    series_uid: str,
    z: float | None,
    instance: int | None,
    value: int,
    size: tuple[int, int] = (8, 8),
    patient: dict[str, str] | None = None,
    extra: dict | None = None,
    pixels: np.ndarray | None = None,
) -> Path:
    """A small uncompressed CT slice whose pixels all equal ``value`` (or are ``pixels``), at height ``z`` (patient axis)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CT"
    dataset.BodyPartExamined = "CHEST"
    dataset.SeriesDescription = "Thorax 1mm"
    dataset.SeriesInstanceUID = series_uid
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    for keyword, text in (patient or {}).items():
        setattr(dataset, keyword, text)
    if z is not None:
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [0, 0, z]
    if instance is not None:
        dataset.InstanceNumber = instance
    dataset.Rows, dataset.Columns = size
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
    dataset.PixelSpacing = [0.7, 0.7]
    dataset.SliceThickness = 1.0
    for keyword, item in (extra or {}).items():
        setattr(dataset, keyword, item)
    dataset.PixelData = (np.full(size, value, dtype=np.uint16) if pixels is None else pixels.astype(np.uint16)).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_series(folder: Path, slices: int = 3, patient: dict[str, str] | None = None, value: int = 1100, **options) -> list[Path]:
    """A written CT series of ``slices`` files (one series UID, stacked along z), in ``folder``: 8x8 slices of a
    random pattern seeded by ``value`` (so that series of other values look different), or flat ones of another size."""
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    random = np.random.default_rng(value)
    paths = []
    for number in range(slices):
        pixels = None if "size" in options else random.integers(value - 400, value + 400, (8, 8))
        paths.append(write_slice(folder / f"slice{number}.dcm", series, float(number), number + 1, value, patient=patient,
                                 pixels=pixels, **options))
    return paths


def write_medmnist(path: Path, per_split: int = 3) -> Path:
    """A tiny MedMNIST-style .npz: 28x28 greyscale ``train`` and ``test`` images of two labels (stripes or a square)."""
    arrays = {}
    for offset, split in enumerate(("train", "test")):
        images, labels = [], []
        for number in range(per_split):
            label = number % 2
            image = np.zeros((28, 28), dtype=np.uint8)
            if label:
                image[6 + offset : 22, 6 + number : 22] = 220
            else:
                image[:, :: 3 + number] = 200
            images.append(image)
            labels.append(label)
        arrays[f"{split}_images"] = np.stack(images)
        arrays[f"{split}_labels"] = np.array(labels)[:, None]
    np.savez(path, **arrays)
    return path
