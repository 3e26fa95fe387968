"""`cbir index --medical` and `cbir medical report` on written series, the files pydicom and nibabel ship,
a MedMNIST file and a picture: the most and least similar cases of the query's modality, with a vote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.medical_support import shipped, write_medmnist, write_series

nib = pytest.importorskip("nibabel", reason="the medical extra is not installed (pip install 'cbir[medical]')")

from nibabel.testing import data_path  # noqa: E402

from cbir.cli import app  # noqa: E402
from cbir.collection.collection import Collection  # noqa: E402

PATIENT_A = {"PatientID": "A-1"}
PATIENT_B = {"PatientID": "B-2"}


def run_cli(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    scans = root / "scans"
    write_series(scans / "a1", 3, PATIENT_A, value=1100)
    write_series(scans / "a2", 3, PATIENT_A, value=1300)
    write_series(scans / "b", 3, PATIENT_B, value=900)
    shutil.copy(shipped("CT_small.dcm"), scans / "CT_small.dcm")
    shutil.copy(shipped("MR_small.dcm"), scans / "MR_small.dcm")
    shutil.copy(Path(data_path) / "example4d.nii.gz", scans / "volume.nii.gz")
    shutil.copy(Path(data_path) / "example4d.nii.gz", scans / "copy.nii.gz")
    write_medmnist(scans / "tiny.npz", per_split=4)
    (scans / "notes.txt").write_text("not a scan")
    collection = root / "collection"
    done = run_cli("index", scans, "--medical", "-c", collection, "--size", "64", "--workers", "0", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["added"] == 9 and [entry["uri"] for entry in report["skipped"]] == [str(scans / "notes.txt")]
    return scans, collection


def report(archive, tmp_path, query, *options):
    scans, collection = archive
    done = run_cli("medical", "report", query, "-c", collection, "--out", tmp_path / "out", "--json", *options)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout[done.stdout.index("{"):])


def items(archive, hits) -> list:
    with Collection.open(archive[1]) as store:
        found = store.catalog.get_items([hit["item_id"] for hit in hits])
    return [found[hit["item_id"]] for hit in hits]


def test_series_folder_query_finds_series_of_its_modality_and_writes_the_report(archive, tmp_path):
    scans, _ = archive
    result = report(archive, tmp_path, scans / "a1", "-k", "2")
    assert result["query"]["kind"] == "series" and result["query"]["modality"] == "CT"
    assert result["candidates"] == 3  # a2, b and CT_small: its own series left out, MR and volumes are other modalities
    found = items(archive, result["most_similar"] + result["least_similar"])
    assert {item.kind for item in found} == {"series"} and {item.metadata["modality"] for item in found} == {"CT"}
    assert not any(item.uri.startswith(str(scans / "a1")) for item in found)
    scores = [hit["score"] for hit in result["most_similar"] + result["least_similar"]]
    assert scores == sorted(scores, reverse=True) and len(result["most_similar"]) == 2 and len(result["least_similar"]) == 1
    out = tmp_path / "out"
    assert Image.open(out / "case.png").size[0] > 400
    assert json.loads((out / "case.json").read_text())["most_similar"] == result["most_similar"]
    assert "Most and least similar cases: a1" in (out / "index.html").read_text()
    assert json.loads((out / "report.json").read_text())["queries"][0]["query"]["name"] == "a1"


def test_item_query_can_leave_out_the_patients_own_series(archive, tmp_path):
    scans, collection = archive
    with Collection.open(collection) as store:
        a1 = next(item.id for item in store.catalog.get_items(store.catalog.item_ids("medical")).values()
                  if item.kind == "series" and item.uri.startswith(str(scans / "a1")))
    named = {Path(item.uri.split("#")[0]).name for item in items(archive, report(archive, tmp_path, a1, "-k", "3")["most_similar"])}
    assert named == {"a2", "b", "scans"}
    kept = report(archive, tmp_path, a1, "-k", "3", "--exclude-same-patient")
    assert {Path(item.uri.split("#")[0]).name for item in items(archive, kept["most_similar"])} == {"b", "scans"}


def test_volume_query_finds_its_copy_first(archive, tmp_path):
    scans, _ = archive
    result = report(archive, tmp_path, scans / "volume.nii.gz", "-k", "1")
    assert result["candidates"] == 1 and result["query"]["kind"] == "series"
    assert items(archive, result["most_similar"])[0].uri == str(scans / "copy.nii.gz")
    assert result["most_similar"][0]["score"] > 0.999


def test_picture_query_is_compared_with_labelled_images_and_votes(archive, tmp_path):
    scans, _ = archive
    picture = tmp_path / "query.png"
    Image.fromarray(np.load(scans / "tiny.npz")["test_images"][1]).save(picture)
    result = report(archive, tmp_path, picture, "-k", "3")
    assert result["query"]["kind"] == "slice" and result["candidates"] == 10  # 8 MedMNIST images, 2 volumes: no modality
    top = result["most_similar"][0]
    assert top["name"].endswith("tiny.npz#test[1]") and top["score"] > 0.999 and top["label"] == "1"
    assert sum(result["vote"].values()) == 3 and result["vote_winners"] == ["1"]
    modality = report(archive, tmp_path, picture, "-k", "3", "--modality", "MR")
    assert modality["candidates"] == 1 and modality["vote"] == {}  # MR_small, which has no label


def test_bad_queries_get_a_clear_error(archive, tmp_path):
    scans, collection = archive
    done = run_cli("medical", "report", scans / "notes.txt", "-c", collection, "--out", tmp_path / "out")
    assert done.exit_code == 2 and "not a DICOM file or series folder" in done.output
    done = run_cli("medical", "report", "999999", "-c", collection, "--out", tmp_path / "out")
    assert done.exit_code == 2 and "no medical item with id 999999" in done.output
    done = run_cli("medical", "report", scans / "b", "-c", collection, "--exclude-same-patient", "--out", tmp_path / "out")
    assert done.exit_code == 0, done.output
    done = run_cli("medical", "report", scans / "CT_small.dcm", "-c", collection, "--exclude-same-patient", "--out", tmp_path / "out")
    assert done.exit_code == 0, done.output


def test_server_view_refuses_bad_requests(archive):
    from fastapi.testclient import TestClient

    from cbir.server.app import create_app
    from cbir.server.settings import ServerSettings

    scans, collection = archive
    with TestClient(create_app(collection, settings=ServerSettings(max_pixels=32))) as client:
        dicom = (scans / "a1" / "slice0.dcm").read_bytes()  # 8 x 8 = 64 pixels, over the limit of 32
        too_big = client.post("/medical/similar", files={"image": ("a.dcm", dicom)})
        assert too_big.status_code == 413 and "64 pixels" in too_big.json()["detail"]
        both = client.post("/medical/similar", files={"image": ("a.dcm", dicom)}, data={"item_id": "1"})
        assert both.status_code == 422 and "not both" in both.json()["detail"]
        text = client.post("/medical/similar", files={"image": ("notes.txt", b"not a scan")})
        assert text.status_code == 415
        assert client.post("/medical/similar", data={"item_id": "999999"}).status_code == 404
        assert client.get("/medical/items/999999/picture").status_code == 404
        with Collection.open(collection) as store:
            image = next(item.id for item in store.catalog.get_items(store.catalog.item_ids("medical")).values()
                         if item.metadata["format"] == "medmnist")
        found = client.post("/medical/similar", data={"item_id": str(image), "k": "2"})
        assert found.status_code == 200 and len(found.json()["most_similar"]) == 2
        assert all(client.get(hit["picture"]).headers["content-type"] == "image/png" for hit in found.json()["most_similar"])
