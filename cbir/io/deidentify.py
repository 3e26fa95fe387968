"""What may leave a DICOM reader: a whitelist of technical attributes and salted keys, nothing that names a patient.

Patient name, ID, birth date, addresses, accession numbers, physicians,
institutions and free-text comments stay inside the reader. The patient ID
becomes a salted key (HMAC-SHA256 with a per-collection salt), so results can
exclude or group the query's own patient without anyone learning the ID;
series and study UIDs become salted keys too. ``Redactor`` scrubs the
identifying values of a dataset from any text that leaves the reader (kept
descriptions, error messages), and ``quiet_pydicom`` keeps pydicom's own
warnings and log records, which may quote values, from reaching the logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import warnings
from typing import Iterator

KEPT_ATTRIBUTES = {
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "SeriesDescription": "series_description",
    "ViewPosition": "view_position",
    "ImageLaterality": "laterality",
    "PixelSpacing": "pixel_spacing",
    "SliceThickness": "slice_thickness",
    "SpacingBetweenSlices": "spacing_between_slices",
    "Rows": "rows",
    "Columns": "columns",
    "NumberOfFrames": "frames",
    "PhotometricInterpretation": "photometric",
    "BitsStored": "bits_stored",
}
"""DICOM keyword -> metadata key of the only attributes a reader returns (besides the salted keys)."""

IDENTIFYING_ATTRIBUTES = (
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "PatientAddress",
    "PatientTelephoneNumbers", "MilitaryRank", "MedicalRecordLocator", "AccessionNumber", "StudyID",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
    "ReferringPhysicianAddress", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName",
    "RequestingPhysician", "StationName", "DeviceSerialNumber",
)
"""Attributes whose values are scrubbed from every text that leaves the reader (person names are added by VR).
Free text (comments, study and protocol descriptions) is simply never returned."""

SALT_MIN_LENGTH = 8


def new_salt() -> str:
    """A fresh random salt for a collection (keep it with the collection, never beside exported keys)."""
    return secrets.token_hex(16)


def salted_key(salt: str | bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 of ``kind:value`` under ``salt``, 20 hex digits: equal values give equal keys within a collection."""
    salt_bytes = salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
    if len(salt_bytes) < SALT_MIN_LENGTH:
        raise ValueError(f"the salt must be at least {SALT_MIN_LENGTH} bytes: use new_salt() once per collection")
    return hmac.new(salt_bytes, f"{kind}:{value}".encode("utf-8"), hashlib.sha256).hexdigest()[:20]


class Redactor:
    """Removes a dataset's identifying values from text."""

    MIN_LENGTH = 3

    def __init__(self, values: set[str]):
        pieces = set()
        for value in values:
            pieces.add(value)
            pieces.update(part for part in re.split(r"[\^\\=]+", value))
        kept = sorted((piece.strip() for piece in pieces if len(piece.strip()) >= self.MIN_LENGTH), key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(piece) for piece in kept), re.IGNORECASE) if kept else None

    @classmethod
    def of(cls, dataset) -> "Redactor":
        """The redactor of a pydicom dataset: values of the identifying attributes and of every person name."""
        values: set[str] = set()
        for element in dataset.iterall():
            if element.VR == "PN" or element.keyword in IDENTIFYING_ATTRIBUTES:
                if element.VR == "SQ":
                    continue
                for value in element.value if element.VM > 1 else [element.value]:
                    if value not in (None, ""):
                        values.add(str(value))
        return cls(values)

    def __call__(self, text: str) -> str:
        return text if self.pattern is None else self.pattern.sub("[removed]", text)


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and log records (they may quote attribute values) while reading."""
    logger = logging.getLogger("pydicom")
    disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled
