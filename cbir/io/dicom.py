"""DICOM files and series as de-identified images ready for an encoder (pydicom).

Pixels go through the display pipeline of the standard, with pydicom's own
functions: the modality LUT (or rescale slope/intercept), then the VOI LUT
or the first window (centre/width), scaled to [0, 1] over the output range
of that step; MONOCHROME1 is inverted so that dense is always bright. Without
VOI information the frame's own range is stretched. Colour images (RGB, YBR,
palette) come out as RGB. Multi-frame files give one image per frame.

Series are grouped by SeriesInstanceUID and their slices ordered by
ImagePositionPatient projected on the slice normal (else InstanceNumber,
else file name); slices whose size differs from the rest of their series,
unreadable and non-DICOM files are reported, never fatal.

Only the whitelisted attributes of ``cbir.io.deidentify`` and salted keys
leave this module, in returned metadata and in error messages alike.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from cbir.io.deidentify import KEPT_ATTRIBUTES, Redactor, quiet_pydicom, salted_key
from cbir.io.volumes import ScanReadError, Volume, stretch

INSTALL_HINT = "pip install 'cbir[medical]'"


class DicomError(ScanReadError):
    """A DICOM file that cannot be used; the message names what to do and no patient data."""


@dataclass
class DicomImage:
    """The frames of one file after the display pipeline (F x H x W, or F x H x W x 3, in [0, 1])."""

    frames: np.ndarray
    metadata: dict


def read_dicom(path: str | Path, salt: str | bytes) -> DicomImage:
    """Read one DICOM file: its display-ready frames and its de-identified metadata."""
    with quiet_pydicom():
        dataset = _dataset(path, headers_only=False)
        redact = Redactor.of(dataset)
        try:
            frames = display_frames(dataset)
        except DicomError as error:
            raise DicomError(redact(str(error))) from None
        except Exception as error:  # noqa: BLE001 - pydicom and its plugins raise many types
            raise DicomError(redact(f"pixel data could not be decoded; truncated or corrupt file? ({type(error).__name__}: {error})")) from None
        return DicomImage(frames, kept_metadata(dataset, salt, redact))


def display_frames(dataset) -> np.ndarray:
    """The frames of a dataset after modality LUT, VOI LUT/windowing and MONOCHROME1 inversion, in [0, 1]."""
    import pydicom.pixels

    if not any(name in dataset for name in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if "Rows" in dataset:
            raise DicomError("no pixel data although the header describes an image: truncated or corrupt file")
        raise DicomError("no pixel data: not an image (a report, structure set or other non-image object) or a truncated file")
    _check_decoder(dataset)
    pixels = dataset.pixel_array
    frames = int(dataset.get("NumberOfFrames") or 1)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric.startswith("MONOCHROME"):
        stack = pixels if frames > 1 else pixels[None]
        return np.stack([grey_frame(frame, dataset) for frame in stack])
    if photometric == "PALETTE COLOR":
        rgb = pydicom.pixels.apply_color_lut(pixels, dataset)
        depth = int(dataset.RedPaletteColorLookupTableDescriptor[2])
        stack = rgb if frames > 1 else rgb[None]
        return stretch(stack, 0.0, float(2**depth - 1))
    stack = pixels if frames > 1 else pixels[None]
    return stretch(stack, 0.0, float(2 ** int(dataset.get("BitsStored", 8)) - 1))


def grey_frame(frame: np.ndarray, dataset) -> np.ndarray:
    """One greyscale frame: modality LUT, then VOI LUT or window, mapped to [0, 1]; MONOCHROME1 inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(frame, dataset)
    voi = voi_kind(dataset)
    if voi is None:
        scaled = stretch(values)
    else:
        low, high = voi_output_range(dataset, voi)
        scaled = stretch(apply_voi_lut(values, dataset, index=0), low, high)
    if str(dataset.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled


def voi_kind(dataset) -> str | None:
    """Which VOI step pydicom's ``apply_voi_lut`` applies: 'lut', 'window' or None."""
    sequence = dataset.get("VOILUTSequence")
    if sequence and sequence[0].get("LUTDescriptor") is not None and sequence[0].get("LUTData") is not None:
        return "lut"
    if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
        return "window"
    return None


def voi_output_range(dataset, kind: str) -> tuple[float, float]:
    """The range of values the VOI step can produce (pydicom's conventions), to map onto [0, 1]."""
    if kind == "lut":
        item = dataset.VOILUTSequence[0]
        data = item.LUTData
        if isinstance(data, bytes):
            data = np.frombuffer(data, dtype=np.uint8 if int(item.LUTDescriptor[2]) <= 8 else "<u2")
        data = np.asarray(data, dtype=np.float64)
        return float(data.min()), float(data.max())
    bits = int(dataset.BitsStored)
    if dataset.get("ModalityLUTSequence"):
        descriptor = dataset.ModalityLUTSequence[0].LUTDescriptor
        low, high = 0.0, float(2 ** int(descriptor[2]) - 1)
    elif int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None and not dataset.get("ModalityLUTSequence"):
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return min(low, high), max(low, high)


def kept_metadata(dataset, salt: str | bytes, redact: Redactor | None = None) -> dict:
    """The whitelisted attributes (plain Python values, person data scrubbed) and the salted keys."""
    redact = redact or Redactor.of(dataset)
    metadata: dict = {}
    for keyword, key in KEPT_ATTRIBUTES.items():
        value = dataset.get(keyword)
        if value not in (None, ""):
            metadata[key] = _plain(value, redact)
    patient = str(dataset.get("PatientID") or "").strip()
    issuer = str(dataset.get("IssuerOfPatientID") or "").strip()
    metadata["patient_key"] = salted_key(salt, "patient", f"{issuer}/{patient}") if patient else None
    for keyword, key in (("SeriesInstanceUID", "series_key"), ("StudyInstanceUID", "study_key")):
        uid = str(dataset.get(keyword) or "").strip()
        metadata[key] = salted_key(salt, key, uid) if uid else None
    return metadata


def _plain(value, redact: Redactor):
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(item, redact) for item in value]
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return redact(str(value).strip())


def _dataset(path: str | Path, headers_only: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        try:
            return pydicom.dcmread(path, stop_before_pixels=headers_only)
        except InvalidDicomError:
            dataset = pydicom.dcmread(path, stop_before_pixels=headers_only, force=True)
            if "SOPClassUID" not in dataset:
                raise DicomError("not a DICOM file (no DICOM preamble, no SOP class)") from None
            return dataset
    except DicomError:
        raise
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, InvalidDicomError) as error:
        if isinstance(error, FileNotFoundError):
            raise DicomError("file not found") from None
        if isinstance(error, OSError) and not isinstance(error, EOFError):
            raise DicomError(f"unreadable: {error.strerror or type(error).__name__}") from None
        raise DicomError(f"truncated or corrupt DICOM file ({type(error).__name__})") from None


def _check_decoder(dataset) -> None:
    """Fail with the plugin to install when the pixel data's compression has no available decoder."""
    from pydicom.pixels import get_decoder

    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DicomError(
            f"pixel data compressed as {syntax.name}, which no pydicom decoder reads: convert the file to an "
            "uncompressed transfer syntax first (for example with dcmtk's dcmdjpeg or gdcmconv --raw)"
        ) from None
    if not decoder.is_available:
        plugin = plugin_for(syntax.name)
        raise DicomError(f"pixel data compressed as {syntax.name} needs a decoder plugin: pip install {plugin} (or {INSTALL_HINT})")


def plugin_for(syntax_name: str) -> str:
    """The PyPI packages that let pydicom decode a compressed transfer syntax."""
    if "2000" in syntax_name or "HTJ2K" in syntax_name:
        return "pylibjpeg pylibjpeg-openjpeg"
    if "RLE" in syntax_name:
        return "pylibjpeg pylibjpeg-rle"
    return "pylibjpeg pylibjpeg-libjpeg"


# series ---------------------------------------------------------------------------------------------
@dataclass
class DicomSeries:
    """The files of one series in slice order, with the series' de-identified metadata."""

    key: str
    files: list[Path]
    metadata: dict
    order: str  # "position", "instance number" or "file name"


@dataclass
class DicomScan:
    """The series found among some files, and the files left out with the reason."""

    series: list[DicomSeries] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class _Header:
    path: Path
    series_uid: str
    rows: int
    columns: int
    position: float | None
    instance: int | None
    normal: np.ndarray | None
    metadata: dict


def dicom_candidates(folder: str | Path) -> list[Path]:
    """Every file under ``folder`` (DICOM files often have no suffix), hidden ones left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def scan_dicom(files: Iterable[str | Path], salt: str | bytes) -> DicomScan:
    """Group DICOM files into series (headers only) and order each series' slices; folders are passed over."""
    scan = DicomScan()
    by_series: dict[str, list[_Header]] = defaultdict(list)
    for path in sorted(Path(f) for f in files):
        if not path.is_file():
            continue
        try:
            header = _header(path, salt)
        except DicomError as error:
            scan.skipped.append((path, str(error)))
            continue
        except Exception as error:  # noqa: BLE001 - a malformed header must not stop the scan
            scan.skipped.append((path, f"malformed DICOM header ({type(error).__name__})"))
            continue
        by_series[header.series_uid].append(header)
    for headers in by_series.values():
        sizes = Counter((h.rows, h.columns) for h in headers)
        size = sizes.most_common(1)[0][0]
        for header in headers:
            if (header.rows, header.columns) != size:
                scan.skipped.append((header.path, f"slice of {header.rows}x{header.columns} pixels in a series of {size[0]}x{size[1]} slices"))
        kept = [h for h in headers if (h.rows, h.columns) == size]
        ordered, order = order_slices(kept)
        metadata = dict(ordered[0].metadata, files=len(ordered))
        scan.series.append(DicomSeries(metadata["series_key"], [h.path for h in ordered], metadata, order))
    return scan


def order_slices(headers: list[_Header]) -> tuple[list[_Header], str]:
    """Slices sorted along the series normal when they are parallel, else by instance number, else by file name."""
    if all(h.position is not None for h in headers) and _parallel(headers):
        return sorted(headers, key=lambda h: (h.position, str(h.path))), "position"
    if all(h.instance is not None for h in headers):
        return sorted(headers, key=lambda h: (h.instance, str(h.path))), "instance number"
    return sorted(headers, key=lambda h: str(h.path)), "file name"


def _parallel(headers: list[_Header]) -> bool:
    """Whether all slices share one orientation (a stack, not a radial or localiser set)."""
    first = headers[0].normal
    return all(abs(float(np.dot(first, h.normal))) > 0.999 for h in headers)


def _header(path: Path, salt: str | bytes) -> _Header:
    with quiet_pydicom():
        dataset = _dataset(path, headers_only=True)
        if "Rows" not in dataset or "Columns" not in dataset:
            raise DicomError("no pixel data: not an image (a report, structure set or other non-image object)")
        uid = str(dataset.get("SeriesInstanceUID") or "").strip() or f"no series uid: {path.parent}"
        position, normal = None, None
        orientation, origin = dataset.get("ImageOrientationPatient"), dataset.get("ImagePositionPatient")
        if orientation is not None and origin is not None and len(orientation) == 6 and len(origin) == 3:
            row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
            normal = np.cross(row, column)
            position = float(np.dot(normal, np.asarray(origin, float)))
        instance = _integer(dataset.get("InstanceNumber"))
        metadata = kept_metadata(dataset, salt)
        if metadata["series_key"] is None:
            metadata["series_key"] = salted_key(salt, "series_key", uid)
        return _Header(path, uid, int(dataset.Rows), int(dataset.Columns), position, instance, normal, metadata)


def _integer(value) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def read_series(series: DicomSeries, salt: str | bytes) -> tuple[Volume, list[tuple[Path, str]]]:
    """The slices of a series as a ``Volume`` (frames of multi-frame files in order), and the files that failed."""
    stacks, skipped = [], []
    for path in series.files:
        try:
            stacks.append(read_dicom(path, salt).frames)
        except DicomError as error:
            skipped.append((path, str(error)))
    if not stacks:
        raise DicomError(f"none of the {len(series.files)} files of the series could be read")
    metadata = dict(series.metadata, slices=int(sum(len(s) for s in stacks)), order=series.order)
    return Volume(np.concatenate(stacks), metadata), skipped
