"""Exports built in memory: NIfTI volumes with a correct affine."""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

import numpy as np

from core.geometry import GeometryError

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["LPS_TO_RAS", "nifti_affine", "nifti_bytes", "on_one_grid"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def nifti_affine(volume: Volume) -> np.ndarray:
    """The NIfTI (RAS+) affine of a volume whose NIfTI array is ``voxels.transpose(2, 1, 0)``.

    NIfTI index ``(i, j, k)`` is (column, row, slice); DICOM positions are LPS, so x and
    y change sign. Sheared (gantry tilt) stacks keep their shear in the matrix.

    Returns
    -------
    (4, 4) ndarray of float64
    """
    return LPS_TO_RAS @ volume.affine


def on_one_grid(volume: Volume, *, tolerance_mm: float = 0.05) -> bool:
    """Whether every slice sits where one affine puts it (even steps; a shear is fine).

    An affine holds one step from slice to slice: a stack with gaps or uneven spacing has
    none that fits all its slices, so exports that carry geometry need its corrected grid.
    """
    positions = np.asarray(volume.positions, dtype=float)
    if len(positions) < 3:
        return True
    k = np.arange(len(positions))[:, None]
    predicted = positions[0] + k * volume.slice_step
    tolerance = max(tolerance_mm, 0.01 * float(np.linalg.norm(volume.slice_step)))
    return bool(np.max(np.linalg.norm(positions - predicted, axis=1)) <= tolerance)


def nifti_bytes(volume: Volume, *, compress: bool = True) -> bytes:
    """The volume as a NIfTI-1 file (``.nii.gz`` when ``compress``), built in memory.

    Units are mm; the sform and qform both hold :func:`nifti_affine` (the qform cannot
    represent a shear, so for tilted stacks only the sform is exact and sform_code wins).

    Raises
    ------
    GeometryError
        When the slices are not evenly spaced (:func:`on_one_grid`): no affine places them
        all, so export ``volume.corrected()`` instead.
    """
    import nibabel as nib

    if not on_one_grid(volume):
        raise GeometryError("The slices are not evenly spaced, so no NIfTI affine places them all where they are: "
                            "export the series on its corrected (regular) grid instead.")

    data = np.asarray(volume.voxels).transpose(2, 1, 0)
    affine = nifti_affine(volume)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    if volume.units == "HU":
        img.header["descrip"] = b"Hounsfield units"
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=1) if compress else raw
