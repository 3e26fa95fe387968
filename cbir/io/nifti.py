"""NIfTI volumes (nibabel) as stacks of 2-D slices ready for an encoder.

The volume is first brought to the closest canonical orientation (RAS+:
x to the patient's right, y anterior, z superior), so that slices along an
axis mean the same thing in every file: axis 2 gives axial slices, 1
coronal, 0 sagittal. Each slice is shown with anterior (or superior) up and
the patient's right on the right. Intensities are stretched over the 0.5-99.5
percentiles of the whole volume, the same for every slice. A 4-D file holds
several volumes (time points, diffusion directions): one is read at a time.
Only geometry leaves the reader: the header's free-text fields do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cbir.io.volumes import ScanReadError, Volume, stretch

AXES = {0: "sagittal", 1: "coronal", 2: "axial"}
PERCENTILES = (0.5, 99.5)
NIFTI_SUFFIXES = (".nii", ".nii.gz")


class NiftiError(ScanReadError):
    """A NIfTI file that cannot be used; the message says why."""


def is_nifti_path(path: str | Path) -> bool:
    """Whether ``path`` is named like a NIfTI file."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_volume_count(path: str | Path) -> int:
    """How many 3-D volumes a NIfTI file holds (1 for 2-D and 3-D files)."""
    shape = _load(path).shape
    return int(np.prod(shape[3:])) if len(shape) > 3 else 1


def read_nifti(path: str | Path, axis: int = 2, volume: int = 0) -> Volume:
    """Volume ``volume`` of a NIfTI file, in canonical orientation, as slices along ``axis``."""
    import nibabel as nib

    if axis not in AXES:
        raise ValueError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), not {axis}")
    image = _load(path)
    if len(image.shape) > 4:
        raise NiftiError(f"{len(image.shape)}-D image: only 2-D, 3-D and 4-D NIfTI files are read")
    volumes = image.shape[3] if len(image.shape) == 4 else 1
    if not 0 <= volume < volumes:
        raise ValueError(f"volume {volume} does not exist: the file holds {volumes}")
    try:
        canonical = nib.as_closest_canonical(image)
        data = canonical.dataobj[..., volume] if len(image.shape) == 4 else canonical.dataobj[...]
        data = np.asarray(data, dtype=np.float32)
    except (EOFError, OSError, ValueError) as error:
        raise NiftiError(f"truncated or corrupt NIfTI data ({type(error).__name__})") from None
    if data.ndim == 2:
        data = data[:, :, None]
    finite = data[np.isfinite(data)]
    low, high = (np.percentile(finite, PERCENTILES) if finite.size else (0.0, 1.0))
    scaled = stretch(data, float(low), float(high) if high > low else float(low) + 1.0)
    slices = np.stack([np.rot90(np.take(scaled, index, axis=axis)) for index in range(scaled.shape[axis])])
    zooms = [float(z) for z in canonical.header.get_zooms()[:3]]
    in_plane = [zooms[i] for i in range(3) if i != axis]
    metadata = {
        "format": "nifti",
        "orientation": "RAS",
        "plane": AXES[axis],
        "shape": [int(n) for n in canonical.shape[:3]],
        "voxel_size": zooms,
        "pixel_spacing": in_plane[::-1],
        "slice_thickness": zooms[axis] if len(zooms) > axis else None,
        "volume": volume,
        "volumes": int(volumes),
        "slices": int(len(slices)),
    }
    return Volume(slices, metadata)


def _load(path: str | Path):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise NiftiError("file not found")
    try:
        image = nib.load(path)
    except ImageFileError:
        raise NiftiError("not a NIfTI file") from None
    except (EOFError, OSError, ValueError) as error:
        raise NiftiError(f"truncated or corrupt NIfTI file ({type(error).__name__})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise NiftiError(f"a {type(image).__name__}, not a NIfTI image")
    return image
