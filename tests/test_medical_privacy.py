"""No value of an identifying DICOM attribute leaves the readers: not in metadata, JSON, logs, warnings,
printed output or error messages; the patient ID survives only as a salted key."""

from __future__ import annotations

import json
import logging
import re
import warnings

import pytest

from tests.medical_support import SALT, pydicom, shipped, shipped_cr, write_slice

from cbir.io.deidentify import IDENTIFYING_ATTRIBUTES, Redactor, new_salt, salted_key  # noqa: E402
from cbir.io.dicom import DicomError, read_dicom, read_series, scan_dicom  # noqa: E402

SHIPPED = ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm",
           "693_J2KI.dcm", "examples_palette.dcm", "MR_truncated.dcm", "rtplan.dcm"]
PATIENT = {
    "PatientName": "Quintessa^Zzyzxova",
    "PatientID": "PID-7781-XQ",
    "PatientBirthDate": "19450217",
    "PatientAddress": "17 Wexmoor Lane, Oxtonbury",
    "AccessionNumber": "ACC99812733",
    "ReferringPhysicianName": "Drumwright^Halvard",
    "InstitutionName": "Saint Ebberly Clinic",
    "OtherPatientIDs": "ALT-55123-QZ",
}


def identifying_values(path) -> set[str]:
    """The values of a file's identifying attributes and person names, as a reader would find them."""
    dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    values = set()
    for element in dataset.iterall():
        if element.VR == "SQ" or not (element.VR == "PN" or element.keyword in IDENTIFYING_ATTRIBUTES):
            continue
        for value in element.value if element.VM > 1 else [element.value]:
            if value not in (None, ""):
                values.update({str(value)} | {part for part in re.split(r"[\^\\=]+", str(value))})
    return {value.strip() for value in values if len(value.strip()) >= 4}


def assert_absent(values: set[str], text: str) -> None:
    for value in values:
        if value.isdigit():
            assert not re.search(rf"(?<![0-9]){re.escape(value)}(?![0-9])", text), f"{value!r} leaked"
        else:
            assert value.lower() not in text.lower(), f"{value!r} leaked"


def read_everything(paths, caplog, capsys) -> str:
    """Run every reader on ``paths`` and gather all they put out: metadata, JSON, errors, logs, warnings, prints."""
    outputs = []
    caplog.clear()
    capsys.readouterr()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in paths:
            try:
                image = read_dicom(path, SALT)
                outputs += [repr(image.metadata), json.dumps(image.metadata)]
            except DicomError as error:
                outputs += [str(error), repr(error)]
        scan = scan_dicom(paths, SALT)
        outputs += [json.dumps([s.metadata for s in scan.series]), repr([reason for _, reason in scan.skipped])]
        for series in scan.series:
            try:
                volume, skipped = read_series(series, SALT)
                outputs += [json.dumps(volume.metadata), repr([reason for _, reason in skipped])]
            except DicomError as error:
                outputs.append(str(error))
    printed = capsys.readouterr()
    outputs += [caplog.text, printed.out, printed.err] + [str(w.message) for w in caught]
    return "\n".join(outputs)


def test_shipped_files_leak_no_identifying_value(caplog, capsys):
    paths = [shipped(name) for name in SHIPPED] + shipped_cr()
    values = set().union(*(identifying_values(p) for p in paths))
    assert len(values) >= 10, values  # the shipped files do carry names, IDs and dates to leak
    text = read_everything(paths, caplog, capsys)
    assert "patient_key" in text and "modality" in text
    assert_absent(values, text)


def test_written_file_with_identifying_values_everywhere(tmp_path, caplog, capsys):
    """Identifying values in their own attributes, in a kept description, and in a malformed value
    that makes pydicom warn while reading."""
    series = pydicom.uid.generate_uid()
    paths = []
    for number in range(3):
        paths.append(write_slice(
            tmp_path / f"{number}.dcm", series, float(number), number + 1, 1100, patient=PATIENT,
            extra={"SeriesDescription": "Thorax for Quintessa Zzyzxova", "ImageComments": "seen by Drumwright, PID-7781-XQ"},
        ))
    bad = write_slice(tmp_path / "bad.dcm", series, 5.0, 12345678, 1100, patient=PATIENT)
    dataset = pydicom.dcmread(bad)
    dataset.Rows = 16  # the pixel data no longer fits: an error message is produced too
    dataset.save_as(bad)
    bad.write_bytes(bad.read_bytes().replace(b"12345678", b"Zzyzxova"))  # a name where a number belongs
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        _ = pydicom.dcmread(bad).InstanceNumber
    assert any("Zzyzxova" in str(w.message) for w in plain)  # pydicom alone would warn (and log) the value
    values = identifying_values(paths[0]) | {"Quintessa", "Zzyzxova", "PID-7781-XQ", "Drumwright"}
    text = read_everything(paths + [bad], caplog, capsys)
    assert_absent(values, text)
    metadata = read_dicom(paths[0], SALT).metadata
    assert metadata["series_description"] == "Thorax for [removed] [removed]"
    assert set(metadata) <= {"modality", "body_part", "series_description", "pixel_spacing", "slice_thickness", "rows",
                             "columns", "photometric", "bits_stored", "patient_key", "series_key", "study_key"}
    assert metadata["patient_key"] == salted_key(SALT, "patient", "/PID-7781-XQ")
    assert metadata["patient_key"] != salted_key(new_salt(), "patient", "/PID-7781-XQ")


def test_salted_keys():
    salt = new_salt()
    assert salted_key(salt, "patient", "123") == salted_key(salt, "patient", "123")
    assert salted_key(salt, "patient", "123") != salted_key(salt, "patient", "124")
    assert salted_key(salt, "patient", "123") != salted_key(salt, "series_key", "123")
    assert re.fullmatch(r"[0-9a-f]{20}", salted_key(salt, "patient", "123"))
    with pytest.raises(ValueError, match="salt"):
        salted_key("", "patient", "123")


def test_redactor_removes_names_in_any_case():
    redact = Redactor({"Doe^Jane", "ID-42-XY"})
    assert redact("scan of JANE DOE, id-42-xy") == "scan of [removed] [removed], [removed]"
    assert Redactor(set())("untouched") == "untouched"


def test_indexed_archive_leaks_nothing_to_the_catalog_outputs_logs_or_server(tmp_path, caplog, capsys):
    """Index DICOM series full of identifying values, report on them and serve them: no value is stored,
    written, printed, logged or served; only salted keys stand for the patient."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from cbir.cli import app
    from cbir.server.app import create_app
    from tests.medical_support import write_series

    scans = tmp_path / "archive"
    described = {"SeriesDescription": "Thorax for Quintessa Zzyzxova", "ImageComments": "seen by Drumwright, PID-7781-XQ"}
    first = write_series(scans / "s1", 3, PATIENT, value=1100, extra=described)
    write_series(scans / "s2", 2, PATIENT, value=1500, extra=described)
    write_series(scans / "s3", 2, {**PATIENT, "PatientID": "OTHER-2231-QQ", "PatientName": "Vandersloot^Ottoline"}, value=700)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        (scans / name).write_bytes(shipped(name).read_bytes())
    values = set().union(*(identifying_values(p) for p in sorted(scans.rglob("*.dcm"))))
    values |= {"Quintessa", "Zzyzxova", "PID-7781-XQ", "Drumwright", "Vandersloot", "OTHER-2231-QQ"}
    collection, out = tmp_path / "collection", tmp_path / "report"
    runner = CliRunner()
    outputs = []
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for args in (
            ["index", scans, "--medical", "-c", collection, "--size", "64", "--workers", "0"],
            ["index", scans, "--medical", "-c", collection, "--json"],
            ["medical", "report", scans / "s1", "-c", collection, "-k", "2", "--out", out],
            ["medical", "report", first[0], "-c", collection, "--exclude-same-patient", "--out", out, "--json"],
            ["medical", "report", "1", "-c", collection, "--exclude-same-patient", "--out", tmp_path / "by-id"],
            ["info", "-c", collection, "--json"],
            ["doctor", "-c", collection],
        ):
            done = runner.invoke(app, [str(arg) for arg in args])
            assert done.exit_code == 0, done.output
            outputs.append(done.output)
        with TestClient(create_app(collection)) as client:
            responses = [client.get("/info"), client.get("/medical"), client.post("/medical/similar", data={"item_id": "1"})]
            uploaded = client.post("/medical/similar", files={"image": ("Zzyzxova Quintessa.dcm", first[1].read_bytes())},
                                   data={"exclude_same_patient": "true"})
            assert uploaded.status_code == 200, uploaded.text
            assert uploaded.json()["query"]["modality"] == "CT" and uploaded.json()["candidates"] == 2  # s3, CT_small
            responses.append(uploaded)
            for item_id in range(1, 40):
                for path in (f"/items/{item_id}", f"/items/{item_id}/file", f"/items/{item_id}/thumbnail",
                             f"/medical/items/{item_id}/picture"):
                    responses.append(client.get(path))
                responses.append(client.post("/search", data={"item_id": str(item_id)}))
    assert any(response.status_code == 200 and response.headers["content-type"] == "image/png" for response in responses)
    served = [f"{response.status_code} {response.headers} " + response.content.decode("latin-1") for response in responses]
    written = [path.read_bytes().decode("latin-1") for folder in (collection, out, tmp_path / "by-id")
               for path in sorted(folder.rglob("*")) if path.is_file()]
    assert any("patient_key" in text for text in written)  # the catalog keeps the salted key
    printed = capsys.readouterr()
    text = "\n".join(outputs + served + written + [caplog.text, printed.out, printed.err] + [str(w.message) for w in caught])
    assert_absent(values, text)
