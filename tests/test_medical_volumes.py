"""NIfTI volumes (nibabel's own test files), representative slices and series descriptors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel", reason="the medical extra is not installed (pip install 'cbir[medical]')")

from nibabel.testing import data_path  # noqa: E402

from cbir.io.nifti import NiftiError, is_nifti_path, nifti_volume_count, read_nifti  # noqa: E402
from cbir.io.volumes import Volume, representative_slices, to_uint8  # noqa: E402
from cbir.medical.series import describe_volume, series_descriptor  # noqa: E402

EXAMPLE_4D = Path(data_path) / "example4d.nii.gz"


def test_4d_file_is_read_volume_by_volume():
    image = nib.load(EXAMPLE_4D)
    assert len(image.shape) == 4
    assert nifti_volume_count(EXAMPLE_4D) == image.shape[3]
    first, last = read_nifti(EXAMPLE_4D, axis=2, volume=0), read_nifti(EXAMPLE_4D, axis=2, volume=image.shape[3] - 1)
    canonical = nib.as_closest_canonical(image)
    assert first.slices.shape == (canonical.shape[2], canonical.shape[1], canonical.shape[0])
    assert first.metadata["volumes"] == image.shape[3] and last.metadata["volume"] == image.shape[3] - 1
    assert not np.allclose(first.slices, last.slices)
    assert first.slices.min() >= 0.0 and first.slices.max() <= 1.0
    with pytest.raises(ValueError, match="holds 2"):
        read_nifti(EXAMPLE_4D, volume=2)


def test_axial_slice_is_the_canonical_data_turned_upright():
    volume = read_nifti(EXAMPLE_4D, axis=2, volume=0)
    data = np.asarray(nib.as_closest_canonical(nib.load(EXAMPLE_4D)).dataobj[..., 0], dtype=np.float64)
    low, high = np.percentile(data, (0.5, 99.5))
    expected = np.clip((data[:, :, 10] - low) / (high - low), 0, 1)
    np.testing.assert_allclose(volume.slices[10], np.rot90(expected), atol=1e-5)
    assert volume.metadata["plane"] == "axial" and volume.metadata["orientation"] == "RAS"


def test_orientation_does_not_depend_on_how_the_file_stores_the_axes(tmp_path):
    """The same anatomy stored with flipped and swapped axes gives the same slices."""
    image = nib.load(Path(data_path) / "anatomical.nii")
    data = np.asarray(image.dataobj, dtype=np.float32)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = data.shape[0] - 1
    stored = nib.Nifti1Image(data[::-1].copy(), image.affine @ flip)
    path = tmp_path / "flipped.nii.gz"
    nib.save(stored, path)
    for axis in (0, 1, 2):
        np.testing.assert_allclose(read_nifti(path, axis=axis).slices, read_nifti(Path(data_path) / "anatomical.nii", axis=axis).slices, atol=1e-6)
    assert read_nifti(path, axis=0).metadata["plane"] == "sagittal"


def test_bad_nifti_inputs(tmp_path):
    text = tmp_path / "notes.nii"
    text.write_text("not a volume")
    with pytest.raises(NiftiError):
        read_nifti(text)
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(gzip.compress(gzip.decompress(EXAMPLE_4D.read_bytes())[:20000]))
    with pytest.raises(NiftiError, match="truncated or corrupt"):
        read_nifti(truncated)
    with pytest.raises(NiftiError, match="not found"):
        read_nifti(tmp_path / "absent.nii")
    with pytest.raises(ValueError, match="axis"):
        read_nifti(EXAMPLE_4D, axis=3)
    assert is_nifti_path("a/B.NII.GZ") and not is_nifti_path("a/b.dcm")


def test_representative_slices():
    assert representative_slices(100, 5).tolist() == [10, 30, 50, 69, 89]
    assert representative_slices(100, 3, "central").tolist() == [49, 50, 51]
    assert representative_slices(4, 10).tolist() == [0, 1, 2, 3]
    assert representative_slices(0, 3).tolist() == []
    with pytest.raises(ValueError, match="even"):
        representative_slices(10, 3, "random")


def test_series_descriptor_pools_normalised_slices():
    vectors = np.array([[3.0, 0.0], [0.0, 0.5]])
    np.testing.assert_allclose(series_descriptor(vectors), [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    with pytest.raises(ValueError):
        series_descriptor(np.empty((0, 4)))


def test_describe_volume_with_the_encoder(encoder):
    volume = read_nifti(EXAMPLE_4D, axis=2, volume=0)
    indices, vectors, pooled = describe_volume(encoder, volume, slices=3)
    assert len(indices) == 3 and vectors.shape == (3, encoder.dim)
    np.testing.assert_allclose(pooled, series_descriptor(vectors), atol=1e-6)
    assert abs(float(np.linalg.norm(pooled)) - 1.0) < 1e-5


def test_volume_images_are_8_bit_rgb():
    volume = Volume(np.linspace(0, 1, 2 * 4 * 4).reshape(2, 4, 4))
    picture = volume.image(1)
    assert picture.mode == "RGB" and picture.size == (4, 4)
    assert to_uint8(np.array([0.0, 0.5, 1.0, 2.0])).tolist() == [0, 128, 255, 255]
