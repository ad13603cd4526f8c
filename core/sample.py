"""The built-in sample: a deterministic synthetic chest CT with its exact label map, as a Volume and as DICOM."""

from __future__ import annotations

import functools

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from core import hu
from core.dicom_writer import dicom_bytes, set_int16_pixels, set_padding_value
from core.phantom_chest import LABELS, LUNG_LABELS, NOISE_SD, SHAPE, SPACING, TISSUE_HU, build_chest
from core.volume import Volume

__all__ = ["LABELS", "LUNG_LABELS", "NOISE_SD", "TISSUE_HU", "sample_ct", "sample_ct_files", "sample_labels"]

# The anatomy, its labels and HU, and the image formation live in core.phantom_chest.
SERIES_UID = generate_uid(entropy_srcs=["hounsfield sample chest ct series"])
STUDY_UID = generate_uid(entropy_srcs=["hounsfield sample chest ct study"])
FRAME_UID = generate_uid(entropy_srcs=["hounsfield sample chest ct frame"])


@functools.lru_cache(maxsize=1)
def _build() -> tuple[np.ndarray, np.ndarray]:
    """(raw HU with padding at -2000, labels), both (120, 256, 256), read-only."""
    raw, lab = build_chest()
    raw.flags.writeable = False
    lab.flags.writeable = False
    return raw, lab


def sample_labels() -> np.ndarray:
    """The tissue label map the sample was drawn from.

    Returns
    -------
    labels : (120, 256, 256) uint8 ndarray, read-only
        Values from :data:`LABELS`, aligned voxel for voxel with :func:`sample_ct`.
    """
    return _build()[1]


@functools.lru_cache(maxsize=1)
def sample_ct() -> Volume:
    """The built-in sample: a synthetic axial chest CT, 120 x 256 x 256 voxels.

    Deterministic (seeded), int16 HU, padding outside the scan circle already set to
    air (-1024) and recorded in ``padding``, as :func:`core.load_series` does for a
    scanner's series. Cached: every call returns the same read-only object.
    """
    raw, lab = _build()
    headers = tuple(_sample_header(k) for k in range(SHAPE[0]))  # a fictitious patient, as a scanner writes
    outside = lab == LABELS["outside scan circle"]
    voxels = raw.copy()
    voxels[outside] = hu.AIR
    nz, ny, nx = SHAPE
    dz, dy, dx = SPACING
    x0, y0 = -(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy
    positions = np.stack([np.full(nz, x0), np.full(nz, y0), np.arange(nz) * dz - 150.0], axis=1)
    return Volume(
        voxels=voxels,
        spacing=SPACING,
        series_uid=SERIES_UID,
        modality="CT",
        warnings=[],
        positions=positions,
        row_direction=np.array([1.0, 0.0, 0.0]),
        col_direction=np.array([0.0, 1.0, 0.0]),
        description="Synthetic chest CT (built-in sample)",
        window=(40.0, 400.0),
        summary={
            "Modality": "CT",
            "Manufacturer": "Hounsfield (synthetic)",
            "slices": nz,
            "rows": ny,
            "columns": nx,
            "spacing_mm": SPACING,
            "orientation": "axial",
        },
        header=headers[0],
        padding=np.packbits(outside, axis=-1),
        invert=False,
        units="HU",
        source_names=tuple(f"sample/slice{k + 1:03d}.dcm" for k in range(nz)),
        slice_headers=headers,
    )


def _sample_header(k: int) -> Dataset:
    """The header of slice ``k`` of the sample, as a scanner would write it (no pixel data)."""
    _, ny, nx = SHAPE
    dz, dy, dx = SPACING
    x0, y0 = -(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = generate_uid(entropy_srcs=["hounsfield sample", str(k)])
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.PatientName = "SAMPLE^SYNTHETIC"
    ds.PatientID = "HOUNSFIELD-SAMPLE"
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.FrameOfReferenceUID = FRAME_UID
    ds.Modality = "CT"
    ds.SeriesDescription = "Synthetic chest CT (built-in sample)"
    ds.Manufacturer = "Hounsfield (synthetic)"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = k + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(k * dz - 150.0, 4)]
    ds.PixelSpacing = [dy, dx]
    ds.SliceThickness = dz
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    set_padding_value(ds, hu.PADDING_STORED)
    ds.RescaleIntercept = hu.AIR  # stored 0 is air
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    return ds


def sample_ct_files(*, slices: slice | None = None) -> list[tuple[str, bytes]]:
    """The sample written as a DICOM CT series, one ``(name, bytes)`` pair per slice.

    Stored values are signed with Rescale Intercept -1024 and the scan-circle padding
    stored as -2000 with (0028,0120) Pixel Padding Value, as many scanners write it.
    The patient is fictitious ("SAMPLE^SYNTHETIC").

    Parameters
    ----------
    slices : slice, optional
        Write only these slices (all by default).
    """
    raw, _ = _build()
    out = []
    for k in range(SHAPE[0])[slices or slice(None)]:
        stored = raw[k].astype(np.int32) - hu.AIR
        stored[raw[k] == hu.PADDING_STORED] = hu.PADDING_STORED
        ds = _sample_header(k)
        set_int16_pixels(ds, stored)
        out.append((f"sample/slice{k + 1:03d}.dcm", dicom_bytes(ds)))
    return out
