"""A seeded, structure-aware fuzzer for `core.load_series` (shared by tests/test_fuzz.py and
benchmarks/fuzz_loader.py).

Valid files of every kind the loader reads (uncompressed CT in explicit and implicit VR and big
endian, RLE, JPEG 2000 and JPEG-LS CT, an enhanced multi-frame CT, nested sequences, a deflated
file, RGB in both planar configurations, YBR_FULL_422 (JPEG baseline and native), a PALETTE
COLOR image with segmented palettes, a colour loop of 5 frames, a MONOCHROME1 CR projection with
a VOI LUT, a secondary capture without position, pydicom's own example files, zips holding
several) are parsed once into their elements
(offsets of tags, VRs, length fields and values, items and fragments, nesting). A case is one
mutation of one of them, a pure function of ``(seed, index)``: bit flips, a cut at an element
boundary, a length field rewritten, an element duplicated, deleted or moved, a VR swapped
(to valid and invalid VRs), a value replaced by an extreme, a stray item tag, the file meta group
length or the transfer syntax changed, the fields of colour images, loops and projections set
to hurtful values (palettes that expand enormously or loop, 32-bit colour, odd planar
configurations and columns, huge frame counts, Frame Time 0, negative, NaN or 1e308). Lengths of the enclosing
items, sequences and file meta group are fixed up where the mutation means to keep the structure
valid.

`check_case` runs ``load_series`` on the mutated file together with one good file and returns
what is wrong, as `Finding`\\ s: an exception escaping, an input not accounted for, the good
file not loading, a reason that shows an exception class name, a non-printable character, a
long quoted value or a bytes repr, a case too slow or too hungry.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import random
import re
import struct
import sys
import time
import traceback
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "GOOD_NAME",
    "MUTATORS",
    "Case",
    "Finding",
    "address_space_cap",
    "check_case",
    "exception_names",
    "good_file",
    "make_case",
    "parse_elements",
    "reason_problems",
    "seeds",
]

GOOD_NAME = "good.dcm"
SLOW_SECONDS = 10.0
MAX_PEAK_BYTES = 1_000_000_000

# ---------------------------------------------------------------------------------------
# Seeds: valid files, built deterministically (fixed UIDs, fixed pixels)
# ---------------------------------------------------------------------------------------

_ROOT = "1.2.826.0.1.3680043.10.1402"  # a fixed UID root, so that every run builds the same bytes


def _ct_dataset(rows: int = 16, cols: int = 16, *, series: str = "1", instance: int = 1, z: float = 0.0):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    sop = f"{_ROOT}.{series}.{instance}"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyDate = "20260101"
    ds.Modality = "CT"
    ds.Manufacturer = "FUZZ"
    ds.PatientName = "FUZZ^SEED"
    ds.PatientID = "F-1"
    ds.SliceThickness = "2.0"
    ds.KVP = "120"
    ds.StudyInstanceUID = f"{_ROOT}.0"
    ds.SeriesInstanceUID = f"{_ROOT}.{series}"
    ds.SeriesDescription = "fuzz seed"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-8.0, -8.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [0.5, 0.75]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelPaddingValue = -2000
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    stored = (np.arange(rows * cols, dtype=np.int16).reshape(rows, cols) * 7 + 1000 + instance)
    ds.PixelData = stored.astype("<i2").tobytes()
    return ds, stored


def _write(ds, **kw) -> bytes:
    import pydicom

    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True, **kw)
    return buf.getvalue()


def _nested_dataset():
    """A CT slice whose header holds sequences three deep, with defined and undefined lengths."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds, _ = _ct_dataset(series="6")
    refs = []
    for k in range(2):
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = f"{_ROOT}.99.{k}"
        refs.append(item)
    ds.ReferencedImageSequence = Sequence(refs)
    leaf = Dataset()
    leaf.CodeValue, leaf.CodingSchemeDesignator, leaf.CodeMeaning = "113691", "DCM", "IVUS"
    mid = Dataset()
    mid.ConceptNameCodeSequence = Sequence([leaf])
    mid.ValueType = "CODE"
    top = Dataset()
    top.ContentSequence = Sequence([mid])
    top.RelationshipType = "CONTAINS"
    ds.ContentSequence = Sequence([top])
    ds.ContentSequence[0].ContentSequence[0]["ConceptNameCodeSequence"].is_undefined_length = False
    ds["ReferencedImageSequence"].is_undefined_length = False
    return ds


def _enhanced_dataset():
    """An enhanced CT of 3 frames with shared and per-frame functional groups."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage

    ds, _ = _ct_dataset(8, 8, series="7")
    for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleIntercept",
               "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth", "SliceThickness"):
        del ds[kw]
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = EnhancedCTImageStorage
    ds.NumberOfFrames = 3
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing, pm.SliceThickness = [0.5, 0.75], "3"
    po = Dataset()
    po.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    shared.PixelMeasuresSequence = Sequence([pm])
    shared.PlaneOrientationSequence = Sequence([po])
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = "40", "400"
    shared.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for k in range(3):
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [-4.0, -4.0, 3.0 * (2 - k)]
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = "1", "-1024", "HU"
        fc = Dataset()
        fc.InStackPositionNumber = 3 - k
        fc.DimensionIndexValues = [1, 3 - k]
        item.FrameContentSequence = Sequence([fc])
        item.PlanePositionSequence = Sequence([pp])
        item.PixelValueTransformationSequence = Sequence([pvt])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = (np.arange(3 * 64, dtype=np.int16) * 5 + 900).astype("<i2").tobytes()
    return ds


def _image_dataset(pixels: np.ndarray, *, series: str, modality: str = "OT", photometric: str = "MONOCHROME2",
                   planar: int = 0, sop_class: str = "1.2.840.10008.5.1.4.1.1.7", bits_stored: int | None = None,
                   **extra):
    """A file of something other than a CT slice (colour, loop, projection, capture): no position,
    orientation or spacing unless ``extra`` gives them; fixed UIDs. ``pixels`` is (R, C) or (R, C, 3),
    or (F, R, C[, 3]) for several frames; uint8 or uint16."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    frames = pixels.ndim == (4 if colour else 3)
    sop = f"{_ROOT}.{series}.1"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientName, ds.PatientID = "FUZZ^SEED", "F-1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{_ROOT}.0", f"{_ROOT}.{series}"
    ds.Modality = modality
    ds.SeriesDescription = "fuzz seed"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = planar
    shape = pixels.shape[1:] if frames else pixels.shape
    ds.Rows, ds.Columns = shape[0], shape[1]
    if frames:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for key, value in extra.items():
        setattr(ds, key, value)
    data = pixels.astype(pixels.dtype.newbyteorder("<"))
    if colour and planar == 1:  # RRR...GGG...BBB per frame
        data = np.moveaxis(data, -1, -3)
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    return ds


def _colour_ramp(rows: int, cols: int, frames: int = 0) -> np.ndarray:
    """(R, C, 3) or (F, R, C, 3) uint8 whose channels differ (so planar mix-ups show)."""
    r = np.arange(rows * cols, dtype=np.int32).reshape(rows, cols)
    rgb = np.stack([r * 3 % 256, r * 7 % 256, 255 - r % 256], axis=-1).astype(np.uint8)
    return np.stack([np.roll(rgb, f, axis=1) for f in range(frames)]) if frames else rgb


_PALETTE = {
    # 256 entries of 16 bits; red: a discrete entry then a linear segment to 65535; green: two discrete
    # entries, a linear segment of 126, then an indirect segment copying those two segments again;
    # blue: constant (discrete).
    "red": [0, 1, 0, 1, 255, 65535],
    "green": [0, 2, 0x8000, 0x8001, 1, 126, 0x9000, 2, 2, 0, 0],
    "blue": [0, 256] + [0xFFFF] * 256,
}


def _palette_dataset():
    """A PALETTE COLOR image with segmented palettes (discrete, linear and indirect segments)."""
    index = np.arange(256, dtype=np.uint8).reshape(16, 16)
    extra = {}
    for colour, words in _PALETTE.items():
        name = colour.capitalize()
        extra[f"{name}PaletteColorLookupTableDescriptor"] = [256, 0, 16]
        extra[f"Segmented{name}PaletteColorLookupTableData"] = np.array(words, "<u2").tobytes()
    return _image_dataset(index, series="20", modality="US", photometric="PALETTE COLOR",
                          sop_class="1.2.840.10008.5.1.4.1.1.6.1", **extra)


def _cr_dataset():
    """A MONOCHROME1 CR projection at the detector, with a VOI LUT Sequence."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.LUTDescriptor = [256, 100, 12]
    item.LUTData = np.array([i * 16 for i in range(256)], "<u2").tobytes()
    pixels = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 30) % 4096
    return _image_dataset(pixels, series="23", modality="CR", photometric="MONOCHROME1", bits_stored=12,
                          sop_class="1.2.840.10008.5.1.4.1.1.1", ImagerPixelSpacing=[0.2, 0.15],
                          VOILUTSequence=Sequence([item]), WindowCenter="300", WindowWidth="400")


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            zf.writestr(info, data)
    return buf.getvalue()


@dataclass(frozen=True)
class Seed:
    """A valid input and how to mutate it."""

    label: str
    data: bytes
    members: tuple[tuple[str, str], ...] = ()
    """For a zip: (member name, label of the seed it holds), in order."""
    compression: int = zipfile.ZIP_DEFLATED

    @property
    def is_zip(self) -> bool:
        return bool(self.members)


@lru_cache(maxsize=1)
def seeds() -> dict[str, Seed]:
    """Every seed by label (built once per process; the same bytes in every run)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGLSLossless,
        RLELossless,
    )

    out: dict[str, Seed] = {}

    def add(label: str, data: bytes) -> None:
        out[label] = Seed(label, data)

    ds, _ = _ct_dataset(series="1")
    add("ct_explicit_le", _write(ds))
    ds, _ = _ct_dataset(series="2")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    add("ct_implicit_le", _write(ds))
    ds, stored = _ct_dataset(series="3")
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = stored.astype(">i2").tobytes()
    add("ct_big_endian", _write(ds))
    ds, _ = _ct_dataset(series="4")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    add("ct_deflated", _write(ds))
    for k, (label, syntax) in enumerate((("ct_rle", RLELossless), ("ct_j2k", JPEG2000Lossless),
                                         ("ct_jpegls", JPEGLSLossless))):
        ds, _ = _ct_dataset(32, 32, series=f"5{k}")  # openjpeg's defaults need 32 x 32 at least
        ds.compress(syntax, generate_instance_uid=False)  # pydicom would make a new random UID
        add(label, _write(ds))
    add("ct_nested_sequences", _write(_nested_dataset()))
    add("enhanced_ct_3_frames", _write(_enhanced_dataset()))
    ds = _enhanced_dataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.SeriesInstanceUID = ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{_ROOT}.8"
    add("enhanced_ct_implicit", _write(ds))
    for planar in (0, 1):
        add(f"rgb_planar_{planar}", _write(_image_dataset(_colour_ramp(6, 8), series=f"2{planar}", photometric="RGB",
                                                          planar=planar)))
    add("palette_segmented", _write(_palette_dataset()))
    add("colour_loop_5_frames", _write(_image_dataset(_colour_ramp(6, 8, 5), series="24", modality="US",
                                                      photometric="RGB", sop_class="1.2.840.10008.5.1.4.1.1.3.1",
                                                      FrameTime="40", CineRate=25)))
    add("cr_monochrome1", _write(_cr_dataset()))
    add("sc_without_position", _write(_image_dataset(np.arange(70, dtype=np.uint8).reshape(7, 10), series="25",
                                                     modality="CT")))
    for name in ("CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "MR_small_jpeg_ls_lossless.dcm",
                 "JPEG2000.dcm", "MR_small_RLE.dcm", "rtplan.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm",
                 "SC_ybr_full_422_uncompressed.dcm", "SC_rgb_rle_2frame.dcm"):
        path = get_testdata_file(name, download=False)
        if path is not None:
            with open(path, "rb") as fh:
                add(f"pydicom:{name}", fh.read())
    del pydicom
    members = (("a/ct.dcm", "ct_explicit_le"), ("a/rle.dcm", "ct_rle"), ("b/enhanced.dcm", "enhanced_ct_3_frames"),
               ("b/implicit", "ct_implicit_le"))
    out["zip_deflated"] = Seed("zip_deflated", _zip([(n, out[s].data) for n, s in members]), members)
    members = (("x/nested.dcm", "ct_nested_sequences"), ("x/j2k.dcm", "ct_j2k"), ("y/dfl.dcm", "ct_deflated"))
    out["zip_stored"] = Seed("zip_stored", _zip([(n, out[s].data) for n, s in members], zipfile.ZIP_STORED),
                             members, zipfile.ZIP_STORED)
    return out


@lru_cache(maxsize=1)
def good_file() -> tuple[tuple[str, bytes], np.ndarray]:
    """The good file loaded beside every case, and its expected voxels (1, rows, cols) in HU."""
    ds, stored = _ct_dataset(12, 10, series="900")
    return (GOOD_NAME, _write(ds)), (stored.astype(np.int32) - 1024)[None]


# ---------------------------------------------------------------------------------------
# Parsing the elements of a file (once per seed)
# ---------------------------------------------------------------------------------------

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
UNDEFINED = 0xFFFFFFFF


@dataclass(frozen=True)
class Element:
    """One element, item, delimiter or fragment of a file, by its offsets."""

    offset: int
    """Where its tag starts."""
    tag: int
    vr: bytes | None
    """The explicit VR bytes; None in implicit VR and for items and delimiters."""
    length_at: int
    length_size: int
    length: int
    value_at: int
    end: int
    """Just after it (after its delimiter, for undefined lengths)."""
    depth: int
    parents: tuple[int, ...]
    """Indices of the enclosing sequences and items, outermost first."""
    kind: str
    """"element", "item", "delimiter" or "fragment"."""
    little: bool
    meta: bool

    @property
    def name(self) -> str:
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"


def _dict_vr(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


class _Walker:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.out: list[Element] = []

    def _u16(self, pos: int, little: bool) -> int:
        return struct.unpack_from("<H" if little else ">H", self.buf, pos)[0]

    def _u32(self, pos: int, little: bool) -> int:
        return struct.unpack_from("<I" if little else ">I", self.buf, pos)[0]

    def dataset(self, pos: int, end: int, *, explicit: bool, little: bool, depth: int, parents: tuple[int, ...],
                meta: bool = False, stop_group: int | None = None) -> int:
        """Walk elements from ``pos`` to ``end`` (or an item delimiter); returns where it stopped."""
        while pos + 8 <= end:
            group, elem = self._u16(pos, little), self._u16(pos + 2, little)
            if stop_group is not None and group != stop_group:
                return pos
            tag = group << 16 | elem
            if group == 0xFFFE:
                length = self._u32(pos + 4, little)
                if elem == 0xE00D:  # item delimiter: the end of this item's dataset
                    self.out.append(Element(pos, tag, None, pos + 4, 4, length, pos + 8, pos + 8, depth, parents,
                                            "delimiter", little, meta))
                    return pos + 8
                raise ValueError(f"unexpected {tag:08X} at {pos}")
            if explicit:
                vr = self.buf[pos + 4:pos + 6]
                if vr in _LONG_VRS:
                    length_at, size, header = pos + 8, 4, 12
                else:
                    length_at, size, header = pos + 6, 2, 8
            else:
                vr, length_at, size, header = None, pos + 4, 4, 8
            length = self._u32(length_at, little) if size == 4 else self._u16(length_at, little)
            index = len(self.out)
            self.out.append(None)  # placeholder, filled once the end is known
            value_at = pos + header
            is_sq = vr == b"SQ" or (vr is None and _dict_vr(tag) == "SQ") or (
                length == UNDEFINED and tag != 0x7FE00010)
            if tag == 0x7FE00010 and length == UNDEFINED:
                stop = self.items(value_at, end, explicit=explicit, little=little, depth=depth + 1,
                                  parents=parents + (index,), fragments=True, undefined=True)
            elif is_sq:
                if length == UNDEFINED:
                    stop = self.items(value_at, end, explicit=explicit, little=little, depth=depth + 1,
                                      parents=parents + (index,), undefined=True)
                else:
                    self.items(value_at, value_at + length, explicit=explicit, little=little, depth=depth + 1,
                               parents=parents + (index,), undefined=False)
                    stop = value_at + length
            else:
                stop = value_at + length
            self.out[index] = Element(pos, tag, vr, length_at, size, length, value_at, stop, depth, parents,
                                      "element", little, meta)
            pos = stop
        return pos

    def items(self, pos: int, end: int, *, explicit: bool, little: bool, depth: int, parents: tuple[int, ...],
              undefined: bool, fragments: bool = False) -> int:
        while pos + 8 <= end:
            group, elem = self._u16(pos, little), self._u16(pos + 2, little)
            length = self._u32(pos + 4, little)
            tag = group << 16 | elem
            if tag == 0xFFFEE0DD:
                self.out.append(Element(pos, tag, None, pos + 4, 4, length, pos + 8, pos + 8, depth, parents,
                                        "delimiter", little, False))
                return pos + 8
            if tag != 0xFFFEE000:
                raise ValueError(f"expected an item at {pos}, found {tag:08X}")
            index = len(self.out)
            self.out.append(None)
            if fragments:
                stop = pos + 8 + length
            elif length == UNDEFINED:
                stop = self.dataset(pos + 8, end, explicit=explicit, little=little, depth=depth + 1,
                                    parents=parents + (index,))
            else:
                self.dataset(pos + 8, pos + 8 + length, explicit=explicit, little=little, depth=depth + 1,
                             parents=parents + (index,))
                stop = pos + 8 + length
            self.out[index] = Element(pos, tag, None, pos + 4, 4, length, pos + 8, stop, depth, parents,
                                      "fragment" if fragments else "item", little, False)
            pos = stop
        if undefined:
            raise ValueError("undefined length without its delimiter")
        return pos


@dataclass(frozen=True)
class Parsed:
    """A DICOM file laid out for mutation: ``plain`` holds the body inflated for deflated files."""

    plain: bytes
    elements: tuple[Element, ...]
    body_at: int
    explicit: bool
    little: bool
    deflated: bool

    def finish(self, plain: bytes | bytearray, *, body_at: int | None = None) -> bytes:
        """The file from a (mutated) plain form: a deflated body is deflated again (``body_at``:
        where the body starts when the file meta group has changed size)."""
        if not self.deflated:
            return bytes(plain)
        at = self.body_at if body_at is None else body_at
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        return bytes(plain[:at]) + packer.compress(bytes(plain[at:])) + packer.flush()


_TS = {
    "1.2.840.10008.1.2": (False, True),
    "1.2.840.10008.1.2.2": (True, False),
}


@lru_cache(maxsize=64)
def parse_elements(data: bytes) -> Parsed:
    """Parse a valid DICOM file (with preamble) into its elements."""
    if data[128:132] != b"DICM":
        raise ValueError("seeds have a preamble")
    w = _Walker(data)
    body = w.dataset(132, len(data), explicit=True, little=True, depth=0, parents=(), meta=True, stop_group=0x0002)
    ts = next(data[e.value_at:e.value_at + e.length] for e in w.out if e.tag == 0x00020010)
    ts = ts.rstrip(b"\x00 ").decode()
    deflated = ts == "1.2.840.10008.1.2.1.99"
    explicit, little = _TS.get(ts, (True, True))
    plain = data
    if deflated:
        plain = data[:body] + zlib.decompress(data[body:], -15)
        w2 = _Walker(plain)
        w2.out = list(w.out)
        w = w2
    w.dataset(body, len(plain), explicit=explicit, little=little, depth=0, parents=())
    return Parsed(plain, tuple(w.out), body, explicit, little, deflated)


# ---------------------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------------------


class _Edit:
    """A byte buffer edited with its structure kept: splices fix up the defined lengths of the
    enclosing items and sequences and of the file meta group."""

    def __init__(self, parsed: Parsed) -> None:
        self.p = parsed
        self.buf = bytearray(parsed.plain)
        self.meta_len = next((e for e in parsed.elements if e.tag == 0x00020000), None)
        self.grown: dict[int, int] = {}  # by how much each enclosing element has grown so far
        self.meta_grown = 0

    def put_length(self, e: Element, value: int) -> None:
        fmt = ("<" if e.little else ">") + ("I" if e.length_size == 4 else "H")
        self.buf[e.length_at:e.length_at + e.length_size] = struct.pack(fmt, value & (0xFFFFFFFF if e.length_size == 4
                                                                                       else 0xFFFF))

    def splice(self, start: int, stop: int, new: bytes, parents: tuple[int, ...], meta: bool) -> None:
        """Replace buf[start:stop] by ``new`` (offsets of the original), fixing enclosing lengths."""
        delta = len(new) - (stop - start)
        self.buf[start:stop] = new
        for i in parents:
            e = self.p.elements[i]
            self.grown[i] = self.grown.get(i, 0) + delta
            if e.length != UNDEFINED:
                self.put_length(e, e.length + self.grown[i])
        if meta:
            self.meta_grown += delta
        if meta and self.meta_len is not None and delta:
            at = self.meta_len.value_at
            old = struct.unpack_from("<I", self.buf, at)[0]
            struct.pack_into("<I", self.buf, at, (old + delta) & 0xFFFFFFFF)

    def set_value(self, e: Element, value: bytes) -> None:
        """The element's value replaced, its own length set to the new length."""
        if e.length_size == 2 and len(value) > 0xFFFF:
            value = value[:0xFFFE]
        stop = e.value_at + (e.length if e.length != UNDEFINED else 0)
        if e.length == UNDEFINED:
            stop = e.end
        self.splice(e.value_at, stop, value, e.parents, e.meta)
        self.put_length(e, len(value))

    def done(self) -> bytes:
        return self.p.finish(self.buf, body_at=self.p.body_at + self.meta_grown)


IMPORTANT = {
    0x00020000, 0x00020010, 0x00080016, 0x00080018, 0x00080060, 0x00080005, 0x00080008, 0x0020000E, 0x00200013,
    0x00200032, 0x00200037, 0x00280002, 0x00280004, 0x00280008, 0x00280010, 0x00280011, 0x00280030, 0x00280100,
    0x00280101, 0x00280102, 0x00280103, 0x00280120, 0x00280121, 0x00281050, 0x00281051, 0x00281052, 0x00281053,
    0x00180050, 0x00180088, 0x7FE00010, 0x52009229, 0x52009230, 0x00289110, 0x00209113, 0x00209116, 0x00289145,
    0x00209111, 0x00289132, 0x00280009,
    # colour, loops, projections: planar configuration, palettes (descriptors, data, segmented data),
    # frame time, cine rate, frame time vector, display rate, imager pixel spacing, VOI LUT
    0x00280006, 0x00281101, 0x00281102, 0x00281103, 0x00281201, 0x00281202, 0x00281203, 0x00281221, 0x00281222,
    0x00281223, 0x00181063, 0x00180040, 0x00181065, 0x00082144, 0x00181164, 0x00283010, 0x00283002, 0x00283006,
}


def _vr_of(e: Element) -> str:
    if e.vr is not None:
        try:
            return e.vr.decode("ascii")
        except UnicodeDecodeError:
            return "UN"
    vr = _dict_vr(e.tag)
    return {"US or SS": "US", "OB or OW": "OW", "US or OW": "US", "US or SS or OW": "US"}.get(vr, vr)


def _pick(rng: random.Random, elements: list[Element]) -> Element:
    important = [e for e in elements if e.tag in IMPORTANT]
    if important and rng.random() < 0.7:
        return rng.choice(important)
    return rng.choice(elements)


_DS_EXTREMES = [b"", b"NaN", b"nan", b"inf", b"-inf", b"Infinity", b"1e400", b"-1e400", b"1e-400", b"-0", b"0",
                b"0\\0", b"0\\0\\0\\0\\0\\0", b"abc", b"1.5.5", b"  ", b"\\", b"\\\\", b"-1", b"-1\\-1", b"+",
                b"1" * 64, b"9" * 16, b"1e308\\1e308", b"0x10", b"1,5", b"\xff\xfe", b"1\\2\\3\\4\\5\\6\\7\\8",
                b"nan\\nan\\nan", b"1\x00", b"\x001"]
_IS_EXTREMES = [b"", b"99999999999999999999", b"-2147483649", b"2147483648", b"1.5", b"x", b"0", b"-1", b"NaN",
                b"1e3", b"+", b"  ", b"0\\0", b"4294967296", b"-0", b"\xff"]
_TEXT_EXTREMES = [b"", b"\x00" * 8, b"\x1b[31mred\x07", b"\xff\xfe\xc3\x28", b"'\"'\"", b"A\\B" * 40,
                  b"x" * 1024, b"\r\n\t", b"<script>alert(1)</script>", b"%s%s%n", b"\xe9\xe8", b"{}" * 20,
                  b"\\" * 10]
_UID_EXTREMES = [b"", b"\x00" * 4, b"1.2." * 30, b"abc", b"1..2", b"\xc3\xa9", b"0", b" " * 10,
                 b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.5", b"1.2.3"]


def _binary_extremes(vr: str) -> list[bytes]:
    s16 = [0, 1, 0x7FFF, 0x8000, 0xFFFF, 2, 3, 7, 8, 9, 15, 16, 17, 32, 64]
    s32 = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000, 1 << 24]
    f = [float("nan"), float("inf"), float("-inf"), -0.0, 1e308, -1e308, 5e-324, 0.0]
    if vr in ("US", "SS"):
        return [struct.pack("<H", v) for v in s16] + [b"", b"\x01", b"\x01\x00\x01"]
    if vr in ("UL", "SL", "AT"):
        return [struct.pack("<I", v) for v in s32] + [b"", b"\x01\x02", b"\x00" * 6]
    if vr == "FD":
        return [struct.pack("<d", v) for v in f] + [b"", b"\x00" * 4]
    if vr == "FL":
        return [struct.pack("<f", v) for v in (*f[:4], 3.4e38, -3.4e38)] + [b"", b"\x00" * 6]
    return [b"", b"\x00", b"\xff" * 3, b"\x00" * 64, b"\xff" * 4096]


def _extremes(vr: str) -> list[bytes]:
    if vr == "DS":
        return _DS_EXTREMES
    if vr == "IS":
        return _IS_EXTREMES
    if vr == "UI":
        return _UID_EXTREMES
    if vr in ("US", "SS", "UL", "SL", "AT", "FD", "FL"):
        return _binary_extremes(vr)
    if vr in ("OB", "OW", "UN", "OF", "OD", "OL", "OV", "SQ"):
        return [b"", b"\x00", b"\x00\x01\x02", b"\xff" * 16, b"\x00" * 4096]
    return _TEXT_EXTREMES


def _swap_big(value: bytes, e: Element, vr: str) -> bytes:
    """Binary extremes are written little endian: reverse each value for big-endian files."""
    if e.little or vr not in ("US", "SS", "UL", "SL", "FD", "FL"):
        return value
    size = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FD": 8, "FL": 4}[vr]
    whole = len(value) - len(value) % size
    return b"".join(value[i:i + size][::-1] for i in range(0, whole, size)) + value[whole:]


Mutator = Callable[[random.Random, Parsed, int], tuple[bytes, str]]


def mut_bitflip(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """1 to 8 bits flipped, half the time within one element's header or value. For deflated
    files, mostly in the inflated body (deflated again), else in the deflate stream itself."""
    in_stream = p.deflated and rng.random() < 0.3
    buf = bytearray(p.finish(p.plain) if in_stream else p.plain)
    n = rng.choice([1, 1, 1, 2, 3, 8])
    if rng.random() < 0.5 and not in_stream:
        e = _pick(rng, list(p.elements))
        lo, hi = e.offset, min(max(e.value_at + 8, e.offset + 12), len(buf))
    else:
        lo, hi = 0, len(buf)
    flips = sorted({(rng.randrange(lo, hi), rng.randrange(8)) for _ in range(n)})
    for at, bit in flips:
        buf[at] ^= 1 << bit
    where = "in the deflate stream " if in_stream else ""
    return (bytes(buf) if in_stream else p.finish(buf)), f"bit flips {where}at " + ", ".join(
        f"{at}:{bit}" for at, bit in flips)


def mut_truncate(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """Cut at an element boundary (before its tag, inside its header, before, inside or at the end
    of its value), walking through every boundary of the seed as the index grows."""
    cuts = sorted({x for e in p.elements for x in (e.offset, e.offset + 2, e.offset + 4, e.length_at, e.value_at,
                                                   (e.value_at + e.end) // 2, e.end - 1) if 0 < x < len(p.plain)})
    at = cuts[(index // len(MUTATORS)) % len(cuts)] if rng.random() < 0.8 else rng.randrange(1, len(p.plain))
    if p.deflated and at > p.body_at:
        return p.finish(p.plain[:at]), f"inflated body cut at byte {at} of {len(p.plain)}, deflated again"
    return p.plain[:at], f"cut at byte {at} of {len(p.plain)}"


_LENGTHS = ["zero", "odd", "minus one", "plus two", "past the end", "undefined", "huge", "max"]


def mut_length(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """A length field (element, item or fragment) rewritten, nothing else fixed."""
    e = _pick(rng, list(p.elements))
    ed = _Edit(p)
    how = rng.choice(_LENGTHS)
    full = 0xFFFFFFFF if e.length_size == 4 else 0xFFFF
    value = {
        "zero": 0, "odd": (e.length | 1) if e.length != UNDEFINED else 1, "minus one": e.length - 1,
        "plus two": e.length + 2, "past the end": len(p.plain) - e.value_at + rng.choice([1, 2, 100, 65536]),
        "undefined": full, "huge": 0x7FFFFFF0 if e.length_size == 4 else 0xFFF0, "max": full - 1,
    }[how]
    ed.put_length(e, value)
    return ed.done(), f"length of {e.kind} {e.name} at {e.offset} ({e.length}) set to {value} ({how})"


def _siblings(p: Parsed, e: Element) -> list[Element]:
    return [x for x in p.elements if x.parents == e.parents and x.kind == e.kind and x.meta == e.meta]


def mut_duplicate(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """An element (or item) duplicated, right after itself or at the end of its container."""
    e = _pick(rng, [x for x in p.elements if x.kind in ("element", "item")])
    ed = _Edit(p)
    chunk = p.plain[e.offset:e.end]
    sibs = _siblings(p, e)
    at = e.end if rng.random() < 0.6 or not sibs else sibs[-1].end
    ed.splice(at, at, chunk, e.parents, e.meta)
    return ed.done(), f"{e.kind} {e.name} at {e.offset} duplicated at {at}"


def mut_reorder(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """Two neighbouring elements swapped, or one moved to the end (after the pixel data)."""
    e = _pick(rng, [x for x in p.elements if x.kind in ("element", "item")])
    sibs = _siblings(p, e)
    ed = _Edit(p)
    nxt = next((x for x in sibs if x.offset == e.end), None)
    if nxt is not None and rng.random() < 0.6:
        ed.splice(e.offset, nxt.end, p.plain[nxt.offset:nxt.end] + p.plain[e.offset:e.end], e.parents, e.meta)
        return ed.done(), f"{e.name} at {e.offset} swapped with the next, {nxt.name}"
    last = sibs[-1]
    if last is e:
        ed.splice(e.offset, e.end, b"", e.parents, e.meta)
        return ed.done(), f"{e.kind} {e.name} at {e.offset} deleted"
    chunk = p.plain[e.offset:e.end]
    ed.splice(last.end, last.end, chunk, e.parents, e.meta)
    ed.splice(e.offset, e.end, b"", e.parents, e.meta)
    return ed.done(), f"{e.name} at {e.offset} moved after {last.name} (the last of its level)"


def mut_delete(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """An element or item removed, enclosing lengths fixed."""
    e = _pick(rng, [x for x in p.elements if x.kind in ("element", "item", "fragment")])
    ed = _Edit(p)
    ed.splice(e.offset, e.end, b"", e.parents, e.meta)
    return ed.done(), f"{e.kind} {e.name} at {e.offset} deleted"


_VALID_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
              b"OF", b"OL", b"OW", b"OV", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
              b"UL", b"UN", b"UR", b"US", b"UT", b"UV"]
_INVALID_VRS = [b"\x00\x00", b"NO", b"ZZ", b"  ", b"\xff\xff", b"ob", b"X\x00"]


def mut_vr(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """A VR swapped: re-encoded with the new VR's length field, or just its two bytes overwritten;
    to valid and invalid VRs. In implicit VR files, an element is re-encoded with an explicit VR."""
    cands = [x for x in p.elements if x.kind == "element"]
    e = _pick(rng, cands)
    new = rng.choice(_VALID_VRS if rng.random() < 0.6 else _INVALID_VRS)
    ed = _Edit(p)
    bo = "<" if e.little else ">"
    if e.vr is not None and rng.random() < 0.5:
        ed.buf[e.offset + 4:e.offset + 6] = new
        return ed.done(), f"VR of {e.name} at {e.offset} overwritten {e.vr!r} -> {new!r} (header not re-encoded)"
    length = e.length if e.length != UNDEFINED else UNDEFINED
    tag = p.plain[e.offset:e.offset + 4]
    if new in _LONG_VRS or (new in _INVALID_VRS and rng.random() < 0.5):
        header = tag + new + b"\x00\x00" + struct.pack(bo + "I", length)
    else:
        header = tag + new + struct.pack(bo + "H", min(length, 0xFFFF))
    ed.splice(e.offset, e.value_at, header, e.parents, e.meta)
    return ed.done(), f"{e.name} at {e.offset} re-encoded with VR {new!r} (was {e.vr!r})"


def mut_value(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """A value replaced by an extreme for its VR (lengths fixed up)."""
    cands = [x for x in p.elements if x.kind == "element" and x.tag != 0x00020000]
    e = _pick(rng, cands)
    vr = _vr_of(e)
    value = rng.choice(_extremes(vr))
    if rng.random() < 0.1:
        value = rng.choice([b"", b"x" * rng.choice([1, 65534, 100_001]), b"\x00" * rng.choice([3, 1_000_000])])
    ed = _Edit(p)
    ed.set_value(e, _swap_big(value, e, vr))
    shown = value if len(value) <= 24 else value[:12] + f"... ({len(value)} bytes)".encode()
    return ed.done(), f"value of {e.name} ({vr}) at {e.offset} set to {shown!r}"


def mut_stray_item(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """An item or delimiter tag where an element belongs (pydicom reads it with VR "NONE")."""
    cands = [x for x in p.elements if x.kind == "element"]
    e = rng.choice(cands)
    bo = "<" if e.little else ">"
    elem = rng.choice([0xE000, 0xE00D, 0xE0DD])
    length = rng.choice([0, 4, UNDEFINED])
    chunk = struct.pack(bo + "HHI", 0xFFFE, elem, length) + (b"\x00" * 4 if length == 4 else b"")
    ed = _Edit(p)
    at = e.offset if rng.random() < 0.5 else e.end
    ed.splice(at, at, chunk, e.parents, e.meta)
    return ed.done(), f"stray (FFFE,{elem:04X}) length {length:#x} inserted at {at}, by {e.name}"


_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
             "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
             "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.100", "1.2.3.4", ""]


def mut_syntax(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """The transfer syntax changed (the body is left as it is)."""
    e = next(x for x in p.elements if x.tag == 0x00020010)
    uid = rng.choice(_SYNTAXES).encode()
    if len(uid) % 2:
        uid += b"\x00"
    ed = _Edit(p)
    fix = rng.random() < 0.8
    if fix:
        ed.set_value(e, uid)
    else:
        ed.buf[e.value_at:e.value_at + e.length] = (uid + b"\x00" * e.length)[:e.length]
    kept = "" if fix else " (meta lengths kept)"
    return ed.done(), f"transfer syntax set to {uid.rstrip(bytes(1)).decode()!r}{kept}"


def mut_meta_length(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """(0002,0000) File Meta Information Group Length made wrong."""
    e = next((x for x in p.elements if x.tag == 0x00020000), None)
    if e is None:
        return mut_bitflip(rng, p, index)
    old = struct.unpack_from("<I", p.plain, e.value_at)[0]
    new = rng.choice([0, 1, old - 2, old + 2, old + 1, old - 12, old * 2, len(p.plain), 0x7FFFFFFF, 0xFFFFFFFF])
    ed = _Edit(p)
    struct.pack_into("<I", ed.buf, e.value_at, new & 0xFFFFFFFF)
    return ed.done(), f"(0002,0000) group length {old} set to {new & 0xFFFFFFFF}"


def mut_pixels(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """Pixel data made inconsistent: fragments, offset table, RLE header, codestream bytes, size."""
    px = next((x for x in p.elements if x.tag == 0x7FE00010 and x.depth == 0), None)
    if px is None:
        return mut_value(rng, p, index)
    frags = [x for x in p.elements if x.kind == "fragment"]
    ed = _Edit(p)
    bo = "<" if px.little else ">"
    if not frags:
        how = rng.choice(["shorter", "odd", "longer", "empty", "garbage"])
        n = px.length
        value = {"shorter": p.plain[px.value_at:px.value_at + n // 2], "odd": p.plain[px.value_at:px.value_at + n - 1],
                 "longer": p.plain[px.value_at:px.end] * 2, "empty": b"",
                 "garbage": bytes(rng.randrange(256) for _ in range(min(n, 64)))}[how]
        ed.set_value(px, value)
        return ed.done(), f"native pixel data {how} ({len(value)} bytes of {n})"
    how = rng.choice(["flip codestream", "offset table", "rle header", "drop fragment", "fragment bytes",
                      "no delimiter", "codestream size"])
    if how == "codestream size":
        size = rng.choice([0, 1, 3, 33, 255, 4096])
        found = _set_codestream_size(ed.buf, frags, size)
        if found:
            return ed.done(), f"{found} image size in the codestream set to {size} x {size}"
    if how == "flip codestream":
        f = rng.choice(frags[1:] or frags)
        flips = sorted({rng.randrange(f.value_at, max(f.end, f.value_at + 1)) for _ in range(rng.choice([1, 4, 32]))})
        for at in flips:
            if at < len(ed.buf):
                ed.buf[at] ^= 1 << rng.randrange(8)
        return ed.done(), f"{len(flips)} bytes flipped in the fragment at {f.offset}"
    if how == "offset table":
        bot = frags[0]
        table = struct.pack(bo + "I", rng.choice([0, 4, 0x7FFFFFF0, 0xFFFFFFFF, len(p.plain)])) * rng.choice([1, 3])
        ed.set_value(bot, table)
        return ed.done(), f"basic offset table set to {table.hex()}"
    if how == "rle header" and len(frags) > 1 and frags[1].end - frags[1].value_at >= 64:
        f = frags[1]
        value = rng.choice([0, 1, 15, 16, 255, 0xFFFFFFFF])
        slot = rng.randrange(16)
        struct.pack_into("<I", ed.buf, f.value_at + 4 * slot, value)
        return ed.done(), f"RLE header word {slot} of the first frame set to {value}"
    if how == "drop fragment" and len(frags) > 1:
        f = rng.choice(frags[1:])
        ed.splice(f.offset, f.end, b"", f.parents, False)
        return ed.done(), f"fragment at {f.offset} removed"
    if how == "no delimiter":
        d = next((x for x in p.elements if x.kind == "delimiter" and x.parents and x.parents[-1] ==
                  p.elements.index(px)), None)
        if d is not None:
            ed.splice(d.offset, d.end, b"", (), False)
            return ed.done(), "sequence delimiter after the pixel fragments removed"
    f = rng.choice(frags[1:] or frags)
    value = rng.choice([b"", b"\xff\xd8", b"\x00" * 3, p.plain[f.value_at:f.value_at + 10]])
    ed.set_value(f, value)
    return ed.done(), f"fragment at {f.offset} replaced by {len(value)} bytes"


def _set_codestream_size(buf: bytearray, frags: list[Element], size: int) -> str | None:
    """Rewrite the width and height a JPEG 2000 (SIZ), JPEG-LS (SOF55) or JPEG (SOF0-3) codestream
    declares in the first frame's fragment. Returns the codestream's kind, None if none was found."""
    if len(frags) < 2:
        return None
    f = frags[1]
    head = bytes(buf[f.value_at:min(f.end, f.value_at + 4096)])
    at = head.find(b"\xff\x51")
    if at >= 0 and head.startswith(b"\xff\x4f"):
        struct.pack_into(">II", buf, f.value_at + at + 6, size, size)  # Xsiz, Ysiz
        return "JPEG 2000"
    for marker, kind in ((b"\xff\xf7", "JPEG-LS"), (b"\xff\xc0", "JPEG"), (b"\xff\xc1", "JPEG"),
                         (b"\xff\xc3", "JPEG")):
        at = head.find(marker)
        if at >= 0:
            struct.pack_into(">HH", buf, f.value_at + at + 5, min(size, 0xFFFF), min(size, 0xFFFF))  # Y, X
            return kind
    return None


def mut_frames(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """Number of Frames and the per-frame items made to disagree (other files: value extremes)."""
    nf = next((x for x in p.elements if x.tag == 0x00280008), None)
    if nf is None:
        return mut_value(rng, p, index)
    ed = _Edit(p)
    if rng.random() < 0.6:
        value = rng.choice([b"0 ", b"-1", b"1 ", b"2 ", b"4 ", b"1e9", b"abc ", b"3.5 ", b"", b"99999999",
                            b"2147483648", b" 3", b"3\\3 "])
        ed.set_value(nf, value)
        return ed.done(), f"(0028,0008) Number of Frames set to {value!r}"
    seq = next((i for i, x in enumerate(p.elements) if x.tag == 0x52009230), None)
    items = [x for x in p.elements if x.kind == "item" and seq is not None and x.parents and x.parents[-1] == seq]
    if not items:
        return mut_value(rng, p, index)
    f = rng.choice(items)
    ed.splice(f.offset, f.end, b"", f.parents, False)
    return ed.done(), f"per-frame functional group item at {f.offset} removed"


def _encode(p: Parsed, tag: int, vr: str, value: bytes) -> bytes:
    """One top-level element in the file's encoding (an even value)."""
    bo = "<" if p.little else ">"
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB", "UN") else b" "
    head = struct.pack(bo + "HH", tag >> 16, tag & 0xFFFF)
    if not p.explicit:
        return head + struct.pack(bo + "I", len(value)) + value
    if vr.encode() in _LONG_VRS:
        return head + vr.encode() + b"\x00\x00" + struct.pack(bo + "I", len(value)) + value
    return head + vr.encode() + struct.pack(bo + "H", min(len(value), 0xFFFF)) + value


def _put(ed: _Edit, p: Parsed, tag: int, vr: str, value: bytes) -> None:
    """A top-level element's value set, or the element inserted in tag order."""
    top = [x for x in p.elements if x.depth == 0 and not x.meta and x.kind == "element"]
    e = next((x for x in top if x.tag == tag), None)
    if e is not None:
        ed.set_value(e, value + (b" " if len(value) % 2 and vr not in ("UI", "OB", "UN") else b""))
        return
    at = next((x.offset for x in top if x.tag > tag), p.elements[-1].end if not top else top[-1].end)
    ed.splice(at, at, _encode(p, tag, vr, value), (), False)


def _us(p: Parsed, *values: int) -> bytes:
    return struct.pack(("<" if p.little else ">") + "H" * len(values), *(v & 0xFFFF for v in values))


def _segmented(p: Parsed, how: str) -> bytes:
    """Segmented palette data (16-bit words) meant to hurt: expanding enormously, looping, odd."""
    if how == "expands":  # a discrete start, then 2,000 linear segments of 65,535 entries: 131 M entries
        return _us(p, 0, 1, 0, *([1, 0xFFFF, 0xFFFF, 1, 0xFFFF, 0] * 1000))
    if how == "indirect loop":  # an indirect segment copying the segments from the start, itself included
        return _us(p, 0, 1, 7, 2, 0xFFFF, 0, 0)
    if how == "indirect doubling":  # each indirect segment repeats everything before it: 2^n entries
        words = [0, 1, 7, 1, 0xFFFF, 9]
        for _ in range(30):
            words += [2, 0xFFFF, 0, 0]
        return _us(p, *words)
    if how == "linear first":
        return _us(p, 1, 10, 100)
    if how == "unknown opcode":
        return _us(p, 0, 1, 5, 9, 3, 1)
    if how == "cut in a segment":
        return _us(p, 0, 200, 1, 2)
    if how == "offset past the end":
        return _us(p, 0, 1, 7, 2, 5, 0xFFFF, 0x7FFF)
    return b""


_COLOUR_WAYS = ["photometric", "samples", "planar", "bits 32", "huge size", "odd columns", "palette descriptor",
                "palette data", "segmented", "frames", "frame time", "cine rate", "frame time vector",
                "imager spacing", "voi lut", "display rate"]


def mut_colour(rng: random.Random, p: Parsed, index: int) -> tuple[bytes, str]:
    """The fields of colour images, loops and projections set to values meant to hurt (set where
    present, added where not): photometric interpretation, samples per pixel, planar configuration,
    32-bit colour, huge or odd sizes, palette descriptors and data (segmented palettes that expand
    enormously or loop), Number of Frames, Frame Time, Cine Rate, Imager Pixel Spacing, VOI LUT."""
    ed = _Edit(p)
    how = rng.choice(_COLOUR_WAYS)
    if any(x.tag == 0x00281101 for x in p.elements) and rng.random() < 0.5:  # a palette: hurt it more often
        how = rng.choice(["palette descriptor", "palette data", "segmented", "segmented", "bits 32", "samples"])
    what: str
    if how == "photometric":
        v = rng.choice(["RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR", "MONOCHROME1",
                        "YBR_PARTIAL_420", "ARGB", "", "rgb"])
        _put(ed, p, 0x00280004, "CS", v.encode())
        what = f"Photometric Interpretation set to {v!r}"
    elif how == "samples":
        v = rng.choice([0, 1, 2, 3, 4, 0xFFFF])
        _put(ed, p, 0x00280002, "US", _us(p, v))
        what = f"Samples per Pixel set to {v}"
    elif how == "planar":
        v = rng.choice([0, 1, 2, 3, 0xFFFF])
        _put(ed, p, 0x00280006, "US", _us(p, v))
        what = f"Planar Configuration set to {v}"
    elif how == "bits 32":
        _put(ed, p, 0x00280002, "US", _us(p, 3))
        _put(ed, p, 0x00280100, "US", _us(p, 32))
        what = "Samples per Pixel 3 with Bits Allocated 32"
    elif how == "huge size":
        v = rng.choice([0xFFFF, 0x8000, 46341])
        tag = rng.choice([0x00280010, 0x00280011])
        _put(ed, p, tag, "US", _us(p, v))
        if rng.random() < 0.5:
            _put(ed, p, tag ^ 1, "US", _us(p, v))
        what = f"{'Rows' if tag == 0x00280010 else 'Columns'} (and maybe the other) set to {v}"
    elif how == "odd columns":
        v = rng.choice([1, 3, 7, 9, 99, 101])
        _put(ed, p, 0x00280011, "US", _us(p, v))
        if rng.random() < 0.5:
            _put(ed, p, 0x00280004, "CS", b"YBR_FULL_422")
        what = f"Columns set to {v} (maybe with YBR_FULL_422)"
    elif how == "palette descriptor":
        v = rng.choice([(0, 0, 16), (65535, 0, 16), (256, 65535, 8), (1, 0, 0), (256, 0, 32), (256, 0, 12),
                        (2, 0x8000, 16), (256, 0, 16)])
        colours = rng.choice([("Red",), ("Red", "Green", "Blue")])
        for k, name in enumerate(("Red", "Green", "Blue")):
            if name in colours:
                _put(ed, p, 0x00281101 + k, "US", _us(p, *v) if rng.random() < 0.9 else _us(p, v[0]))
        if rng.random() < 0.3:
            _put(ed, p, 0x00280004, "CS", b"PALETTE COLOR")
        what = f"palette descriptor of {'/'.join(colours)} set to {v}"
    elif how == "palette data":
        n = rng.choice([0, 1, 3, 512, 65536 * 2, 65536 * 2 + 2])
        for k in range(3):
            _put(ed, p, 0x00281201 + k, "OW", b"\x01" * n)
        if rng.random() < 0.5:
            for k in range(3):
                _put(ed, p, 0x00281101 + k, "US", _us(p, 0, 0, 16))
        what = f"palette data set to {n} bytes"
    elif how == "segmented":
        way = rng.choice(["expands", "indirect loop", "indirect doubling", "linear first", "unknown opcode",
                          "cut in a segment", "offset past the end", "empty"])
        colours = rng.sample(["Red", "Green", "Blue"], rng.choice([1, 3]))
        for k, name in enumerate(("Red", "Green", "Blue")):
            if name in colours:
                _put(ed, p, 0x00281221 + k, "OW", _segmented(p, way))
        what = f"segmented palette data of {'/'.join(sorted(colours))}: {way}"
    elif how == "frames":
        v = rng.choice([b"2147483647", b"100000", b"65536", b"0", b"-5", b"6", b"4"])
        _put(ed, p, 0x00280008, "IS", v)
        what = f"Number of Frames set to {v.decode()}"
    elif how == "frame time":
        v = rng.choice([b"0", b"-40", b"NaN", b"1e308", b"inf", b"-0", b"1e-300", b"abc"])
        _put(ed, p, 0x00181063, "DS", v)
        what = f"Frame Time set to {v.decode()}"
    elif how == "cine rate":
        v = rng.choice([b"0", b"-1", b"99999999999", b"NaN"])
        _put(ed, p, 0x00180040, "IS", v)
        what = f"Cine Rate set to {v.decode()}"
    elif how == "frame time vector":
        v = rng.choice([b"0\\NaN\\inf", b"0\\-40", b"1e308\\1e308", b"0", b"0\\0\\0"])
        _put(ed, p, 0x00181065, "DS", v)
        what = f"Frame Time Vector set to {v.decode()}"
    elif how == "imager spacing":
        v = rng.choice([b"0\\0", b"NaN\\1", b"-1\\-1", b"1e308\\1e308", b"0.2", b"inf\\0.1", b""])
        _put(ed, p, 0x00181164, "DS", v)
        if rng.random() < 0.5:
            _put(ed, p, 0x00280030, "DS", v)
        what = f"Imager Pixel Spacing (maybe Pixel Spacing too) set to {v.decode()}"
    elif how == "voi lut":
        item = (_encode(p, 0x00283002, "US" if p.explicit else "US", _us(p, *rng.choice(
            [(0, 0, 16), (4096, 0x8000, 16), (256, 100, 32), (256, 100, 0), (3, 0, 8), (65535, 65535, 16)])))
            + _encode(p, 0x00283006, "OW", b"\x02\x01" * rng.choice([0, 1, 3, 256, 70000])))
        bo = "<" if p.little else ">"
        seq = struct.pack(bo + "HHI", 0xFFFE, 0xE000, len(item)) + item
        top = [x for x in p.elements if x.depth == 0 and not x.meta and x.kind == "element"]
        e = next((x for x in top if x.tag == 0x00283010), None)
        chunk = _encode(p, 0x00283010, "SQ", seq)
        if e is not None:
            ed.splice(e.offset, e.end, chunk, (), False)
        else:
            at = next((x.offset for x in top if x.tag > 0x00283010), top[-1].end)
            ed.splice(at, at, chunk, (), False)
        what = "VOI LUT Sequence replaced by one item of a bad or huge LUT"
    else:
        v = rng.choice([b"0", b"-1", b"2147483647"])
        _put(ed, p, 0x00082144, "IS", v)
        what = f"Recommended Display Frame Rate set to {v.decode()}"
    return ed.done(), what


MUTATORS: list[tuple[str, Mutator]] = [
    ("bitflip", mut_bitflip),
    ("truncate", mut_truncate),
    ("length", mut_length),
    ("duplicate", mut_duplicate),
    ("reorder", mut_reorder),
    ("delete", mut_delete),
    ("vr", mut_vr),
    ("value", mut_value),
    ("value", mut_value),
    ("stray_item", mut_stray_item),
    ("syntax", mut_syntax),
    ("meta_length", mut_meta_length),
    ("pixels", mut_pixels),
    ("frames", mut_frames),
    ("colour", mut_colour),
]


# ---------------------------------------------------------------------------------------
# Zips
# ---------------------------------------------------------------------------------------


def _zip_raw(rng: random.Random, seed: Seed, index: int) -> tuple[bytes, str]:
    data = bytearray(seed.data)
    how = rng.choice(["flip", "truncate", "crc", "size", "method", "count", "name", "empty"])
    if how == "empty":
        members = rng.choice([[], [("__MACOSX/._ct.dcm", b"\x00\x05\x16\x07"), ("a/.DS_Store", b"x")],
                              [("a/", b""), ("a/b/", b"")]])
        return _zip(members, seed.compression), f"a zip holding no file to read ({[m for m, _ in members]})"
    local = [m.start() for m in re.finditer(b"PK\x03\x04", data)]
    central = [m.start() for m in re.finditer(b"PK\x01\x02", data)]
    if how == "flip":
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
        return bytes(data), f"zip bit flip at {at}"
    if how == "truncate":
        at = rng.randrange(1, len(data))
        return bytes(data[:at]), f"zip cut at {at} of {len(data)}"
    k = rng.randrange(len(central))
    c = central[k]
    if how == "crc":
        struct.pack_into("<I", data, c + 16, struct.unpack_from("<I", data, c + 16)[0] ^ 1)
        struct.pack_into("<I", data, local[k] + 14, struct.unpack_from("<I", data, local[k] + 14)[0] ^ 1)
        return bytes(data), f"zip member {k}: CRC-32 wrong"
    if how == "size":
        value = rng.choice([0, 1, 100, 0x7FFFFFFF])
        struct.pack_into("<I", data, c + 24, value)
        return bytes(data), f"zip member {k}: declared uncompressed size set to {value}"
    if how == "method":
        value = rng.choice([0, 1, 8, 12, 14, 99])
        struct.pack_into("<H", data, c + 10, value)
        struct.pack_into("<H", data, local[k] + 8, value)
        return bytes(data), f"zip member {k}: compression method set to {value}"
    if how == "count":
        end = data.rfind(b"PK\x05\x06")
        value = rng.choice([0, 1, 100, 0xFFFF])
        struct.pack_into("<HH", data, end + 8, value, value)
        return bytes(data), f"zip end record: entry count set to {value}"
    name_len = struct.unpack_from("<H", data, c + 28)[0]
    newname = rng.choice([b"../x.dcm", b"a\x00b", b"\xff\xfe.dcm", b"/abs.dcm", b"c:\\x.dcm", b"."])
    newname = (newname + b"_" * name_len)[:name_len]
    data[c + 46:c + 46 + name_len] = newname
    return bytes(data), f"zip member {k}: name set to {newname!r}"


# ---------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    seed: int
    index: int
    seed_label: str
    mutator: str
    description: str
    name: str
    data: bytes = field(repr=False)
    expected: tuple[str, ...] = ()
    """Names that must each appear in a volume's source_names or in skipped (as themselves,
    "name [frame k]", or "name/..." for what a zip held)."""

    @property
    def reproduce(self) -> str:
        return f"make_case({self.seed}, {self.index})"


def _rng(seed: int, index: int) -> random.Random:
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


BOMB_EVERY, BOMB_AT = 1000, 500  # one case in a thousand is a small file that asks for a lot of memory
BOMB_MB = 400


@lru_cache(maxsize=2)
def _zeros_deflated(mb: int) -> bytes:
    """``mb`` MiB of zeros as raw deflate blocks ending in a full flush (so that a fresh stream can
    follow), made in a moment: after its first MiB, every MiB of zeros compresses to the same bytes."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\x00" * 2**20
    first, second = (z.compress(chunk) + z.flush(zlib.Z_SYNC_FLUSH) for _ in range(2))
    return first + second * (mb - 1) + z.flush(zlib.Z_FULL_FLUSH)


def _deflate_bomb(p: Parsed, mb: int) -> bytes:
    """A deflated file with a private OB element of ``mb`` MiB of zeros before its pixel data."""
    px = next(e for e in p.elements if e.tag == 0x7FE00010 and e.depth == 0)
    elems = (struct.pack("<HH", 0x0009, 0x0010) + b"LO" + struct.pack("<H", 4) + b"FUZZ"
             + struct.pack("<HH", 0x0009, 0x1010) + b"OB\x00\x00" + struct.pack("<I", mb * 2**20))
    head = zlib.compressobj(6, zlib.DEFLATED, -15)
    tail = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (p.plain[:p.body_at] + head.compress(p.plain[p.body_at:px.offset] + elems) + head.flush(zlib.Z_FULL_FLUSH)
            + _zeros_deflated(mb) + tail.compress(p.plain[px.offset:]) + tail.flush())


def _bomb_case(seed: int, index: int) -> Case:
    all_seeds = seeds()
    kind = (index // BOMB_EVERY) % 3
    if kind == 1:
        p = parse_elements(all_seeds["ct_j2k"].data)
        buf = bytearray(p.plain)
        _set_codestream_size(buf, [e for e in p.elements if e.kind == "fragment"], 8100)  # 64,009 tiles of 32 x 32
        return Case(seed, index, "ct_j2k", "bomb", "JPEG 2000 image size in the codestream set to 8100 x 8100 "
                    "(the header says 32 x 32)", "case.dcm", bytes(buf), ("case.dcm",))
    data = _deflate_bomb(parse_elements(all_seeds["ct_deflated"].data), BOMB_MB)
    what = f"a private OB element of {BOMB_MB} MiB of zeros in the deflated body ({len(data) // 1024} KiB file)"
    if kind == 0:
        return Case(seed, index, "ct_deflated", "bomb", what, "case.dcm", data, ("case.dcm",))
    return Case(seed, index, "zip_stored", "bomb", f"member y/dfl.dcm: {what}", "case.zip",
                _zip([("x/ct.dcm", all_seeds["ct_explicit_le"].data), ("y/dfl.dcm", data)]),
                ("case.zip/x/ct.dcm", "case.zip/y/dfl.dcm"))


def make_case(seed: int, index: int, *, label: str | None = None, mutator: str | None = None) -> Case:
    """Case ``index`` of the run seeded ``seed``: a pure function of both. ``label`` and ``mutator``
    (a family name) override the seed and the mutation the index picks, so that a case found when
    there were other seeds or families can still be made (its random choices are the same)."""
    if index % BOMB_EVERY == BOMB_AT:
        return _bomb_case(seed, index)
    all_seeds = seeds()
    labels = list(all_seeds)
    rng = _rng(seed, index)
    mut_name, mutator_fn = MUTATORS[index % len(MUTATORS)]
    if mutator is not None:
        mut_name, mutator_fn = next((n, m) for n, m in MUTATORS if n == mutator)
    label = label or labels[(index // len(MUTATORS) + seed) % len(labels)]
    s = all_seeds[label]
    if not s.is_zip:
        data, what = mutator_fn(rng, parse_elements(s.data), index)
        return Case(seed, index, label, mut_name, what, "case.dcm", data, ("case.dcm",))
    if rng.random() < 0.3:
        data, what = _zip_raw(rng, s, index)
        return Case(seed, index, label, "zip", what, "case.zip", data, ("case.zip",))
    k = rng.randrange(len(s.members))
    members = []
    for j, (member, inner) in enumerate(s.members):
        content = all_seeds[inner].data
        if j == k:
            content, what = mutator_fn(rng, parse_elements(content), index)
            what = f"member {member} ({inner}): {what}"
        members.append((member, content))
    data = _zip(members, s.compression)
    return Case(seed, index, label, mut_name, what, "case.zip", data, tuple(f"case.zip/{m}" for m, _ in members))


# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def exception_names() -> frozenset[str]:
    """Names of every exception class reachable from builtins and the libraries the loader uses."""
    import importlib

    for mod in ("pydicom", "pydicom.errors", "pydicom.pixels", "pydicom.encaps", "pydicom.filereader", "numpy",
                "struct", "zlib", "zipfile", "io", "json", "gzip", "bz2", "lzma", "binascii", "codecs", "core",
                "core.headers", "core.loader", "core.geometry", "core.sources", "core.memory", "pylibjpeg",
                "openjpeg", "rle", "libjpeg", "jpeg_ls", "PIL", "nibabel", "concurrent.futures", "asyncio"):
        with contextlib.suppress(Exception):  # an optional decoder may be missing
            importlib.import_module(mod)
    names: set[str] = set()
    stack = [BaseException]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        try:
            stack.extend(cls.__subclasses__())
        except TypeError:
            stack.extend(type.__subclasses__(cls))
    names.update(n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
                 and issubclass(getattr(builtins, n), BaseException))
    return frozenset(names)


@lru_cache(maxsize=1)
def _exception_patterns() -> tuple[re.Pattern, re.Pattern]:
    """CamelCase names (ValueError, BadZipFile) anywhere as a word; names that read as English
    (error, Empty, timeout) only in the forms a program prints them: ``(error)``, or ``error:``
    opening the reason."""
    camel, plain = [], []
    for n in exception_names():
        if n.startswith("_"):
            continue
        (camel if sum(c.isupper() for c in n) >= 2 else plain).append(re.escape(n))
    camel_re = re.compile(r"(?<![\w.])(?:" + "|".join(sorted(camel, key=len, reverse=True)) + r")(?!\w)")
    words = "|".join(sorted(plain, key=len, reverse=True))
    plain_re = re.compile(r"\((?:" + words + r")\)|^(?:" + words + r"):")
    return camel_re, plain_re


_BYTES_REPR = re.compile(r"(?<!\w)b['\"]|\\x[0-9a-fA-F]{2}")  # b'..' opening a value, or a \x.. escape
_QUOTED = re.compile(r"(?<!\w)'([^']*)'(?!\w)|(?<!\w)\"([^\"]*)\"(?!\w)")
MAX_QUOTED = 64
MAX_REASON = 400


def reason_problems(reason: str) -> list[tuple[str, str]]:
    """What is wrong with one skipped reason, as (kind, detail) pairs."""
    out = []
    if not isinstance(reason, str):
        return [("reason is not text", type(reason).__name__)]
    if not reason.strip():
        out.append(("reason is empty", ""))
    camel, plain = _exception_patterns()
    names = {m.group(0).strip("():") for m in camel.finditer(reason)} | {
        m.group(0).strip("():") for m in plain.finditer(reason)}
    for n in sorted(names):
        out.append(("exception class name in reason", n))
    if not reason.isprintable():
        bad = sorted({f"U+{ord(c):04X}" for c in reason if not c.isprintable()})
        out.append(("non-printable character in reason", " ".join(bad[:4])))
    for m in _QUOTED.finditer(reason):
        quoted = m.group(1) if m.group(1) is not None else m.group(2)
        if len(quoted.removesuffix("…")) > MAX_QUOTED:  # a value cut at 64 and marked so is fine
            out.append(("quoted value longer than 64 characters", f"{len(quoted)} characters"))
            break
    if _BYTES_REPR.search(reason):
        out.append(("bytes repr in reason", "b'...' or \\x.."))
    if len(reason) > MAX_REASON:
        out.append(("reason longer than 400 characters", f"{len(reason)} characters"))
    return out


@dataclass
class Finding:
    kind: str
    """What went wrong, with the detail that tells one bug from another."""
    case: Case
    detail: str = ""
    """The exception message, or the offending reason (for the report)."""


def template(reason: str) -> str:
    """The start of a reason with numbers, quoted values and parenthesised details blanked: one
    template per message (``pixel data could not be decoded (…)``, ``(N,N) Pixel Spacing is not a
    list of numbers (…)``)."""
    t = _QUOTED.sub("'…'", re.sub(r"\bb('[^']*'|\"[^\"]*\")", "b'…'", reason))
    t = re.sub(r"\d+(\.\d+)?", "N", t).replace("(N,N)", "\x00")
    while (blanked := re.sub(r"\([^()]*\)", "\x01", t)) != t:  # innermost parentheses first
        t = blanked
    t = t.replace("\x01", "(…)").replace("\x00", "(N,N)")
    cut = [i for i in (t.find(":", 12), t.find(";", 12)) if i > 0]
    return t[:min(cut + [60])].strip()


def _where(exc: BaseException) -> str:
    """The innermost frame of ours (core/) and the innermost frame overall, as file:function."""
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if "/core/" in f.filename]
    last = tb[-1] if tb else None
    parts = []
    if ours:
        parts.append(f"core/{ours[-1].filename.rsplit('/core/', 1)[1]}:{ours[-1].name}")
    if last is not None and (not ours or last is not ours[-1]):
        short = last.filename.rsplit("site-packages/", 1)[-1]
        short = short if short != last.filename else short.rsplit("/", 1)[-1]
        parts.append(f"{short}:{last.name}")
    return " <- ".join(reversed(parts))


def _accounted(expected: str, names: set[str]) -> bool:
    return any(n == expected or n.startswith((expected + " [", expected + "/")) for n in names)


class _PeakRSS:
    """Peak resident memory of this process between start() and stop() (Linux; else None)."""

    def __init__(self) -> None:
        self.ok = sys.platform.startswith("linux")

    def _hwm(self) -> int | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def start(self) -> int | None:
        if not self.ok:
            return None
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
        except OSError:
            self.ok = False
            return None
        return self._hwm()

    def peak(self, base: int | None) -> int | None:
        if not self.ok or base is None:
            return None
        now = self._hwm()
        return None if now is None else now - base


_PEAK = _PeakRSS()


@contextlib.contextmanager
def address_space_cap(extra: int = 4 * 1024**3):
    """Cap this process's address space at its current size plus ``extra`` (Linux), so that a
    case asking for tens of GB fails with MemoryError instead of taking a shared host's memory.
    Failed allocations leave no trace in the peak: a case is reported when it stays under the cap."""
    try:
        import resource

        with open("/proc/self/status") as fh:
            size = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
        old = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (size + extra, old[1]))
    except (ImportError, OSError, ValueError, StopIteration):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def check_case(case: Case, *, slow_seconds: float = SLOW_SECONDS, max_peak: int = MAX_PEAK_BYTES) -> list[Finding]:
    """Run ``load_series`` on the case beside the good file; every problem as a Finding."""
    from core import load_series

    (good_name, good_data), good_voxels = good_file()
    base = _PEAK.start()
    start = time.perf_counter()
    findings: list[Finding] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = load_series([(case.name, case.data), (good_name, good_data)])
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        elapsed = time.perf_counter() - start
        kind = f"exception escapes load_series: {type(exc).__name__} at {_where(exc)}"
        findings.append(Finding(kind, case, f"{type(exc).__name__}: {str(exc)[:200]}"))
        return findings
    elapsed = time.perf_counter() - start
    peak = _PEAK.peak(base)
    if elapsed > slow_seconds:
        findings.append(Finding(f"slow: over {slow_seconds:g} s", case, f"{elapsed:.1f} s"))
    if peak is not None and peak > max_peak:
        findings.append(Finding(f"memory: peak over {max_peak / 1e9:g} GB", case, f"{peak / 1e9:.2f} GB"))
    names = {n for _, n in ((0, n) for v in result.volumes for n in v.source_names)} | {n for n, _ in result.skipped}
    for expected in case.expected:
        if not _accounted(expected, names):
            findings.append(Finding("input not accounted for (in no volume and not in skipped)", case,
                                    f"{expected!r}; skipped: {result.skipped[:3]!r}"))
    good = [v for v in result.volumes if good_name in v.source_names]
    if not good:
        reason = next((r for n, r in result.skipped if n == good_name), "not in skipped either")
        findings.append(Finding("the good file did not load", case, reason[:200]))
    elif good[0].voxels.shape != good_voxels.shape or not np.array_equal(good[0].voxels, good_voxels):
        findings.append(Finding("the good file loaded with wrong voxels", case, f"shape {good[0].voxels.shape}"))
    by_input: dict[str, list[str]] = {}
    for name, reason in result.skipped:
        by_input.setdefault(name.split(" [")[0], []).append(reason)
    for reasons in by_input.values():
        if len(reasons) > len(set(reasons)):
            findings.append(Finding("one bad input costs several identical skipped lines", case,
                                    f"{len(reasons)} x {reasons[0][:200]}"))
    for _name, reason in result.skipped:
        for kind, _ in reason_problems(reason):
            findings.append(Finding(f"{kind} | {template(reason)}", case, reason[:300]))
    return findings
