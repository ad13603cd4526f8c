"""Generated DICOM files with known answers, for tests and benchmarks."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

ValueFn = Callable[[np.ndarray], np.ndarray]


def ct_slice(
    stored: np.ndarray,
    *,
    position: Sequence[float],
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    series_uid: str = "1.2.3.4.5.6",
    instance: int = 1,
    slope: float = 1.0,
    intercept: float = -1024.0,
    modality: str = "CT",
    slice_thickness: float | None = None,
    signed: bool | None = None,
    bits_stored: int | None = None,
    extra: dict | None = None,
    transfer_syntax=ExplicitVRLittleEndian,
    patient_name: str = "DOE^JANE",
    preamble: bool = True,
) -> bytes:
    """One single-frame CT (or MR) image file as bytes."""
    stored = np.asarray(stored)
    if signed is None:
        signed = bool(stored.dtype.kind == "i")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop
    ds.PatientName = patient_name
    ds.PatientID = "ID-0001"
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.SeriesDescription = "generated"
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [float(x) for x in orientation]
    ds.ImagePositionPatient = [round(float(x), 6) for x in position]
    ds.PixelSpacing = [float(x) for x in pixel_spacing]
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored or stored.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if modality == "CT" or slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=preamble)
    return buf.getvalue()


def ct_series(
    volume_hu: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (2.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    positions: np.ndarray | None = None,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    series_uid: str = "1.2.3.4.5.6",
    intercept: float = -1024.0,
    slope: float = 1.0,
    names: Callable[[int], str] | None = None,
    **kwargs,
) -> list[tuple[str, bytes]]:
    """A CT series of ``volume_hu`` (slices, rows, cols), stored as int16 = (HU - intercept) / slope."""
    dz, dy, dx = spacing
    iop = np.asarray(orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    if positions is None:
        positions = np.asarray(origin, float)[None, :] + np.arange(len(volume_hu))[:, None] * dz * normal[None, :]
    out = []
    for k, hu in enumerate(volume_hu):
        stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope).astype(np.int16)
        name = names(k) if names else f"series/{k:04d}.dcm"
        out.append(
            (
                name,
                ct_slice(
                    stored, position=positions[k], orientation=orientation, pixel_spacing=(dy, dx),
                    series_uid=series_uid, instance=k + 1, slope=slope, intercept=intercept, **kwargs,
                ),
            )
        )
    return out


def ramp_volume(shape: tuple[int, int, int], *, seed: int = 0) -> np.ndarray:
    """A volume whose every voxel is distinct per slice: 100 * k + small noise, in HU."""
    rng = np.random.default_rng(seed)
    s, r, c = shape
    base = (np.arange(s) * 100 - 1000)[:, None, None]
    return (base + rng.integers(0, 50, size=shape)).astype(np.int16)


def write_ct_folder(folder, *, slices: int = 300, size: int = 512, seed: int = 0) -> list:
    """Write a CT series of ``slices`` x ``size`` x ``size`` (a noisy disk in air) to ``folder``.

    File names are not in slice order. Returns the paths.
    """
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (0.45 * size) ** 2
    paths = []
    for k in range(slices):
        base = np.where(disk, 40 + 900 * np.sin(k / 20.0) * (xx > size / 2), -1000)
        hu = (base + rng.integers(-30, 30, size=(size, size))).astype(np.int16)
        (name, data), = ct_series(hu[None], spacing=(1.25, 0.7, 0.7), origin=(0, 0, 1.25 * k), names=lambda _: "x")
        path = folder / f"IM{(k * 7919) % slices:05d}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def sample_at_full_size(*, slices: int = 300, size: int = 512, noise: int = 0, seed: int = 0) -> np.ndarray:
    """The built-in sample resampled (nearest) to ``slices`` x ``size`` x ``size`` int16 HU, plus noise."""
    from core import sample_ct

    src = sample_ct().voxels
    zi = np.linspace(0, src.shape[0] - 1, slices).round().astype(int)
    yi = np.linspace(0, src.shape[1] - 1, size).round().astype(int)
    xi = np.linspace(0, src.shape[2] - 1, size).round().astype(int)
    vol = np.ascontiguousarray(src[zi][:, yi][:, :, xi])
    if noise:
        vol += np.random.default_rng(seed).integers(-noise, noise + 1, vol.shape, dtype=np.int16)
    return vol


# Highdicom copies these type 2 attributes from the images it refers to: present, even if empty.
_TYPE2_EMPTY = {"StudyDate": "", "StudyTime": "", "PatientBirthDate": "", "PatientSex": "",
                "ReferringPhysicianName": "", "StudyID": "", "AccessionNumber": ""}


def segmentable_series(volume_hu: np.ndarray, *, spacing: tuple[float, float, float], frame_uid: str | None = None,
                       series_uid: str | None = None, **kwargs) -> list[tuple[str, bytes]]:
    """A CT series (as :func:`ct_series`) with a frame of reference and what highdicom needs of its sources."""
    extra = {"FrameOfReferenceUID": frame_uid or generate_uid(), **_TYPE2_EMPTY, **kwargs.pop("extra", {})}
    return ct_series(volume_hu, spacing=spacing, series_uid=series_uid or generate_uid(), slice_thickness=spacing[0],
                     extra=extra, **kwargs)


def segmentation_file(files: list[tuple[str, bytes]], mask: np.ndarray, labels: dict[int, str], *,
                      kind: str = "BINARY", colors: dict[int, tuple[float, float, float]] | None = None,
                      description: str = "", reverse: bool = False) -> bytes:
    """A DICOM SEG of ``mask`` (values = segment numbers) made by highdicom from the image ``files`` themselves.

    ``colors`` are CIELab display colours per segment; ``reverse`` hands highdicom the images (and
    the mask) in the opposite order, for frames stored against the slice order.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(io.BytesIO(b)) for _, b in files]
    if reverse:
        sources, mask = sources[::-1], mask[::-1]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=label, segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue, algorithm_type="MANUAL",
            display_color=hd.color.CIELabColor(*colors[n]) if colors and n in colors else None)
        for n, label in sorted(labels.items())
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=np.ascontiguousarray(mask), segmentation_type=kind,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1", series_description=description or None,
    )
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()
