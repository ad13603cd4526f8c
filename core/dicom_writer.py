"""Writing a volume as DICOM: classic single-frame datasets, one per slice, and their file bytes."""

from __future__ import annotations

import copy
import io
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from core import hu

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["dicom_bytes", "is_resampled", "series_datasets", "set_int16_pixels", "set_padding_value"]

_PIXEL_KEYWORDS = (
    "PixelData", "FloatPixelData", "DoubleFloatPixelData", "NumberOfFrames", "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence", "ModalityLUTSequence", "PixelPaddingRangeLimit", "LargestImagePixelValue",
    "SmallestImagePixelValue", "DimensionIndexSequence", "DimensionOrganizationSequence",
)



def is_resampled(volume: Volume) -> bool:
    """True when ``volume`` is a corrected (resampled) stack, not the slices as acquired."""
    return bool(volume.summary.get("corrected_geometry"))


def _sop_class_for(modality: str, template: Dataset | None) -> UID:
    sop = str(template.get("SOPClassUID", "")) if template is not None else ""
    multiframe = template is not None and int(template.get("NumberOfFrames") or 1) > 1
    if sop and not multiframe and "Enhanced" not in UID(sop).name:
        return UID(sop)
    return {"CT": CTImageStorage, "MR": MRImageStorage}.get(modality, SecondaryCaptureImageStorage)


def series_datasets(volume: Volume) -> list[Dataset]:
    """The volume as classic single-frame DICOM datasets, one per slice, pixels from the voxels.

    Each slice keeps its own header (so the result still holds PHI until de-identified);
    geometry is written from the volume (ImagePositionPatient per slice), pixels as int16
    with Rescale Slope 1 and Intercept 0 when the voxels are int16, so that loading the
    files again gives identical voxels. Padding is written as -2000 (``hu.PADDING_STORED``)
    with Pixel Padding Value, so it is recognised again. Float volumes get a per-slice linear
    rescale.

    A corrected (resampled) volume is written as a derived series of its own: a new Series
    Instance UID, a new SOP Instance UID per plane, Image Type DERIVED\\SECONDARY\\RESAMPLED,
    the regular grid's positions and Spacing Between Slices, no gantry tilt.
    """
    n = volume.shape[0]
    resampled = is_resampled(volume)
    headers = volume.slice_headers if len(volume.slice_headers) == n else (volume.header,) * n
    pad = volume.padding_mask() if volume.padding is not None else None
    series_uid = volume.series_uid
    if resampled:
        series_uid = generate_uid(entropy_srcs=[volume.series_uid, "resampled", *map(str, volume.spacing)])
    out = []
    for k in range(n):
        template = headers[k]
        ds = copy.deepcopy(template) if template is not None else Dataset()
        for kw in _PIXEL_KEYWORDS:
            if kw in ds:
                del ds[kw]
        sop_class = _set_identity(ds, volume, template, series_uid, resampled=resampled)
        ds.InstanceNumber = k + 1
        _set_geometry(ds, volume, k, resampled=resampled)
        _set_values(ds, volume, k, None if pad is None else pad[k])
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        out.append(ds)
    return out


def _set_identity(ds: Dataset, volume: Volume, template: Dataset | None, series_uid: str, *, resampled: bool) -> UID:
    """SOP class and instance, modality, series and study of one slice; returns the SOP class."""
    sop_class = _sop_class_for(volume.modality, template)
    multiframe = template is not None and int(template.get("NumberOfFrames") or 1) > 1
    if template is None or multiframe or resampled or "SOPInstanceUID" not in ds:
        ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.Modality = volume.modality
    ds.SeriesInstanceUID = series_uid
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[series_uid, "study"])
    if "PatientName" not in ds:
        ds.PatientName = ""
        ds.PatientID = ""
    return sop_class


def _set_geometry(ds: Dataset, volume: Volume, k: int, *, resampled: bool) -> None:
    """Position, orientation and spacing of slice ``k`` from the volume (a resampled one is marked derived)."""
    ds.ImagePositionPatient = [f"{x:.6g}" for x in volume.positions[k]]
    ds.ImageOrientationPatient = [f"{x:.8g}" for x in (*volume.row_direction, *volume.col_direction)]
    dz, dy, dx = volume.spacing
    ds.PixelSpacing = [f"{dy:.8g}", f"{dx:.8g}"]
    if "SliceThickness" not in ds:
        ds.SliceThickness = f"{dz:.6g}"
    if resampled:
        ds.ImageType = ["DERIVED", "SECONDARY", "RESAMPLED"]
        ds.SpacingBetweenSlices = f"{dz:.6g}"
        ds.GantryDetectorTilt = "0"
        for kw in ("SliceLocation", "SourceImageSequence"):
            if kw in ds:
                del ds[kw]


def _stored_values(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """int16 stored values of one slice and the Rescale Slope and Intercept that give ``values`` back."""
    if values.dtype == np.int16:
        return values.copy(), 1.0, 0.0
    lo, hi = float(values.min()), float(values.max())
    slope = (hi - lo) / 65534.0 if hi > lo else 1.0
    intercept = lo + 32767.0 * slope
    return np.rint((values.astype(np.float64) - intercept) / slope).astype(np.int16), slope, intercept


def _set_values(ds: Dataset, volume: Volume, k: int, pad: np.ndarray | None) -> None:
    """Pixels of slice ``k``, their rescale, padding, photometric interpretation and window."""
    ds.PhotometricInterpretation = "MONOCHROME1" if volume.invert else "MONOCHROME2"
    stored, slope, intercept = _stored_values(volume.voxels[k])
    if pad is not None and pad.any():
        stored[pad] = hu.PADDING_STORED
        set_padding_value(ds, hu.PADDING_STORED)
    elif "PixelPaddingValue" in ds:
        del ds.PixelPaddingValue
    ds.RescaleSlope = f"{slope:.10g}"
    ds.RescaleIntercept = f"{intercept:.10g}"
    if volume.units == "HU":
        ds.RescaleType = "HU"
    if volume.window is not None and "WindowCenter" not in ds:
        ds.WindowCenter, ds.WindowWidth = f"{volume.window[0]:g}", f"{volume.window[1]:g}"
    set_int16_pixels(ds, stored)


def set_int16_pixels(ds: Dataset, stored: np.ndarray) -> None:
    """Put one frame of signed 16-bit stored values into ``ds``, with the Image Pixel attributes that describe it.

    Parameters
    ----------
    stored : (rows, columns) ndarray
        Stored values (before Rescale Slope and Intercept); written as little-endian int16, VR OW.
    """
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.asarray(stored).astype("<i2").tobytes()
    ds["PixelData"].VR = "OW"


def set_padding_value(ds: Dataset, value: int) -> None:
    """Set (0028,0120) Pixel Padding Value for signed pixels (VR SS: resolves the 'US or SS' ambiguity)."""
    ds.PixelPaddingValue = int(value)
    ds["PixelPaddingValue"].VR = "SS"


def dicom_bytes(ds: Dataset) -> bytes:
    """``ds`` as a DICOM file (preamble, file meta), in memory."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
