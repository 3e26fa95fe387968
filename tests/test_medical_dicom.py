"""DICOM reading on the files pydicom ships: pixel values after the LUTs, colour, frames, compression,
series order and the errors a folder of scans produces."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.medical_support import SALT, pydicom, shipped, shipped_cr, write_slice

from cbir.io.dicom import DicomError, plugin_for, read_dicom, read_series, scan_dicom  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_voi_lut  # noqa: E402


def pydicom_display(path, kind: str) -> np.ndarray:
    """What pydicom's own functions give, mapped onto [0, 1] over the range stated by the standard."""
    dataset = pydicom.dcmread(path)
    values = apply_modality_lut(dataset.pixel_array, dataset).astype(np.float64)
    if kind == "window":
        out = apply_voi_lut(values, dataset)
        bits = dataset.BitsStored
        low, high = (0, 2**bits - 1) if dataset.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if "RescaleSlope" in dataset:
            low, high = low * dataset.RescaleSlope + dataset.RescaleIntercept, high * dataset.RescaleSlope + dataset.RescaleIntercept
        return np.clip((out - low) / (high - low), 0, 1)
    return (values - values.min()) / (values.max() - values.min())


def test_mr_window_matches_pydicom():
    path = shipped("MR_small.dcm")
    assert "WindowCenter" in pydicom.dcmread(path)
    image = read_dicom(path, SALT)
    assert image.frames.shape == (1, 64, 64)
    np.testing.assert_allclose(image.frames[0], pydicom_display(path, "window"), atol=1e-6)
    assert 0.0 <= image.frames.min() and image.frames.max() <= 1.0


def test_ct_rescale_without_window_is_stretched_after_modality_lut():
    path = shipped("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    assert "RescaleSlope" in dataset and "WindowCenter" not in dataset
    image = read_dicom(path, SALT)
    np.testing.assert_allclose(image.frames[0], pydicom_display(path, "stretch"), atol=1e-6)
    assert image.metadata["modality"] == "CT"
    assert image.metadata["pixel_spacing"] == pytest.approx([0.661468, 0.661468])


def test_ct_window_with_rescale_matches_pydicom(tmp_path):
    """A narrow window on rescaled CT: pydicom's windowing, mapped over its output range."""
    source = pydicom.dcmread(shipped("CT_small.dcm"))
    source.WindowCenter, source.WindowWidth = 40, 400
    path = tmp_path / "windowed.dcm"
    source.save_as(path)
    image = read_dicom(path, SALT)
    expected = pydicom_display(path, "window")
    np.testing.assert_allclose(image.frames[0], expected, atol=1e-6)
    assert (image.frames[0] == 0).any() and (image.frames[0] == 1).any()


def test_voi_lut_sequence_is_preferred_and_matches_pydicom(tmp_path):
    source = pydicom.dcmread(shipped("MR_small.dcm"))
    item = pydicom.Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.add_new("LUTData", "US", [int(v) for v in np.linspace(0, 4000, 256)])
    source.VOILUTSequence = [item]
    path = tmp_path / "voi_lut.dcm"
    source.save_as(path)
    dataset = pydicom.dcmread(path)
    lut = apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset).astype(np.float64)
    np.testing.assert_allclose(read_dicom(path, SALT).frames[0], lut / 4000.0, atol=1e-6)


def test_monochrome1_is_inverted():
    path = shipped_cr()[0]
    dataset = pydicom.dcmread(path)
    assert dataset.PhotometricInterpretation == "MONOCHROME1" and "WindowCenter" in dataset
    image = read_dicom(path, SALT)
    np.testing.assert_allclose(image.frames[0], 1.0 - pydicom_display(path, "window"), atol=1e-6)
    assert image.metadata["photometric"] == "MONOCHROME1"


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_lossless_compressed_files_equal_the_uncompressed_one(name):
    try:
        compressed = read_dicom(shipped(name), SALT)
    except DicomError as error:
        pytest.skip(f"decoder plugin missing: {error}")
    np.testing.assert_allclose(compressed.frames, read_dicom(shipped("MR_small.dcm"), SALT).frames, atol=1e-6)


def test_multi_frame_gives_one_image_per_frame():
    dose = read_dicom(shipped("rtdose.dcm"), SALT)
    assert dose.frames.shape == (15, 10, 10)
    dataset = pydicom.dcmread(shipped("rtdose.dcm"))
    expected = apply_modality_lut(dataset.pixel_array, dataset).astype(np.float64)
    for frame, values in zip(dose.frames, expected):
        np.testing.assert_allclose(frame, (values - values.min()) / max(values.max() - values.min(), 1e-12), atol=1e-6)
    colour = read_dicom(shipped("SC_rgb_rle_2frame.dcm"), SALT)
    assert colour.frames.shape == (2, 100, 100, 3)
    np.testing.assert_allclose(colour.frames * 255, pydicom.dcmread(shipped("SC_rgb_rle_2frame.dcm")).pixel_array, atol=1e-3)


def test_palette_colour_becomes_rgb():
    image = read_dicom(shipped("examples_palette.dcm"), SALT)
    assert image.frames.shape == (1, 350, 800, 3)
    assert image.frames.std(axis=-1).max() > 0.05


def test_missing_plugin_is_named(monkeypatch):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})
    with pytest.raises(DicomError, match="pip install pylibjpeg pylibjpeg-openjpeg"):
        read_dicom(shipped("MR_small_jp2klossless.dcm"), SALT)
    assert plugin_for("JPEG-LS Lossless Image Compression") == "pylibjpeg pylibjpeg-libjpeg"


def test_compression_without_any_decoder_says_how_to_convert(tmp_path):
    dataset = pydicom.dcmread(shipped("MR_small_RLE.dcm"))
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    path = tmp_path / "video.dcm"
    dataset.save_as(path)
    with pytest.raises(DicomError, match="uncompressed transfer syntax"):
        read_dicom(path, SALT)


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(DicomError, match="truncated or corrupt|could not be decoded"):
        read_dicom(shipped("MR_truncated.dcm"), SALT)
    cut = tmp_path / "cut.dcm"
    whole = shipped("CT_small.dcm").read_bytes()
    for length in (2000, len(whole) - 3000):
        cut.write_bytes(whole[:length])
        with pytest.raises(DicomError, match="truncated"):
            read_dicom(cut, SALT)
    with pytest.raises(DicomError, match="no pixel data"):
        read_dicom(shipped("rtplan.dcm"), SALT)
    text = tmp_path / "notes.txt"
    text.write_text("not a scan\n" * 40)
    with pytest.raises(DicomError, match="not a DICOM file"):
        read_dicom(text, SALT)
    with pytest.raises(DicomError, match="file not found"):
        read_dicom(tmp_path / "absent.dcm", SALT)


def test_series_are_grouped_and_ordered_by_position(tmp_path):
    series_uid = pydicom.uid.generate_uid()
    heights = [float(z) for z in range(-40, 40, 8)]
    shuffled = heights[:]
    random.Random(3).shuffle(shuffled)
    for number, z in enumerate(shuffled):
        # instance numbers run against the positions: the position must win
        write_slice(tmp_path / f"slice_{number:02d}.dcm", series_uid, z, 100 - number, value=int(z + 1024 + 100))
    other, folder = pydicom.uid.generate_uid(), tmp_path / "other"
    folder.mkdir()
    for number in range(3):
        write_slice(folder / f"{number}.dcm", other, None, 3 - number, value=10 * number + 1024)
    (tmp_path / "readme.txt").write_text("a note beside the scans")
    scan = scan_dicom(tmp_path.rglob("*"), SALT)
    assert sorted(len(s.files) for s in scan.series) == [3, len(heights)]
    assert [path.name for path, _ in scan.skipped] == ["readme.txt"]
    main = next(s for s in scan.series if len(s.files) == len(heights))
    assert main.order == "position"
    volume, skipped = read_series(main, SALT)
    assert skipped == [] and volume.slices.shape == (len(heights), 8, 8)
    raw = [pydicom.dcmread(path) for path in main.files]
    assert [float(d.ImagePositionPatient[2]) for d in raw] == sorted(heights)
    by_instance = next(s for s in scan.series if len(s.files) == 3)
    assert by_instance.order == "instance number"
    assert [int(pydicom.dcmread(p).InstanceNumber) for p in by_instance.files] == [1, 2, 3]


def test_mixed_sizes_are_reported_and_the_series_kept(tmp_path):
    series_uid = pydicom.uid.generate_uid()
    for number in range(4):
        write_slice(tmp_path / f"{number}.dcm", series_uid, float(number), number + 1, value=1100)
    write_slice(tmp_path / "odd.dcm", series_uid, 9.0, 9, value=1100, size=(16, 8))
    scan = scan_dicom(tmp_path.iterdir(), SALT)
    assert len(scan.series) == 1 and len(scan.series[0].files) == 4
    assert scan.skipped[0][0].name == "odd.dcm"
    assert "16x8" in scan.skipped[0][1] and "8x8" in scan.skipped[0][1]


def test_shipped_radial_series_falls_back_to_instance_numbers():
    """pydicom's MR700 series turns its slice orientation from image to image: positions along one normal
    mean nothing there, so the instance numbers decide."""
    root = shipped("CT_small.dcm").parent / "dicomdirtests" / "98892003" / "MR700"
    scan = scan_dicom(root.iterdir(), SALT)
    assert len(scan.series) == 1 and scan.series[0].order == "instance number"
    assert [int(pydicom.dcmread(p).InstanceNumber) for p in scan.series[0].files] == list(range(1, 8))
