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
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import UID

from core.colour import COLOUR_SAMPLES

__all__ = ["Budget", "FileHeader", "FrameInfo", "READ_ERRORS", "SkipFile", "frame_time_ms", "inflate_deflated",
           "lenient", "quoted", "read_header", "shown", "spacing_calibration", "voi_lut_table"]

# Exceptions that a malformed file is known to raise inside pydicom or numpy. The loader turns
# every exception of a file into a "skipped" line; these ones are expected and not logged.
READ_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    BytesLengthException,  # derives from Exception alone
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

DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_NATIVE = {"1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.2"}
# Transfer syntaxes of the standard that pydicom 3.0 does not know (added to PS3.5 later).
_NEWER_SYNTAXES = {
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression",
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}
# Header elements larger than this are dropped from the kept header: no attribute the app shows
# or uses comes near it (a 16-bit Modality LUT is 128 KB), and a hostile file can carry gigabytes.
MAX_KEPT_ELEMENT = 1024**2


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
    max_inflated_bytes: int = 256 * 1024**2  # a deflated file, once inflated (inflating holds twice this)


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
    spacing_note: str | None = None
    """Why ``pixel_spacing`` is None although the header has one (e.g. ``0\\0``)."""


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
    deflated: bool = False
    """Pixel offsets refer to the file as :func:`inflate_deflated` returns it."""


_NO_PIXEL_CLASSES = {
    "1.2.840.10008.1.3.10": "a DICOMDIR (a folder index, no image); its images are read from their own files",
}

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


# ---------------------------------------------------------------------------------------
# Words: values from a file quoted safely
# ---------------------------------------------------------------------------------------


def shown(value: Any, *, limit: int = 64) -> str:
    """``value`` as short, printable text for a message (multiple values joined by ``\\``).

    Non-printable characters (bytes of a damaged file) become ``?`` and long values are cut
    at ``limit`` characters, so a reason never echoes raw bytes or a whole element.
    """
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    elif isinstance(value, (pydicom.sequence.Sequence, Dataset)):
        value = "(a sequence of items)"
    elif isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = "\\".join(shown(v, limit=limit) for v in value)
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text[:limit] + "…" if len(text) > limit else text


def quoted(value: Any, *, limit: int = 64) -> str:
    """:func:`shown` between quotes."""
    return f"'{shown(value, limit=limit)}'"


def _float_list(value: Any, n: int, what: str) -> np.ndarray:
    try:
        arr = np.array([float(x) for x in value], dtype=float)
    except (TypeError, ValueError):
        raise SkipFile(f"invalid {what} {quoted(value)}: not a list of numbers") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise SkipFile(f"invalid {what} {quoted(value)}: {n} finite numbers expected")
    return arr


def _get(ds: Dataset | None, keyword: str) -> Any:
    """``ds.get(keyword)``, with a value pydicom cannot convert reported in words."""
    if ds is None:
        return None
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - pydicom raises many kinds for a value that does not fit its VR
        tag = pydicom.datadict.tag_for_keyword(keyword)
        raw = ds.get_item(tag).value if tag is not None and ds.get_item(tag) is not None else b""
        name = pydicom.datadict.dictionary_description(tag) if tag is not None else keyword
        tagtxt = f"({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else ""
        raise SkipFile(f"invalid {tagtxt} {name} {quoted(raw)}: not a valid value of its kind") from None


def lenient(ds: Dataset | None, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword)``, or ``default`` when the value is missing or cannot be converted."""
    try:
        value = _get(ds, keyword)
    except SkipFile:
        return default
    return default if value is None else value


def _first(value: Any) -> Any:
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return value[0] if len(value) else None
    return value


# ---------------------------------------------------------------------------------------
# Step 1: the file meta, and deflated files inflated with a cap
# ---------------------------------------------------------------------------------------


def _file_meta(data: bytes) -> tuple[int, int, int, str]:
    """Where group 0002 starts and ends, where the Transfer Syntax UID value is, and the UID.

    Returns ``(start, end, ts_at, uid)``; ``ts_at`` is the offset of the UID's element
    (-1 without one). Group 0002 is always explicit VR little endian (PS3.10 7.1).
    """
    start = 132 if len(data) >= 132 and data[128:132] == b"DICM" else 0
    pos, ts_at, uid = start, -1, ""
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            if pos + 12 > len(data):
                break
            length, head = struct.unpack_from("<I", data, pos + 8)[0], 12
        else:
            length, head = struct.unpack_from("<H", data, pos + 6)[0], 8
        if elem == 0x0010:
            ts_at = pos
            uid = data[pos + head:pos + head + length].decode("latin-1").rstrip("\x00 ")
        pos += head + length
    return start, min(pos, len(data)), ts_at, uid


def inflate_deflated(data: bytes, *, max_bytes: int) -> bytes:
    """A Deflated Explicit VR Little Endian file rewritten as Explicit VR Little Endian.

    The dataset is inflated in pieces and refused past ``max_bytes`` (pydicom inflates it
    whole, without a limit: a 1.5 MB file can hold gigabytes).

    Raises
    ------
    SkipFile
        When the file inflates to more than ``max_bytes``, or its deflate stream is damaged.
    """
    start, end, ts_at, uid = _file_meta(data)
    if uid != DEFLATED or ts_at < 0:
        return data
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pieces, total, step = [], 0, 4 * 1024**2
    body = memoryview(data)[end:]
    try:
        chunk = inflater.decompress(body, step)
        while chunk:
            total += len(chunk)
            if total > max_bytes:
                raise SkipFile(f"refused: this deflated file inflates to more than {max_bytes / 1024**2:,.0f} MB")
            pieces.append(chunk)
            chunk = inflater.decompress(inflater.unconsumed_tail, step)
    except zlib.error:
        raise SkipFile("damaged: the deflated (compressed) content of this file cannot be inflated") from None
    # Replace the UID's value ("1.2.840.10008.1.2.1.99", 22 bytes) and fix the group length.
    old_len = struct.unpack_from("<H", data, ts_at + 6)[0]
    new_value = EXPLICIT_LE.encode() + b"\x00"
    meta = bytearray(data[:ts_at]) + data[ts_at:ts_at + 6] + struct.pack("<H", len(new_value)) + new_value
    meta += data[ts_at + 8 + old_len:end]
    if struct.unpack_from("<HH", meta, start)[:2] == (0x0002, 0x0000) and meta[start + 4:start + 6] == b"UL":
        group_len = struct.unpack_from("<I", meta, start + 8)[0] + len(new_value) - old_len
        struct.pack_into("<I", meta, start + 8, max(0, group_len))
    return bytes(meta) + b"".join(pieces)


# ---------------------------------------------------------------------------------------
# Step 2: parse with pydicom and find where the pixels start
# ---------------------------------------------------------------------------------------


@dataclass
class _Parsed:
    ds: Dataset
    data: bytes
    offset: int  # where pydicom stopped: the pixel data element, if any
    has_preamble: bool
    truncated: bool
    tsyntax: UID
    implicit_vr: bool
    big_endian: bool
    deflated: bool


def _looks_like_dicom_without_preamble(data: bytes) -> bool:
    """Group 0x0002 or 0x0008 at the start, little or big endian: worth a forced parse."""
    if len(data) < 8:
        return False
    group_le = int.from_bytes(data[:2], "little")
    group_be = int.from_bytes(data[:2], "big")
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def _cut_inside_an_element(ds: Dataset, size: int) -> bool:
    """Whether the last element read claims bytes past the end (pydicom keeps it short, silently)."""
    tags = list(ds.keys())
    if not tags:
        return False
    last = ds.get_item(tags[-1])
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", None)
    return tell is not None and length is not None and length != 0xFFFFFFFF and tell + length > size


def _transfer_syntax(ds: Dataset) -> UID:
    raw = lenient(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")
    # A damaged meta group can hold bytes or several values here: their text, never their repr.
    tsyntax = UID((raw if isinstance(raw, str) else shown(raw, limit=200)).strip())
    if not tsyntax:
        implicit_vr, little_endian = ds.original_encoding
        tsyntax = UID("1.2.840.10008.1.2" if implicit_vr else EXPLICIT_LE if little_endian else "1.2.840.10008.1.2.2")
    if tsyntax in _NEWER_SYNTAXES:
        raise SkipFile(f"unsupported transfer syntax: {_NEWER_SYNTAXES[tsyntax]} ({tsyntax}), "
                       "a DICOM encoding this viewer cannot decode")
    if not tsyntax.is_transfer_syntax:
        raise SkipFile(f"unknown (0002,0010) Transfer Syntax UID {quoted(tsyntax)}: not a DICOM transfer syntax")
    return tsyntax


def _parse(data: bytes, budget: Budget, inflate_limit: int | None) -> _Parsed:
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_preamble and not _looks_like_dicom_without_preamble(data):
        raise SkipFile("not a DICOM file (no DICM marker and no DICOM header at the start)")
    deflated = _file_meta(data)[3] == DEFLATED
    if deflated:
        limit = budget.max_inflated_bytes if inflate_limit is None else min(inflate_limit, budget.max_inflated_bytes)
        data = inflate_deflated(data, max_bytes=limit)
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
    truncated = _cut_inside_an_element(ds, len(data)) or any(
        issubclass(w.category, UserWarning) and "truncat" in str(w.message).lower() for w in caught)
    implicit_vr, little_endian = ds.original_encoding
    tsyntax = _transfer_syntax(ds)
    return _Parsed(ds, data, offset, has_preamble, truncated, tsyntax, bool(implicit_vr),
                   tsyntax == "1.2.840.10008.1.2.2", deflated)


def _sequence_depth(ds: Dataset, limit: int) -> int:
    """Depth of nested sequences, stopping as soon as ``limit`` is exceeded.

    Iterative, and it converts only sequence elements (``Dataset.elements()`` leaves the
    others raw), so it is cheap on ordinary headers and safe on hostile ones. An element
    that cannot be converted (an item tag where an element belongs, VR "NONE") is no
    sequence: it is passed over, as pydicom passes over it until someone reads it.
    """
    best = 0
    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    while stack:
        item, depth = stack.pop()
        best = max(best, depth)
        if best > limit:
            return best
        for raw in item.elements():
            vr = raw.VR
            if vr is None:  # implicit VR: the dictionary (or pydicom's guess) decides
                try:
                    vr = item[raw.tag].VR
                except Exception:  # noqa: BLE001 - an unreadable element is not a sequence
                    continue
            if vr == "SQ":
                for sub in item[raw.tag].value:
                    stack.append((sub, depth + 1))
    return best


def _drop_large_elements(ds: Dataset) -> int:
    """Remove elements over :data:`MAX_KEPT_ELEMENT` bytes at any depth; how many were removed."""
    dropped = 0
    stack = [ds]
    while stack:
        item = stack.pop()
        big = []
        for raw in item.elements():
            value = raw.value
            if isinstance(value, (bytes, bytearray, str)) and len(value) > MAX_KEPT_ELEMENT:
                big.append(raw.tag)
            elif isinstance(value, pydicom.sequence.Sequence):
                stack.extend(value)
        for tag in big:
            del item[tag]
        dropped += len(big)
    return dropped


def _describe_no_pixels(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    sop = str(lenient(ds, "SOPClassUID", "") or lenient(meta, "MediaStorageSOPClassUID", ""))
    if sop in _NO_PIXEL_CLASSES:
        return _NO_PIXEL_CLASSES[sop]
    if "DirectoryRecordSequence" in ds:
        return _NO_PIXEL_CLASSES["1.2.840.10008.1.3.10"]
    modality = str(lenient(ds, "Modality", "") or "")
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
    if modality not in kinds and "Image Storage" in name:
        return (f"no image: this {name} file holds no (7FE0,0010) Pixel Data (only the header; "
                "if it should hold an image, it was cut short before its pixels)")
    kind = kinds.get(modality) or (f"a {shown(name)}" if name and name != sop else "a DICOM object")
    return f"no image: {kind} (no (7FE0,0010) Pixel Data)"


def _check_pixels_follow(p: _Parsed) -> None:
    """Raise SkipFile unless pydicom stopped at a (7FE0,0010) Pixel Data element."""
    if p.deflated:
        tag_ok = p.data[p.offset:p.offset + 4] == b"\xe0\x7f\x10\x00"
    else:
        tag = p.data[p.offset:p.offset + 4]
        tag_ok = tag == (b"\x7f\xe0\x00\x10" if p.big_endian else b"\xe0\x7f\x10\x00")
    if tag_ok:
        return
    ds, rest = p.ds, p.data[p.offset:p.offset + 4]
    if "Rows" in ds and any(t == rest for t in (b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")):
        raise SkipFile("unsupported: float pixel data ((7FE0,0008) or (7FE0,0009)) cannot be shown")
    if p.truncated:
        raise SkipFile("truncated: the file ends in the middle of its header")
    if len(ds) == 0:
        raise SkipFile("truncated or empty: no DICOM elements could be read")
    if len(p.data) - p.offset >= 8:
        raise SkipFile("damaged: the header could not be read to its end (an element there is not valid DICOM)")
    raise SkipFile(_describe_no_pixels(ds))


# ---------------------------------------------------------------------------------------
# Step 3: the image's format, checked against the budget
# ---------------------------------------------------------------------------------------


@dataclass
class _Format:
    rows: int
    cols: int
    bits_allocated: int
    bits_stored: int
    samples: int
    signed: bool
    n_frames: int
    photometric: str


def _int_attr(ds: Dataset, keyword: str, tagtxt: str, default: int | None = None) -> int:
    value = _get(ds, keyword)
    if value in (None, ""):
        if default is None:
            raise SkipFile(f"missing {tagtxt}: the image size is unknown")
        return default
    try:
        return int(_first(value))
    except (TypeError, ValueError):
        raise SkipFile(f"invalid {tagtxt} {quoted(value)}: not a whole number") from None


def _image_format(ds: Dataset, budget: Budget) -> _Format:
    rows = _int_attr(ds, "Rows", "(0028,0010) Rows")
    cols = _int_attr(ds, "Columns", "(0028,0011) Columns")
    bits_allocated = _int_attr(ds, "BitsAllocated", "(0028,0100) Bits Allocated")
    bits_stored = _int_attr(ds, "BitsStored", "(0028,0101) Bits Stored", bits_allocated) or bits_allocated
    samples = _int_attr(ds, "SamplesPerPixel", "(0028,0002) Samples per Pixel", 1) or 1
    signed = _int_attr(ds, "PixelRepresentation", "(0028,0103) Pixel Representation", 0) == 1
    n_frames = _int_attr(ds, "NumberOfFrames", "(0028,0008) Number of Frames", 1) or 1
    photometric = str(_get(ds, "PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    if rows <= 0 or cols <= 0 or n_frames <= 0:
        raise SkipFile(f"invalid image size: {rows} rows x {cols} columns x {n_frames} frames")
    if bits_allocated not in (1, 8, 16, 32):
        raise SkipFile(f"unsupported (0028,0100) Bits Allocated {bits_allocated}")
    if not 1 <= bits_stored <= bits_allocated:
        raise SkipFile(f"invalid: (0028,0101) Bits Stored {bits_stored} disagrees with (0028,0100) Bits Allocated "
                       f"{bits_allocated}")
    if rows * cols > budget.max_frame_voxels:
        raise SkipFile(f"refused: {rows} x {cols} pixels per frame is above the limit of "
                       f"{budget.max_frame_voxels} pixels")
    nbytes = rows * cols * n_frames * samples * max(bits_allocated, 8) // 8
    if nbytes > budget.max_file_bytes:
        raise SkipFile(f"refused: the pixel data would take {nbytes / 1e9:.1f} GB, above the limit of "
                       f"{budget.max_file_bytes / 1e9:.1f} GB")
    known = {"MONOCHROME1": 1, "MONOCHROME2": 1, **COLOUR_SAMPLES}
    if photometric not in known:
        raise SkipFile(f"unsupported colour encoding: (0028,0004) Photometric Interpretation "
                       f"{quoted(photometric, limit=20)} ({samples} samples per pixel) cannot be shown")
    if samples != known[photometric]:
        needed = "1 sample" if known[photometric] == 1 else f"{known[photometric]} samples"
        raise SkipFile(f"invalid: (0028,0004) Photometric Interpretation {shown(photometric, limit=20)} needs "
                       f"{needed} per pixel, (0028,0002) Samples per Pixel says {samples}")
    if photometric in COLOUR_SAMPLES and bits_allocated == 1:
        raise SkipFile(f"unsupported: a colour image with (0028,0100) Bits Allocated {bits_allocated}")
    return _Format(rows, cols, bits_allocated, bits_stored, samples, signed, n_frames, photometric)


def _native_pixel_offset(p: _Parsed, fmt: _Format, file_size: int | None) -> int:
    """Where native pixel values start, after checking the element holds all of them."""
    data, offset = p.data, p.offset
    if p.implicit_vr:
        length_bytes, start = data[offset + 4:offset + 8], offset + 8
    else:
        vr = data[offset + 4:offset + 6]
        if vr not in (b"OB", b"OW", b"UN"):
            raise SkipFile(f"invalid: (7FE0,0010) Pixel Data has the value representation {quoted(vr)}, "
                           "not OB or OW")
        length_bytes, start = data[offset + 8:offset + 12], offset + 12
    if len(length_bytes) < 4:
        raise SkipFile("truncated: the file ends inside the (7FE0,0010) Pixel Data header")
    length = int.from_bytes(length_bytes, "big" if p.big_endian else "little")
    # YBR_FULL_422 keeps two samples per pixel (PS3.3 C.7.6.3.1.2); other colour keeps every sample.
    samples = 2 if fmt.photometric == "YBR_FULL_422" else fmt.samples
    expected = (fmt.rows * fmt.cols * fmt.n_frames * samples * fmt.bits_allocated + 7) // 8
    available = (file_size if file_size is not None and not p.deflated else len(data)) - start
    if length == 0xFFFFFFFF:
        raise SkipFile("invalid: compressed (encapsulated) pixel data in a file that says it is uncompressed")
    if min(length, available) < expected:
        raise SkipFile(
            f"truncated: (7FE0,0010) Pixel Data holds {min(length, available)} bytes, "
            f"{fmt.rows} x {fmt.cols} x {fmt.n_frames} frames need {expected}"
        )
    return start


def _check_fragments_hold_frames(p: _Parsed, fmt: _Format, file_size: int | None) -> None:
    """Raise SkipFile when compressed pixel data holds fewer fragments than (0028,0008) Number of
    Frames says frames (each frame needs one fragment at least), before one FrameInfo per frame is
    made: a small file saying 100,000 frames is one line, not 100,000 decoding attempts."""
    if fmt.n_frames <= 1:
        return
    data = p.data
    pos = p.offset + (8 if p.implicit_vr else 12)
    fragments = -1  # the first item is the Basic Offset Table
    while fragments < fmt.n_frames:
        item = data[pos:pos + 8]
        if len(item) < 8:
            if file_size is not None and file_size > len(data):
                # The beginning of the file only: the rest holds at most one fragment per 8 bytes.
                if fragments + max(0, file_size - pos) // 8 >= fmt.n_frames:
                    return
                raise SkipFile(f"damaged: (0028,0008) Number of Frames says {fmt.n_frames}, the file is too small "
                               "for as many compressed frames")
            break
        if item[:4] != b"\xfe\xff\x00\xe0":  # the sequence delimiter, or damage
            break
        fragments += 1
        pos += 8 + int.from_bytes(item[4:], "little")
    if fragments < fmt.n_frames:
        raise SkipFile(f"damaged: (0028,0008) Number of Frames says {fmt.n_frames}, the compressed pixel data holds "
                       f"{max(fragments, 0)} {'fragment' if fragments == 1 else 'fragments'}")


# ---------------------------------------------------------------------------------------
# Step 4: one FrameInfo per frame
# ---------------------------------------------------------------------------------------


def _item_value(item: Dataset | None, seq: str, keyword: str) -> Any:
    if item is None or seq not in item or not item[seq].value:
        return None
    return _get(item[seq].value[0], keyword)


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
    try:
        s = 1.0 if slope is None or slope == "" else float(_first(slope))
    except (TypeError, ValueError):
        raise SkipFile(f"invalid (0028,1053) Rescale Slope {quoted(slope)}: not a number") from None
    try:
        b = 0.0 if intercept is None or intercept == "" else float(_first(intercept))
    except (TypeError, ValueError):
        raise SkipFile(f"invalid (0028,1052) Rescale Intercept {quoted(intercept)}: not a number") from None
    if not math.isfinite(s) or s == 0:
        raise SkipFile(f"invalid (0028,1053) Rescale Slope {shown(slope)}: values cannot be converted to "
                       "modality units")
    if not math.isfinite(b):
        raise SkipFile(f"invalid (0028,1052) Rescale Intercept {shown(intercept)}")
    return s, b


def _pixel_spacing(ps: Any) -> tuple[tuple[float, float] | None, str | None]:
    """(spacing, None), or (None, why it is unusable) for a spacing of zero or less."""
    if ps in (None, ""):
        return None, None
    sp = _float_list(ps, 2, "(0028,0030) Pixel Spacing")
    if np.any(sp <= 0):
        return None, (f"(0028,0030) Pixel Spacing is {shown(ps)}, which is no size: 1 mm pixels assumed, "
                      "so distances and areas are in pixels, not mm.")
    return (float(sp[0]), float(sp[1])), None


def _frame_attributes(ds: Dataset, per: Dataset | None, shared: Dataset | None, n_frames: int) -> dict[str, Any]:
    """The raw geometry and value attributes of one frame, functional groups first."""
    single = n_frames == 1
    if per is None and shared is None:
        return {
            "iop": _get(ds, "ImageOrientationPatient"),
            "ipp": _get(ds, "ImagePositionPatient") if single else None,
            "ps": _get(ds, "PixelSpacing") or _get(ds, "ImagerPixelSpacing"),
            "slope": _get(ds, "RescaleSlope"), "intercept": _get(ds, "RescaleIntercept"),
            "wc": lenient(ds, "WindowCenter"), "ww": lenient(ds, "WindowWidth"),
        }
    out = {
        "iop": _functional(per, shared, "PlaneOrientationSequence", "ImageOrientationPatient"),
        "ipp": _functional(per, shared, "PlanePositionSequence", "ImagePositionPatient"),
        "ps": _functional(per, shared, "PixelMeasuresSequence", "PixelSpacing"),
        "slope": _functional(per, shared, "PixelValueTransformationSequence", "RescaleSlope"),
        "intercept": _functional(per, shared, "PixelValueTransformationSequence", "RescaleIntercept"),
        "wc": _functional(per, shared, "FrameVOILUTSequence", "WindowCenter"),
        "ww": _functional(per, shared, "FrameVOILUTSequence", "WindowWidth"),
    }
    fallback = {"iop": _get(ds, "ImageOrientationPatient"),
                "ipp": _get(ds, "ImagePositionPatient") if single else None,
                "ps": _get(ds, "PixelSpacing"), "slope": _get(ds, "RescaleSlope"),
                "intercept": _get(ds, "RescaleIntercept")}
    for key, value in fallback.items():
        if out[key] is None:
            out[key] = value
    if out["wc"] is None:
        out["wc"], out["ww"] = lenient(ds, "WindowCenter"), lenient(ds, "WindowWidth")
    return out


def _split_keys(base: dict[str, Any], per: Dataset | None) -> dict[str, Any]:
    keys = dict(base)
    if per is not None and "FrameContentSequence" in per and per.FrameContentSequence:
        fc = per.FrameContentSequence[0]
        for kw in ("TemporalPositionIndex", "StackID", "InStackPositionNumber"):
            if lenient(fc, kw) not in (None, ""):
                keys[kw] = lenient(fc, kw)
        div = lenient(fc, "DimensionIndexValues")
        if div not in (None, ""):
            keys["DimensionIndexValues"] = tuple(div) if isinstance(div, pydicom.multival.MultiValue) else div
    return keys


def _frames(ds: Dataset, fmt: _Format, *, entry: int, name: str) -> list[FrameInfo]:
    n_frames = fmt.n_frames
    series_uid = str(lenient(ds, "SeriesInstanceUID", "") or "") or "(no SeriesInstanceUID)"
    sop_uid = str(lenient(ds, "SOPInstanceUID", "") or "")
    try:
        instance = lenient(ds, "InstanceNumber")
        instance_number = int(instance) if instance not in (None, "") else None
    except (TypeError, ValueError):
        instance_number = None
    sfg = lenient(ds, "SharedFunctionalGroupsSequence")
    shared = sfg[0] if sfg else None
    per_frame = list(lenient(ds, "PerFrameFunctionalGroupsSequence") or [])
    if per_frame and len(per_frame) < n_frames:
        raise SkipFile(f"(5200,9230) Per-frame Functional Groups has {len(per_frame)} items for {n_frames} frames")
    split_base = {}
    for kw in _SPLIT_KEYWORDS:
        value = lenient(ds, kw)
        if value not in (None, ""):
            split_base[kw] = tuple(value) if isinstance(value, pydicom.multival.MultiValue) else value

    frames: list[FrameInfo] = []
    for f in range(n_frames):
        per = per_frame[f] if per_frame else None
        a = _frame_attributes(ds, per, shared, n_frames)
        orientation = (_float_list(a["iop"], 6, "(0020,0037) Image Orientation (Patient)")
                       if a["iop"] not in (None, "") else None)
        position = (_float_list(a["ipp"], 3, "(0020,0032) Image Position (Patient)")
                    if a["ipp"] not in (None, "") else None)
        spacing, spacing_note = _pixel_spacing(a["ps"])
        s, b = _rescale(a["slope"], a["intercept"])
        frames.append(
            FrameInfo(
                entry=entry,
                frame=f if n_frames > 1 else None,
                name=name if n_frames == 1 else f"{name} [frame {f + 1}]",
                series_uid=series_uid,
                rows=fmt.rows,
                cols=fmt.cols,
                orientation=orientation,
                position=position,
                pixel_spacing=spacing,
                slope=s,
                intercept=b,
                window=_window(a["wc"], a["ww"]),
                sop_uid=sop_uid if n_frames == 1 else f"{sop_uid}#{f}",
                instance_number=instance_number,
                split_keys=_split_keys(split_base, per),
                spacing_note=spacing_note,
            )
        )
    return frames


def _padding(ds: Dataset) -> tuple[int | None, int | None]:
    pad, pad_limit = lenient(ds, "PixelPaddingValue"), lenient(ds, "PixelPaddingRangeLimit")
    return (int(pad) if isinstance(pad, (int, np.integer)) else None,
            int(pad_limit) if isinstance(pad_limit, (int, np.integer)) else None)


def read_header(
    data: bytes, *, entry: int, name: str, budget: Budget | None = None, file_size: int | None = None,
    inflate_limit: int | None = None,
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
    inflate_limit : int, optional
        Bytes a deflated file may inflate to here (at most ``budget.max_inflated_bytes``).

    Returns
    -------
    FileHeader

    Raises
    ------
    SkipFile
        With the reason in words, for anything that is not a usable image.
    """
    budget = budget or Budget()
    p = _parse(data, budget, inflate_limit)
    ds = p.ds
    if _sequence_depth(ds, budget.max_sequence_depth) > budget.max_sequence_depth:
        raise SkipFile(f"refused: sequences nested more than {budget.max_sequence_depth} levels deep")
    _check_pixels_follow(p)
    fmt = _image_format(ds, budget)
    native = p.deflated or p.tsyntax in _NATIVE
    pixel_offset = None
    if native:
        pixel_offset = _native_pixel_offset(p, fmt, file_size)
    elif len(p.data) - p.offset < 16:
        raise SkipFile("truncated: the compressed (7FE0,0010) Pixel Data is missing")
    else:
        _check_fragments_hold_frames(p, fmt, file_size)
    frames = _frames(ds, fmt, entry=entry, name=name)
    _drop_large_elements(ds)
    padding_value, padding_limit = _padding(ds)
    return FileHeader(
        entry=entry,
        name=name,
        dataset=ds,
        transfer_syntax=UID(EXPLICIT_LE) if p.deflated else p.tsyntax,
        pixel_offset=pixel_offset,
        native=native,
        frames=frames,
        bits_allocated=fmt.bits_allocated,
        bits_stored=fmt.bits_stored,
        signed=fmt.signed,
        samples=fmt.samples,
        photometric=fmt.photometric,
        n_frames=fmt.n_frames,
        modality=str(lenient(ds, "Modality", "") or "").strip().upper() or "OT",
        # pydicom and PS3.3 C.11.1: a Modality LUT Sequence, when present, is what applies.
        modality_lut="ModalityLUTSequence" in ds,
        padding_value=padding_value,
        padding_limit=padding_limit,
        deflated=p.deflated,
    )


# ---------------------------------------------------------------------------------------
# Facts of 2-D images: the loop's rate, what the spacing means, the VOI LUT
# ---------------------------------------------------------------------------------------


def frame_time_ms(ds: Dataset) -> float | None:
    """Milliseconds between frames: Frame Time (0018,1063), else 1000 / Cine Rate (0018,0040), else
    1000 / Recommended Display Frame Rate (0008,2144), else the mean of Frame Time Vector (0018,1065)
    after its first entry (which is 0); None when none of them is a positive number."""
    for keyword, per_second in (("FrameTime", False), ("CineRate", True), ("RecommendedDisplayFrameRate", True)):
        try:
            value = float(_first(lenient(ds, keyword)))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            ms = 1000.0 / value if per_second else value
            if 1e-3 <= ms <= 1e5:
                return ms
    vector = lenient(ds, "FrameTimeVector")
    try:
        steps = [float(v) for v in list(vector or [])[1:]]
    except (TypeError, ValueError):
        return None
    mean = sum(steps) / len(steps) if steps else 0.0
    return mean if math.isfinite(mean) and 1e-3 <= mean <= 1e5 else None


def spacing_calibration(ds: Dataset) -> str:
    """What the in-plane spacing of a projection image means (see ``core.volume.CALIBRATIONS``).

    ``"calibrated"`` with a usable Pixel Spacing (0028,0030), which PS3.3 C.7.6.2.1.1 defines
    at the patient for projection images; ``"detector"`` with Imager Pixel Spacing (0018,1164)
    alone (distances at the detector: objects look larger by the geometric magnification);
    ``"pixels"`` otherwise.
    """
    for keyword, meaning in (("PixelSpacing", "calibrated"), ("ImagerPixelSpacing", "detector")):
        value = lenient(ds, keyword)
        try:
            numbers = [float(v) for v in value] if value not in (None, "") else []
        except (TypeError, ValueError):
            continue
        if len(numbers) == 2 and all(math.isfinite(v) and v > 0 for v in numbers):
            return meaning
    return "pixels"


def voi_lut_table(ds: Dataset, *, max_entries: int = 65536) -> tuple[float, np.ndarray] | None:
    """The first VOI LUT (0028,3010) as grey levels: ``(first, table)``, or None without a usable one.

    ``table`` is uint8 (0-255): ``table[i]`` is the displayed grey level of the modality value
    ``first + i``, values below ``first`` take ``table[0]`` and above the end ``table[-1]``
    (PS3.3 C.11.2.1.1). The LUT's own outputs come from ``pydicom.pixels.apply_voi`` and are
    scaled from its (0028,3002) LUT Descriptor's bit depth to 8 bits.
    """
    from pydicom.pixels import apply_voi

    items = lenient(ds, "VOILUTSequence")
    if not items:
        return None
    item = items[0]
    descriptor = lenient(item, "LUTDescriptor")
    if descriptor is None or "LUTData" not in item or len(descriptor) != 3:
        return None
    try:
        count, first, bits = (int(v) for v in descriptor)
    except (TypeError, ValueError):
        return None
    count = count or 65536
    if not (0 < count <= max_entries) or not (1 <= bits <= 16):
        return None
    signed = lenient(ds, "PixelRepresentation", 0) == 1
    if signed and first >= 32768:  # stored as US: the first value mapped is signed (PS3.3 C.11.2.1.1)
        first -= 65536
    probe = Dataset()
    probe.VOILUTSequence = items
    probe.PixelRepresentation = int(signed)
    probe.file_meta = pydicom.dataset.FileMetaDataset()  # apply_voi reads OW LUT Data by its endianness
    big = getattr(ds, "original_encoding", (None, True))[1] is False
    probe.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.2" if big else EXPLICIT_LE)
    probe.BitsStored = 16
    try:
        out = np.asarray(apply_voi(np.arange(first, first + count, dtype=np.int64), probe, index=0), dtype=float)
    except READ_ERRORS:
        return None
    if out.shape != (count,):
        return None
    table = np.rint(out / ((1 << bits) - 1) * 255).clip(0, 255).astype(np.uint8)
    return float(first), table
