"""Generated DICOM images that are not CT stacks: colour, loops, projections, secondary captures."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

# SOP classes by modality (what a real file of that modality would carry).
_SOP = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "XA": "1.2.840.10008.5.1.4.1.1.12.1",
    "US": "1.2.840.10008.5.1.4.1.1.3.1",
}


def image_file(
    pixels: np.ndarray,
    *,
    modality: str = "OT",
    photometric: str = "MONOCHROME2",
    series_uid: str = "1.2.3.9.1",
    instance: int = 1,
    secondary_capture: bool = False,
    extra: dict | None = None,
    planar: int = 0,
) -> bytes:
    """One file holding ``pixels``: (R, C) or (R, C, 3) for one frame, (F, R, C[, 3]) for several.

    No position, orientation or spacing unless ``extra`` gives them. uint8 or uint16 values.
    """
    pixels = np.asarray(pixels)
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    frames = pixels.ndim == (4 if colour else 3)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = SecondaryCaptureImageStorage if secondary_capture else _SOP.get(modality, SecondaryCaptureImageStorage)
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
    ds.PatientName, ds.PatientID = "DOE^JANE", "ID-0001"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.9", series_uid
    ds.Modality = modality
    ds.SeriesDescription = "generated"
    ds.InstanceNumber = instance
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = planar
    shape = pixels.shape[1:] if frames else pixels.shape
    ds.Rows, ds.Columns = shape[0], shape[1]
    if frames:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    data = pixels.astype(pixels.dtype.newbyteorder("<"))
    if colour and planar == 1:  # RRR...GGG...BBB per frame
        data = np.moveaxis(data, -1, -3)
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def loop_pixels(frames: int = 30, rows: int = 48, cols: int = 64) -> np.ndarray:
    """(F, R, C) uint8: frame f is a bright bar at column 2 f on a dark ground, so frames differ."""
    out = np.full((frames, rows, cols), 20, dtype=np.uint8)
    for f in range(frames):
        out[f, :, (2 * f) % cols] = 250
    return out


def uid() -> str:
    return generate_uid()
