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
) -> Path:
    """A small uncompressed CT slice whose pixels all equal ``value``, at height ``z`` (patient axis)."""
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
    dataset.PixelData = np.full(size, value, dtype=np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path
