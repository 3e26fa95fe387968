"""Medical scans in a collection: a DICOM series, a NIfTI volume and a MedMNIST split are each one source
with slice items and (for series and volumes) one pooled series item; other files are skipped with a reason."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.medical_support import SALT, pydicom, shipped, write_medmnist, write_series

nib = pytest.importorskip("nibabel", reason="the medical extra is not installed (pip install 'cbir[medical]')")

from nibabel.testing import data_path  # noqa: E402

from cbir.collection.collection import Collection, CollectionError  # noqa: E402
from cbir.encoders.encoder import EncoderSpec, shared_encoder  # noqa: E402
from cbir.io.deidentify import KEPT_ATTRIBUTES  # noqa: E402
from cbir.pipelines.medical import MEDICAL_SPACE, SERIES_KIND, SLICE_KIND, MedicalPipeline, series_descriptor  # noqa: E402

SMALL = EncoderSpec(image_size=64)
KEPT = set(KEPT_ATTRIBUTES.values()) | {"patient_key", "series_key", "study_key", "format", "slices", "slice", "member",
                                        "frame", "pooled_slices", "unreadable_slices"}


def scan_folder(root: Path) -> Path:
    """A written 3-slice CT series, pydicom's CT and RT plan, nibabel's 4-D volume, a MedMNIST file and a text note."""
    folder = root / "scans"
    write_series(folder / "thorax", 3)
    shutil.copy(shipped("CT_small.dcm"), folder / "CT_small.dcm")
    shutil.copy(shipped("rtplan.dcm"), folder / "rtplan.dcm")
    shutil.copy(Path(data_path) / "example4d.nii.gz", folder / "volume.nii.gz")
    write_medmnist(folder / "tiny.npz")
    (folder / "notes.txt").write_text("not a scan")
    return folder


def new_collection(path: Path, salt: str = SALT) -> Collection:
    return Collection.create(path, pipeline=MedicalPipeline(shared_encoder(SMALL), salt=salt, slices=2))


def test_series_volumes_and_splits_become_sources_with_slice_and_series_items(tmp_path):
    folder = scan_folder(tmp_path)
    with new_collection(tmp_path / "c") as store:
        report = store.add([folder], workers=0)
        assert report.added == 5  # the thorax series, CT_small, the volume, the train and test splits
        assert dict(report.skipped) == {
            str(folder / "notes.txt"): "not a medical scan (DICOM, NIfTI .nii/.nii.gz or MedMNIST .npz)",
            str(folder / "rtplan.dcm"): "no pixel data: not an image (a report, structure set or other non-image object)",
        }
        sources = {uri: state for uri, state in store.catalog.sources("medical").items() if state.indexed}
        thorax = next(uri for uri in sources if uri.startswith(str(folder / "thorax") + "#series-"))
        assert [Path(member) for member, _, _ in sources[thorax].members] == sorted((folder / "thorax").iterdir())
        assert {f"{folder / 'tiny.npz'}#train", f"{folder / 'tiny.npz'}#test", str(folder / "volume.nii.gz")} <= set(sources)

        ids, vectors = store.vectors(MEDICAL_SPACE)
        items = store.catalog.get_items(ids, with_vectors=True)
        by_uri: dict[str, list] = {}
        for item in items.values():
            by_uri.setdefault(item.uri, []).append(item)
            assert set(item.metadata) - {"split", "index", "label", "orientation", "plane", "shape", "voxel_size", "volume",
                                          "volumes", "axis"} <= KEPT
        series = by_uri[thorax]
        assert sorted(item.kind for item in series) == [SERIES_KIND, SLICE_KIND, SLICE_KIND]
        slices = [item for item in series if item.kind == SLICE_KIND]
        assert [item.metadata["slice"] for item in slices] == [0, 2]  # evenly spread over the 3 slices
        pooled = next(item for item in series if item.kind == SERIES_KIND)
        np.testing.assert_allclose(pooled.vector, series_descriptor(np.stack([item.vector for item in slices])), atol=1e-6)
        assert pooled.metadata["modality"] == "CT" and pooled.metadata["pixel_spacing"] == [0.7, 0.7]
        assert pooled.metadata["series_description"] == "Thorax 1mm" and pooled.metadata["body_part"] == "CHEST"
        volume = by_uri[str(folder / "volume.nii.gz")]
        assert sorted(item.kind for item in volume) == [SERIES_KIND, SLICE_KIND, SLICE_KIND]
        train = by_uri[f"{folder / 'tiny.npz'}#train"]
        assert len(train) == 3 and {item.kind for item in train} == {SLICE_KIND}
        assert [item.labels for item in sorted(train, key=lambda i: i.metadata["index"])] == [["0"], ["1"], ["0"]]
        info = json.dumps(store.info())
        assert SALT not in info and "salt" not in info  # the salt stays in the manifest, never shown
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["spaces"]["medical"]["encoder"]["salt"] == SALT


def test_reindex_sync_and_a_changed_member(tmp_path):
    folder = scan_folder(tmp_path)
    with new_collection(tmp_path / "c") as store:
        store.add([folder], workers=0)
    with Collection.open(tmp_path / "c") as store:  # the pipeline comes back from the space's record, salt included
        again = store.add([folder], workers=0)
        assert (again.added, again.updated, again.unchanged, again.previously_skipped) == (0, 0, 5, 2)
        member = folder / "thorax" / "slice1.dcm"
        os.utime(member, (1, 1))  # touched: read again, same content, so not encoded again
        touched = store.add([folder], workers=0)
        assert (touched.updated, touched.unchanged) == (0, 5)
        write_series(folder / "thorax2", 4, value=300)
        (folder / "volume.nii.gz").unlink()
        before = store.catalog.count_items(MEDICAL_SPACE)
        synced = store.add([folder], sync=True, workers=0)
        assert (synced.added, synced.removed) == (1, 1)
        assert store.catalog.count_items(MEDICAL_SPACE) == before - 3 + 3
        assert np.array_equal(np.sort(store.index(MEDICAL_SPACE).ids()), store.catalog.item_ids(MEDICAL_SPACE))


def test_interrupted_indexing_resumes_without_duplicates(tmp_path):
    folder = tmp_path / "scans"
    for number in range(3):
        write_series(folder / f"series{number}", 2, value=500 + 200 * number)
    pipeline = MedicalPipeline(shared_encoder(SMALL), salt=SALT, slices=1)
    run = pipeline.run

    def stops_after_one_batch(*args, **kwargs):
        batches = run(*args, **kwargs)
        yield next(batches)
        raise KeyboardInterrupt

    pipeline.run = stops_after_one_batch
    with Collection.create(tmp_path / "c", pipeline=pipeline) as store:
        with pytest.raises(KeyboardInterrupt):
            store.add([folder], batch_size=1, workers=0)
        assert store.catalog.count_items(MEDICAL_SPACE) == 2  # the first series' slice and series items, all or nothing
        pipeline.run = run
        report = store.add([folder], batch_size=1, workers=0)
        assert (report.added, report.unchanged) == (2, 1)
        uris = [item.uri for item in store.catalog.get_items(store.catalog.item_ids(MEDICAL_SPACE)).values()]
        assert len(uris) == 6 and len(set(uris)) == 3


def test_inconsistent_series_and_broken_files_are_reported(tmp_path):
    folder = tmp_path / "scans"
    files = write_series(folder, 3)
    odd = write_series(tmp_path / "other", 1, size=(16, 16))[0]
    dataset = pydicom.dcmread(odd)
    dataset.SeriesInstanceUID = pydicom.dcmread(files[0]).SeriesInstanceUID
    dataset.save_as(folder / "odd.dcm")
    header_only = folder / "cut.dcm"
    header_only.write_bytes(files[0].read_bytes()[:300])  # cut before its image attributes
    truncated = write_series(folder / "lone", 1)[0]
    truncated.write_bytes(truncated.read_bytes()[:-20])  # cut inside its pixel data
    (folder / "photo.jpg").write_bytes(b"\xff\xd8 not really")
    with new_collection(tmp_path / "c") as store:
        report = store.add([folder], workers=0)
    reasons = dict(report.skipped)
    assert report.added == 1
    assert reasons[str(folder / "odd.dcm")] == "slice of 16x16 pixels in a series of 8x8 slices"
    assert reasons[str(header_only)].startswith("no pixel data")
    lone = next(uri for uri in reasons if uri.startswith(str(folder / "lone") + "#series-"))
    assert "truncated or corrupt" in reasons[lone]
    assert reasons[str(folder / "photo.jpg")].startswith("not a medical scan")


def test_a_changed_salt_is_refused_without_showing_either(tmp_path):
    with new_collection(tmp_path / "c"):
        pass
    manifest = tmp_path / "c" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["spaces"]["medical"]["encoder"]["salt"] = "another-salt-of-a-copy"
    manifest.write_text(json.dumps(data))
    with pytest.raises(CollectionError, match="medical.salt: the manifest's differs") as refused:
        Collection.open(tmp_path / "c")
    assert SALT not in str(refused.value) and "another-salt" not in str(refused.value)
