"""Read a DICOM header from memory and describe each frame it holds, without decoding pixels."""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

__all__ = ["FileHeader", "FrameInfo", "SkipFile", "read_header", "READ_ERRORS", "Budget"]

# Exceptions that a malformed file can raise inside pydicom or numpy; each becomes a
# "skipped" line, never a crash. Anything else is a bug of ours and should surface in tests.
READ_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    EOFError,
    OSError,
    struct.error,
    zlib.error,
    NotImplementedError,
    RecursionError,
    MemoryError,
    OverflowError,
    UnicodeError,
    RuntimeError,
    AssertionError,
)


class SkipFile(Exception):
    """A file (or frame) that cannot be used; ``reason`` says why in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Budget:
    """Limits checked from the header before any pixel is decoded."""

    max_frame_voxels: int = 4096 * 4096
    max_file_bytes: int = 1024**3
    max_sequence_depth: int = 8
    max_study_bytes: int = 1536 * 1024**2  # the voxels of one upload; fits a 2.7 GB host with room to work


@dataclass
class FrameInfo:
    """Geometry and value transform of one frame (a slice) of one file."""

    entry: int
    frame: int | None
    name: str
    series_uid: str
    rows: int
    cols: int
    orientation: np.ndarray | None
    position: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    window: tuple[float, float] | None
    sop_uid: str
    instance_number: int | None
    split_keys: dict[str, Any] = field(default_factory=dict)


@dataclass
class FileHeader:
    """What the loader needs from one file's header."""

    entry: int
    name: str
    dataset: Dataset
    transfer_syntax: UID
    pixel_offset: int | None
    native: bool
    frames: list[FrameInfo]
    bits_allocated: int
    bits_stored: int
    signed: bool
    samples: int
    photometric: str
    n_frames: int
    modality: str
    modality_lut: bool
    padding_value: int | None
    padding_limit: int | None


_NO_PIXEL_CLASSES = {
    "1.2.840.10008.1.3.10": "a DICOMDIR (a folder index, no image); its images are read from their own files",
}

_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}

_SPLIT_KEYWORDS = (
    "EchoNumbers",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "AcquisitionNumber",
    "DiffusionBValue",
    "EchoTime",
    "InversionTime",
    "ImageType",
)


def _float_list(value: Any, n: int, what: str) -> np.ndarray:
    try:
        arr = np.array([float(x) for x in value], dtype=float)
    except (TypeError, ValueError) as exc:
        raise SkipFile(f"{what} is not a list of numbers ({exc.__class__.__name__})") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise SkipFile(f"{what} must hold {n} finite numbers, found {len(arr)}")
    return arr


def _first(value: Any) -> Any:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return value[0] if len(value) else None
    return value


def _sequence_depth(ds: Dataset, limit: int) -> int:
    """Depth of nested sequences, stopping as soon as ``limit`` is exceeded.

    Iterative, and it converts only sequence elements (``Dataset.elements()`` leaves the
    others raw), so it is cheap on ordinary headers and safe on hostile ones.
    """
    best = 0
    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    while stack:
        item, depth = stack.pop()
        best = max(best, depth)
        if best > limit:
            return best
        for raw in item.elements():
            # Implicit VR leaves raw elements without a VR: convert those to know.
            vr = raw.VR if raw.VR is not None else item[raw.tag].VR
            if vr == "SQ":
                for sub in item[raw.tag].value:
                    stack.append((sub, depth + 1))
    return best


def _describe_no_pixels(ds: Dataset) -> str:
    sop = str(ds.get("SOPClassUID", "") or ds.get("file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))
    if sop in _NO_PIXEL_CLASSES:
        return _NO_PIXEL_CLASSES[sop]
    if "DirectoryRecordSequence" in ds:
        return _NO_PIXEL_CLASSES["1.2.840.10008.1.3.10"]
    modality = str(ds.get("Modality", "") or "")
    kinds = {
        "SR": "a structured report",
        "RTPLAN": "a radiotherapy plan",
        "RTSTRUCT": "a radiotherapy structure set",
        "PR": "a presentation state",
        "KO": "a key object selection",
        "ECG": "a waveform",
        "REG": "a registration",
        "SEG": "a segmentation",
    }
    name = UID(sop).name if sop else ""
    kind = kinds.get(modality) or (f"a {name}" if name and name != sop else "a DICOM object")
    return f"no image: {kind} (no (7FE0,0010) Pixel Data)"


def _item_value(item: Dataset | None, seq: str, keyword: str) -> Any:
    if item is None or seq not in item or not item[seq].value:
        return None
    return item[seq].value[0].get(keyword)


def _functional(per: Dataset | None, shared: Dataset | None, seq: str, keyword: str) -> Any:
    value = _item_value(per, seq, keyword)
    return _item_value(shared, seq, keyword) if value is None else value


def _window(center: Any, width: Any) -> tuple[float, float] | None:
    try:
        c, w = float(_first(center)), float(_first(width))
    except (TypeError, ValueError):
        return None
    return (c, w) if math.isfinite(c) and math.isfinite(w) and w > 0 else None


def _rescale(slope: Any, intercept: Any) -> tuple[float, float]:
    s = 1.0 if slope is None or slope == "" else float(slope)
    b = 0.0 if intercept is None or intercept == "" else float(intercept)
    if not math.isfinite(s) or s == 0:
        raise SkipFile(f"invalid (0028,1053) Rescale Slope {slope}: values cannot be converted to modality units")
    if not math.isfinite(b):
        raise SkipFile(f"invalid (0028,1052) Rescale Intercept {intercept}")
    return s, b


def _looks_like_dicom_without_preamble(data: bytes) -> bool:
    """Group 0x0002 or 0x0008 at the start, little or big endian: worth a forced parse."""
    if len(data) < 8:
        return False
    group_le = int.from_bytes(data[:2], "little")
    group_be = int.from_bytes(data[:2], "big")
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def read_header(
    data: bytes, *, entry: int, name: str, budget: Budget | None = None, file_size: int | None = None
) -> FileHeader:
    """Parse the header of one DICOM file held in memory.

    Parameters
    ----------
    data : bytes
        The whole file.
    entry, name : int, str
        Where the file came from, carried into the result.
    budget : Budget, optional
        Limits checked before pixels are decoded.
    file_size : int, optional
        Size of the whole file when ``data`` is only its beginning (up to the pixel
        data); the pixel data's length is then checked against it.

    Returns
    -------
    FileHeader

    Raises
    ------
    SkipFile
        With the reason in words, for anything that is not a usable image.
    """
    budget = budget or Budget()
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble and not _looks_like_dicom_without_preamble(data):
        raise SkipFile("not a DICOM file (no DICM marker and no DICOM header at the start)")
    fp = io.BytesIO(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=not has_preamble)
        offset = fp.tell()
    # pydicom keeps the stream it read from; that stream holds the whole file, pixels and all.
    # The header outlives the load (tag browser, export), the file's bytes must not.
    if hasattr(ds, "buffer"):
        ds.buffer = None
    if not has_preamble and ("Rows" not in ds or "Columns" not in ds):
        raise SkipFile("not a DICOM image (no DICM marker, and the content does not parse to an image)")

    if _sequence_depth(ds, budget.max_sequence_depth) > budget.max_sequence_depth:
        raise SkipFile(f"refused: sequences nested more than {budget.max_sequence_depth} levels deep")

    tsyntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "") if hasattr(ds, "file_meta") else ""))
    implicit_vr, little_endian = ds.original_encoding
    if not tsyntax:
        tsyntax = UID("1.2.840.10008.1.2" if implicit_vr else "1.2.840.10008.1.2.1" if little_endian else "1.2.840.10008.1.2.2")

    if not tsyntax.is_transfer_syntax:
        raise SkipFile(f"unknown (0002,0010) Transfer Syntax UID {str(tsyntax)[:64]!r}: not a DICOM transfer syntax")
    tag = data[offset:offset + 4]
    little = tag in (b"\xe0\x7f\x10\x00",)
    big = tag in (b"\x7f\xe0\x00\x10",)
    deflated = str(tsyntax) == "1.2.840.10008.1.2.1.99"
    if deflated:
        # The stream is inflated by pydicom, so offsets into `data` mean nothing: check fully.
        if "PixelData" not in pydicom.dcmread(io.BytesIO(data), force=not has_preamble):
            raise SkipFile(_describe_no_pixels(ds))
        little = True
    elif not (little or big):
        if "Rows" in ds and any(t in data[offset:offset + 4] for t in (b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")):
            raise SkipFile("float pixel data (7FE0,0008/0009) is not supported")
        if "Rows" in ds and len(data) - offset < 8:
            raise SkipFile("truncated: the file ends before its (7FE0,0010) Pixel Data")
        if any(issubclass(w.category, UserWarning) and "truncat" in str(w.message).lower() for w in caught):
            raise SkipFile("truncated: the file ends in the middle of its header")
        if len(ds) == 0:
            raise SkipFile("truncated or empty: no DICOM elements could be read")
        sop = str(ds.get("SOPClassUID", "") or "")
        if len(data) - offset < 8 and "Image Storage" in UID(sop).name:
            # An image class whose file stops before any pixels: cut short, not a pixel-less object.
            raise SkipFile(f"truncated: this {UID(sop).name} file ends before its (7FE0,0010) Pixel Data")
        raise SkipFile(_describe_no_pixels(ds))

    for kw, tagtxt in (("Rows", "(0028,0010) Rows"), ("Columns", "(0028,0011) Columns"), ("BitsAllocated", "(0028,0100) Bits Allocated")):
        if ds.get(kw) in (None, ""):
            raise SkipFile(f"missing {tagtxt}: the image size is unknown")
    rows, cols = int(ds.Rows), int(ds.Columns)
    bits_allocated = int(ds.BitsAllocated)
    bits_stored = int(ds.get("BitsStored") or bits_allocated)
    samples = int(ds.get("SamplesPerPixel") or 1)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    n_frames = int(ds.get("NumberOfFrames") or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if rows <= 0 or cols <= 0 or n_frames <= 0:
        raise SkipFile(f"invalid image size: {rows} rows x {cols} columns x {n_frames} frames")
    if bits_allocated not in (1, 8, 16, 32):
        raise SkipFile(f"unsupported (0028,0100) Bits Allocated {bits_allocated}")
    if not 1 <= bits_stored <= bits_allocated:
        raise SkipFile(f"(0028,0101) Bits Stored {bits_stored} disagrees with (0028,0100) Bits Allocated {bits_allocated}")
    if rows * cols > budget.max_frame_voxels:
        raise SkipFile(f"refused: {rows} x {cols} pixels per frame is above the limit of {budget.max_frame_voxels} pixels")
    nbytes = rows * cols * n_frames * samples * max(bits_allocated, 8) // 8
    if nbytes > budget.max_file_bytes:
        raise SkipFile(f"refused: the pixel data would take {nbytes / 1e9:.1f} GB, above the limit of {budget.max_file_bytes / 1e9:.1f} GB")
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise SkipFile(
            f"a colour image ((0028,0004) Photometric Interpretation {photometric}, {samples} samples per pixel); "
            f"only greyscale CT/MR-like images form volumes"
        )

    native = not deflated and (str(tsyntax) in _NATIVE_LE or str(tsyntax) == "1.2.840.10008.1.2.2")
    pixel_offset: int | None = None
    if native:
        vr = data[offset + 4:offset + 6]
        if implicit_vr:
            length_bytes, start = data[offset + 4:offset + 8], offset + 8
        elif vr in (b"OB", b"OW", b"UN"):
            length_bytes, start = data[offset + 8:offset + 12], offset + 12
        else:
            raise SkipFile(f"unexpected VR {vr!r} for (7FE0,0010) Pixel Data")
        if len(length_bytes) < 4:
            raise SkipFile("truncated: the file ends inside the (7FE0,0010) Pixel Data header")
        length = int.from_bytes(length_bytes, "big" if big else "little")
        expected = (rows * cols * n_frames * bits_allocated + 7) // 8
        available = (file_size if file_size is not None else len(data)) - start
        if length == 0xFFFFFFFF:
            raise SkipFile("encapsulated pixel data under an uncompressed transfer syntax")
        if min(length, available) < expected:
            raise SkipFile(
                f"truncated: (7FE0,0010) Pixel Data holds {min(length, available)} bytes, "
                f"{rows} x {cols} x {n_frames} frames need {expected}"
            )
        pixel_offset = start
    elif not deflated:
        if len(data) - offset < 16:
            raise SkipFile("truncated: the compressed (7FE0,0010) Pixel Data is missing")

    modality = str(ds.get("Modality", "") or "").strip().upper() or "OT"
    series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    if not series_uid:
        series_uid = "(no SeriesInstanceUID)"
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    instance = ds.get("InstanceNumber")
    try:
        instance_number = int(instance) if instance not in (None, "") else None
    except (TypeError, ValueError):
        instance_number = None

    modality_lut = "ModalityLUTSequence" in ds and "RescaleSlope" not in ds
    pad = ds.get("PixelPaddingValue")
    pad_limit = ds.get("PixelPaddingRangeLimit")
    padding_value = int(pad) if isinstance(pad, (int, np.integer)) else None
    padding_limit = int(pad_limit) if isinstance(pad_limit, (int, np.integer)) else None

    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds and ds.SharedFunctionalGroupsSequence else None
    per_frame = list(ds.PerFrameFunctionalGroupsSequence) if "PerFrameFunctionalGroupsSequence" in ds else []
    if per_frame and len(per_frame) < n_frames:
        raise SkipFile(f"(5200,9230) Per-frame Functional Groups has {len(per_frame)} items for {n_frames} frames")

    split_base = {}
    for kw in _SPLIT_KEYWORDS:
        value = ds.get(kw)
        if value not in (None, ""):
            split_base[kw] = tuple(value) if isinstance(value, pydicom.multival.MultiValue) else value

    frames: list[FrameInfo] = []
    for f in range(n_frames):
        per = per_frame[f] if per_frame else None
        if per is not None or shared is not None:
            iop = _functional(per, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
            ipp = _functional(per, shared, "PlanePositionSequence", "ImagePositionPatient")
            ps = _functional(per, shared, "PixelMeasuresSequence", "PixelSpacing")
            slope = _functional(per, shared, "PixelValueTransformationSequence", "RescaleSlope")
            intercept = _functional(per, shared, "PixelValueTransformationSequence", "RescaleIntercept")
            wc = _functional(per, shared, "FrameVOILUTSequence", "WindowCenter")
            ww = _functional(per, shared, "FrameVOILUTSequence", "WindowWidth")
            iop = iop if iop is not None else ds.get("ImageOrientationPatient")
            ipp = ipp if ipp is not None else (ds.get("ImagePositionPatient") if n_frames == 1 else None)
            ps = ps if ps is not None else ds.get("PixelSpacing")
            slope = slope if slope is not None else ds.get("RescaleSlope")
            intercept = intercept if intercept is not None else ds.get("RescaleIntercept")
            if wc is None:
                wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
        else:
            iop = ds.get("ImageOrientationPatient")
            ipp = ds.get("ImagePositionPatient") if n_frames == 1 else None
            ps = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
            slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
            wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")

        orientation = _float_list(iop, 6, "(0020,0037) Image Orientation (Patient)") if iop not in (None, "") else None
        position = _float_list(ipp, 3, "(0020,0032) Image Position (Patient)") if ipp not in (None, "") else None
        spacing = None
        if ps not in (None, ""):
            sp = _float_list(ps, 2, "(0028,0030) Pixel Spacing")
            if np.any(sp <= 0):
                raise SkipFile(f"(0028,0030) Pixel Spacing must be positive, got {[float(x) for x in sp]}")
            spacing = (float(sp[0]), float(sp[1]))
        s, b = _rescale(slope, intercept)
        keys = dict(split_base)
        if per is not None and "FrameContentSequence" in per and per.FrameContentSequence:
            fc = per.FrameContentSequence[0]
            for kw in ("TemporalPositionIndex", "StackID", "InStackPositionNumber"):
                if fc.get(kw) not in (None, ""):
                    keys[kw] = fc.get(kw)
            if fc.get("DimensionIndexValues") not in (None, ""):
                keys["DimensionIndexValues"] = tuple(fc.DimensionIndexValues) if isinstance(
                    fc.DimensionIndexValues, pydicom.multival.MultiValue) else fc.DimensionIndexValues
        frames.append(
            FrameInfo(
                entry=entry,
                frame=f if n_frames > 1 else None,
                name=name if n_frames == 1 else f"{name} [frame {f + 1}]",
                series_uid=series_uid,
                rows=rows,
                cols=cols,
                orientation=orientation,
                position=position,
                pixel_spacing=spacing,
                slope=s,
                intercept=b,
                window=_window(wc, ww),
                sop_uid=sop_uid if n_frames == 1 else f"{sop_uid}#{f}",
                instance_number=instance_number,
                split_keys=keys,
            )
        )

    return FileHeader(
        entry=entry,
        name=name,
        dataset=ds,
        transfer_syntax=tsyntax,
        pixel_offset=pixel_offset,
        native=native,
        frames=frames,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=signed,
        samples=samples,
        photometric=photometric,
        n_frames=n_frames,
        modality=modality,
        modality_lut=modality_lut,
        padding_value=padding_value,
        padding_limit=padding_limit,
    )
