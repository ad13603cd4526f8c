"""Label maps laid over a volume: the segmentations the explorer paints on its views.

Sources: the sample's tissue labels, the lungs (computed), a DICOM SEG (read with highdicom and
placed on a loaded series' voxel grid) and a NIfTI label map; exports as DICOM SEG and NIfTI.
Uploaded files are hostile: sizes are checked from their headers before anything is allocated,
and every refusal is an :class:`OverlayError` whose text a user can read.
"""

from __future__ import annotations

import colorsys
import contextlib
import copy
import functools
import io
import secrets
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

from core.measure import RoiStats, values_stats

if TYPE_CHECKING:
    import highdicom as hd
    from pydicom import Dataset

    from core.volume import Volume

__all__ = [
    "SEG_SOP_CLASSES", "LabelMap", "OverlayError", "is_segmentation", "label_stats", "looks_like_nifti",
    "lung_labels",
    "match_segmentation", "nifti_label_bytes", "nifti_labelmap", "palette", "sample_tissue_labels", "seg_bytes",
    "segmentation_description", "segmentation_header", "segmentation_labelmap", "source_images",
]

SEG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
}
MAX_FRAMES = 100_000
"""More frames than any segmentation of a loadable series needs (a refusal, not an allocation)."""
POSITION_TOLERANCE_MM = 0.05
"""How far a SEG frame or a NIfTI affine may sit from the volume's grid (as ``core.export.on_one_grid``)."""
_DEFLATED = "1.2.840.10008.1.2.1.99"


class OverlayError(ValueError):
    """A label map that cannot be used; ``str()`` says why in words a user understands."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reads_uploads(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a function that reads an uploaded file: see :func:`_hostile`."""
    def decorate(func: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(func)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with _hostile(what):
                return func(*args, **kwargs)
        return wrapper
    return decorate


@contextlib.contextmanager
def _hostile(what: str) -> Iterator[None]:
    """The boundary around reading an uploaded file: whatever its malformed values raise becomes
    one OverlayError in words (memory refusals and interrupts pass through)."""
    try:
        yield
    except (OverlayError, MemoryError):
        raise
    except Exception:  # noqa: BLE001 - pydicom and highdicom raise many types on malformed values
        raise OverlayError(f"This {what} could not be read: it is damaged or breaks the rules of its format.") from None


@dataclass(frozen=True, eq=False)
class LabelMap:
    """A label map on one volume's voxel grid.

    Parameters
    ----------
    labels : (S, R, C) uint8 ndarray
        The same shape as the volume's voxels; 0 is "no label". Read-only.
    names : dict of int to str
        A name for every label value present (1..255).
    colors : dict of int to (r, g, b)
        A colour (0-255 each) for every label value present.
    source : str
        Where it came from, in words ("Sample tissue labels", "Lungs (computed)",
        "DICOM SEG", "NIfTI label map"). Never PHI: a SEG's series description is left out.
    """

    labels: np.ndarray
    names: dict[int, str]
    colors: dict[int, tuple[int, int, int]]
    source: str
    key: str = field(init=False, repr=False, compare=False)
    """A random name, new for every label map: the identity the browser's cache uses."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", secrets.token_hex(8))
        if self.labels.ndim != 3 or self.labels.dtype != np.uint8:
            raise ValueError(f"labels must be a 3-D uint8 array, got {self.labels.dtype} of shape {self.labels.shape}")
        self.labels.flags.writeable = False

    @functools.cached_property
    def _counted(self) -> np.ndarray:
        counts = np.zeros(256, dtype=np.int64)
        for k in range(self.labels.shape[0]):  # slice by slice: no int64 copy of the whole map
            counts += np.bincount(self.labels[k].ravel(), minlength=256)
        counts.flags.writeable = False
        return counts

    def counts(self) -> np.ndarray:
        """Voxels of each value 0..255: (256,) int64, read-only; counted once per label map."""
        return self._counted

    def present(self) -> list[int]:
        """The label values that occur in ``labels``, ascending (0 left out)."""
        return [int(v) for v in np.flatnonzero(self._counted[1:]) + 1]


# -- colours and simple sources -------------------------------------------------------------------

def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct, fixed colours (hues a golden angle apart, alternating lightness)."""
    out = []
    for i in range(n):
        h = (0.08 + i * 0.381966) % 1.0
        light, sat = (0.55, 0.75) if i % 2 == 0 else (0.42, 0.9)
        r, g, b = colorsys.hls_to_rgb(h, light, sat)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def sample_tissue_labels(volume: Volume) -> LabelMap:
    """The built-in sample's own tissue labels (air and the scan circle's outside left out).

    Raises
    ------
    OverlayError
        When ``volume`` does not have the sample's shape.
    """
    from core.phantom_chest import LABELS
    from core.sample import sample_labels

    labels = sample_labels()
    if volume.shape != labels.shape:
        raise OverlayError("The sample's tissue labels fit only the built-in sample.")
    names = {v: n.capitalize() for n, v in LABELS.items() if v > 1}
    colors = dict(zip(sorted(names), palette(len(names)), strict=True))
    table = np.zeros(256, dtype=np.uint8)
    table[list(names)] = list(names)
    return LabelMap(labels=table[labels], names=names, colors=colors, source="Sample tissue labels")


def lung_labels(volume: Volume) -> LabelMap:
    """The lungs of a CT volume (``core.lungs.segment_lungs``): right and left when they are apart.

    Two separate air pockets are named by their mean patient x (LPS: +x is the patient's left);
    lungs that touch are one label, "Lungs".

    Raises
    ------
    OverlayError
        When the volume is not CT or holds no lungs.
    """
    from scipy import ndimage

    from core.lungs import segment_lungs

    try:
        lungs = segment_lungs(volume)
    except ValueError as exc:
        raise OverlayError(f"No lungs found: {exc}.") from None
    parts, n = ndimage.label(lungs, output=np.uint8)
    if n != 2:
        labels = lungs.astype(np.uint8)
        return LabelMap(labels=labels, names={1: "Lungs"}, colors={1: (64, 160, 255)}, source="Lungs (computed)")
    xs = [float(volume.patient_position(*centre)[0]) for centre in ndimage.center_of_mass(lungs, parts, [1, 2])]
    left = 1 if xs[0] > xs[1] else 2
    to_label = np.array([0, 1, 1], np.uint8)  # part value -> 1 right lung, 2 left lung (no big temporaries)
    to_label[left] = 2
    labels = to_label[parts]
    return LabelMap(labels=labels, names={1: "Right lung", 2: "Left lung"},
                    colors={1: (64, 160, 255), 2: (255, 170, 40)}, source="Lungs (computed)")


# -- statistics -----------------------------------------------------------------------------------

def label_stats(volume: Volume, labelmap: LabelMap, value: int) -> RoiStats:
    """Mean, SD, min, max, volume (mL) and voxel count of label ``value``, padding left out, as
    :func:`core.measure.values_stats` gives them for an ROI.

    With no voxel the statistics are NaN and ``n`` is 0. The volume counts the voxels at the
    nominal spacing (``prod(spacing)``).
    """
    if labelmap.labels.shape != volume.shape:
        raise ValueError(f"label map of shape {labelmap.labels.shape} does not fit a volume of shape {volume.shape}")
    mask = labelmap.labels == value
    pad = volume.padding_mask()
    if pad is not None:
        np.logical_and(mask, ~pad, out=mask)
    dz, dy, dx = volume.spacing
    return values_stats(volume.voxels[mask], pixel_area_mm2=dy * dx, depth_mm=dz)


# -- DICOM SEG: reading ---------------------------------------------------------------------------

def is_segmentation(ds: Any) -> bool:
    """Whether a dataset (or its file meta) is a DICOM Segmentation."""
    sop = str(getattr(ds, "SOPClassUID", "") or "")
    if not sop:
        meta = getattr(ds, "file_meta", None)
        sop = str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
    return sop in SEG_SOP_CLASSES


@_reads_uploads("segmentation")
def segmentation_header(data: bytes, *, max_bytes: int) -> Dataset:
    """The header of an uploaded DICOM SEG (no pixels), checked before any pixel is decoded.

    Parameters
    ----------
    data : bytes
        The file.
    max_bytes : int
        What its decoded frames (one byte per pixel) may take at most (the label map itself is
        the caller's to reserve: one byte per voxel of the volume).

    Raises
    ------
    OverlayError
        Not a segmentation, deflated (its size cannot be known before inflating), more frames
        than :data:`MAX_FRAMES` or than ``max_bytes`` holds, or a header that disagrees with itself.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if data[128:132] == b"DICM":
        try:  # the file meta group alone: a deflated body must not be inflated to learn its size
            fp = io.BytesIO(data)
            fp.seek(132)
            meta = pydicom.filereader.read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                                                   stop_when=lambda tag, vr, length: tag.group != 2)
        except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError):
            raise OverlayError("This file is not a DICOM file.") from None
        if str(meta.get("TransferSyntaxUID", "")) == _DEFLATED:
            raise OverlayError("Deflated DICOM SEG files are not read: their size is unknown until inflated.")
    try:  # without a preamble: a bare dataset (never deflated, which needs the file meta to say so)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - any parse failure of a hostile file is "unreadable"
        raise OverlayError("This DICOM file could not be read (damaged or cut short).") from None
    if not is_segmentation(ds):
        if data[128:132] != b"DICM" and "SOPClassUID" not in ds:
            raise OverlayError("This file is not a DICOM file.")
        raise OverlayError("This DICOM file is not a segmentation (DICOM SEG).")
    try:
        frames, rows, cols = int(ds.get("NumberOfFrames") or 1), int(ds.Rows), int(ds.Columns)
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    except (AttributeError, TypeError, ValueError):
        raise OverlayError("This segmentation's header lacks its frame count or matrix size.") from None
    if frames < 1 or rows < 1 or cols < 1:
        raise OverlayError("This segmentation declares no pixels.")
    if frames > MAX_FRAMES:
        raise OverlayError(f"This segmentation declares {frames:,} frames: more than {MAX_FRAMES:,} are refused.")
    if frames * rows * cols > max_bytes:
        raise OverlayError(f"This segmentation declares {frames:,} frames of {rows} x {cols} pixels "
                           f"({frames * rows * cols / 2**20:,.0f} MB decoded): more than this session may hold now.")
    if len(per_frame) != frames:
        raise OverlayError(f"This segmentation declares {frames:,} frames but describes {len(per_frame):,}.")
    return ds


def segmentation_description(ds: Dataset) -> str:
    """A short name of a SEG in words: its series description, content label or "DICOM SEG"."""
    for keyword in ("SeriesDescription", "ContentLabel"):
        text = str(ds.get(keyword, "") or "").strip()
        if text:
            return text
    return "DICOM SEG"


def _referenced_series(ds: Dataset) -> set[str]:
    out = {str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence") or []}
    for study in ds.get("StudiesContainingOtherReferencedInstancesSequence") or []:
        out |= {str(item.get("SeriesInstanceUID", "")) for item in study.get("ReferencedSeriesSequence") or []}
    return out - {""}


def _functional(ds: Dataset, i: int, sequence: str) -> Dataset | None:
    """The item of a functional group for frame ``i``: its own, else the shared one."""
    for groups in ((ds.get("PerFrameFunctionalGroupsSequence") or [None] * (i + 1))[i],
                   (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        items = groups.get(sequence) if groups is not None else None
        if items:
            return items[0]
    return None


def _frame_slices(ds: Dataset, volume: Volume) -> list[int]:
    """The slice of ``volume`` each SEG frame lies on (raises OverlayError when one does not)."""
    if (int(ds.Rows), int(ds.Columns)) != volume.shape[1:]:
        raise OverlayError(f"The segmentation's frames are {ds.Rows} x {ds.Columns} pixels, the series' slices "
                           f"{volume.shape[1]} x {volume.shape[2]}.")
    frames = int(ds.get("NumberOfFrames") or 1)
    sop_index = _sop_slices(volume)
    normal = volume.normal
    along = np.asarray(volume.positions, dtype=float) @ normal
    out = []
    for i in range(frames):
        plane = _functional(ds, i, "PlanePositionSequence")
        if plane is not None and "ImagePositionPatient" in plane:
            p = np.asarray([float(x) for x in plane.ImagePositionPatient])
            k = int(np.argmin(np.abs(along - p @ normal)))
            if np.linalg.norm(p - volume.positions[k]) > POSITION_TOLERANCE_MM:
                raise OverlayError(f"Frame {i + 1} of the segmentation lies off the series' slices "
                                   f"({np.linalg.norm(p - volume.positions[k]):.2f} mm from the nearest).")
            out.append(k)
            continue
        derivation = _functional(ds, i, "DerivationImageSequence")
        sources = (derivation.get("SourceImageSequence") or []) if derivation is not None else []
        uid = str(sources[0].get("ReferencedSOPInstanceUID", "")) if sources else ""
        if uid not in sop_index:
            raise OverlayError(f"Frame {i + 1} of the segmentation has no position and refers to no slice of the "
                               "series.")
        out.append(sop_index[uid])
    orientation = _functional(ds, 0, "PlaneOrientationSequence")
    if orientation is not None and "ImageOrientationPatient" in orientation:
        iop = np.asarray([float(x) for x in orientation.ImageOrientationPatient])
        ref = np.concatenate([volume.row_direction, volume.col_direction])
        if np.max(np.abs(iop - ref)) > 1e-3:
            raise OverlayError("The segmentation's frames are oriented differently from the series' slices.")
    measures = _functional(ds, 0, "PixelMeasuresSequence")
    if measures is not None and "PixelSpacing" in measures:
        dy, dx = (float(x) for x in measures.PixelSpacing)
        if abs(dy - volume.spacing[1]) > 1e-3 or abs(dx - volume.spacing[2]) > 1e-3:
            raise OverlayError(f"The segmentation's pixels are {dy:g} x {dx:g} mm, the series' "
                               f"{volume.spacing[1]:g} x {volume.spacing[2]:g} mm.")
    return out


def _sop_slices(volume: Volume) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, h in enumerate(volume.slice_headers):
        out.setdefault(str(h.get("SOPInstanceUID", "")), k)
    return out


def _frame_of_reference(volume: Volume) -> str:
    header = volume.header if volume.header is not None else (volume.slice_headers or [None])[0]
    return str(header.get("FrameOfReferenceUID", "")) if header is not None else ""


@_reads_uploads("segmentation")
def match_segmentation(ds: Dataset, volumes: Sequence[Volume]) -> int:
    """The index of the loaded series a SEG lies on.

    First the series it references (ReferencedSeriesSequence), whose slices must hold every
    frame; failing that, a series in the same frame of reference whose slices hold every frame
    by position.

    Raises
    ------
    OverlayError
        When it matches none, in words (and why the closest candidate did not fit).
    """
    refs = _referenced_series(ds)
    frame = str(ds.get("FrameOfReferenceUID", "") or "")
    why = ""
    for wanted in (lambda v: v.series_uid in refs, lambda v: bool(frame) and _frame_of_reference(v) == frame):
        for i, vol in enumerate(volumes):
            if not wanted(vol):
                continue
            try:
                _frame_slices(ds, vol)
            except OverlayError as exc:
                why = why or str(exc)
                continue
            return i
    # Not named by its series description: that is PHI, and this message is shown as it is.
    raise OverlayError("The segmentation matches none of the loaded series"
                       + (f": {why}" if why else " (it refers to another series and frame of reference)."))


@_reads_uploads("segmentation")
def segmentation_labelmap(data: bytes, volume: Volume, *, max_bytes: int) -> LabelMap:
    """A DICOM SEG (BINARY, FRACTIONAL or LABELMAP) placed on ``volume``'s voxel grid.

    Each frame goes to the slice at its ImagePositionPatient (or, without one, the slice of its
    referenced SOP instance); its pixels become the segment's number (BINARY: where set;
    FRACTIONAL: at half the maximum and above; LABELMAP: the stored value). Names are the segment
    labels, colours the recommended display CIELab values converted to RGB, else :func:`palette`.

    Raises
    ------
    OverlayError
        A header refused by :func:`segmentation_header`, frames off the series' grid, more than
        255 segments, or pixels that cannot be decoded.
    """
    import highdicom as hd

    header = segmentation_header(data, max_bytes=max_bytes)
    slices = _frame_slices(header, volume)
    try:
        seg = hd.seg.Segmentation.from_dataset(_read_full(data), copy=False)
        numbers = [int(n) for n in seg.segment_numbers]
    except OverlayError:
        raise
    except Exception:  # noqa: BLE001 - highdicom refuses malformed files with many exception types
        raise OverlayError("This segmentation could not be read (its header breaks the DICOM SEG rules).") from None
    if not numbers or max(numbers) > 255:
        raise OverlayError(f"This segmentation has {len(numbers)} segments numbered up to {max(numbers, default=0)}: "
                           "label maps here hold 1 to 255.")
    names, colors = _segment_names_colors(seg, numbers)
    kind = str(getattr(seg.segmentation_type, "value", seg.segmentation_type))
    labels = np.zeros(volume.shape, dtype=np.uint8)
    max_fraction = int(header.get("MaximumFractionalValue") or 255)
    for i, k in enumerate(slices):
        try:
            frame = np.asarray(seg.get_stored_frame(i + 1))
        except Exception:  # noqa: BLE001 - a damaged or unsupported pixel encoding
            raise OverlayError(f"Frame {i + 1} of the segmentation could not be decoded.") from None
        if frame.shape != volume.shape[1:]:
            raise OverlayError(f"Frame {i + 1} of the segmentation has the wrong size.")
        if kind == "LABELMAP":
            if frame.max(initial=0) > 255:
                raise OverlayError("This label map segmentation holds values above 255.")
            labels[k] = np.where(frame > 0, frame, labels[k])
            continue
        item = _functional(header, i, "SegmentIdentificationSequence")
        number = int(item.ReferencedSegmentNumber) if item is not None else numbers[0]
        on = frame >= (max_fraction + 1) // 2 if kind == "FRACTIONAL" else frame > 0
        labels[k][on] = number
    # Not its series description: that is PHI (DICOM PS3.15 Annex E), for the page to reveal or not.
    return LabelMap(labels=labels, names=names, colors=colors, source="DICOM SEG")


def _read_full(data: bytes) -> Dataset:
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001 - checked by segmentation_header already; a late failure is still words
        raise OverlayError("This DICOM file could not be read (damaged or cut short).") from None
    if "TransferSyntaxUID" not in ds.file_meta:  # a bare dataset: its encoding as pydicom found it
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _segment_names_colors(seg: hd.seg.Segmentation, numbers: list[int]
                          ) -> tuple[dict[int, str], dict[int, tuple[int, int, int]]]:
    import highdicom as hd

    fallback = palette(max(numbers))
    names: dict[int, str] = {}
    colors: dict[int, tuple[int, int, int]] = {}
    for n in numbers:
        desc = seg.get_segment_description(n)
        names[n] = str(desc.segment_label or f"Segment {n}")
        lab = desc.get("RecommendedDisplayCIELabValue")
        try:
            rgb = hd.color.CIELabColor.from_dicom_value([int(x) for x in lab]).to_rgb(clip=True) if lab else None
        except (ValueError, TypeError):
            rgb = None
        colors[n] = tuple(int(c) for c in rgb) if rgb is not None else fallback[n - 1]  # type: ignore[assignment]
    return names, colors


# -- NIfTI label maps -----------------------------------------------------------------------------

_NIFTI_HEADER = 348


def looks_like_nifti(data: bytes) -> bool:
    """Whether ``data`` starts as a NIfTI file does (gzip, or a NIfTI-1 or -2 header size), not as DICOM."""
    sizes = {n.to_bytes(4, "little") for n in (348, 540)} | {n.to_bytes(4, "big") for n in (348, 540)}
    return data[:2] == b"\x1f\x8b" or data[:4] in sizes


@_reads_uploads("NIfTI file")
def nifti_labelmap(data: bytes, volume: Volume, *, max_bytes: int, tolerance_mm: float = POSITION_TOLERANCE_MM,
                   ) -> LabelMap:
    """A NIfTI-1 label map (``.nii`` or ``.nii.gz``) for ``volume``, checked against its affine.

    The array must have the volume's NIfTI shape (columns, rows, slices), hold whole numbers
    0-255, and its affine (sform, else qform) must equal :func:`core.export.nifti_affine` within
    ``tolerance_mm`` in every entry. A gzip file is inflated only up to the size its header
    declares, and that size is checked against ``max_bytes`` first.

    Raises
    ------
    OverlayError
        In words: not NIfTI-1, another shape, another affine, values that are not labels, or
        more memory than ``max_bytes``.
    """
    import nibabel as nib

    from core.export import nifti_affine

    gz = data[:2] == b"\x1f\x8b"
    head = _gunzip(data, _NIFTI_HEADER) if gz else data[:_NIFTI_HEADER]
    try:
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(head), check=True)
        shape = tuple(int(s) for s in header.get_data_shape())
        itemsize = np.dtype(header.get_data_dtype()).itemsize
        offset = int(header.get_data_offset())
    except Exception:  # noqa: BLE001 - nibabel's many header errors
        raise OverlayError("This file is not a NIfTI-1 image.") from None
    want = tuple(reversed(volume.shape))
    if shape not in (want, (*want, 1)):
        raise OverlayError(f"The label map is {' x '.join(map(str, shape))} voxels, the series "
                           f"{' x '.join(map(str, want))} (columns x rows x slices): it belongs to another series.")
    needed = offset + int(np.prod(shape)) * itemsize
    if 2 * needed > max_bytes:  # the inflated file and the array read from it
        raise OverlayError(f"This label map would need {needed / 2**20:,.0f} MB: more than this session may hold now.")
    raw = _gunzip(data, needed) if gz else data[:needed]
    if len(raw) < needed:
        raise OverlayError("This NIfTI file is cut short (fewer voxels than its header declares).")
    try:
        img = nib.Nifti1Image.from_bytes(raw)
        arr = np.asanyarray(img.dataobj)
        affine = img.affine
    except Exception:  # noqa: BLE001 - damaged files raise many types
        raise OverlayError("This NIfTI file could not be read (damaged).") from None
    if affine is None or np.max(np.abs(affine[:3] - nifti_affine(volume)[:3])) > tolerance_mm:
        raise OverlayError("The label map's affine does not match this series' geometry (it places its voxels "
                           f"elsewhere by more than {tolerance_mm:g} mm): it was made for another series or grid.")
    arr = arr.reshape(want)
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or arr.min() < 0 or arr.max() > 255:
        raise OverlayError("The NIfTI file does not hold labels: its values must be whole numbers from 0 to 255.")
    labels = np.ascontiguousarray(arr.astype(np.uint8).transpose(2, 1, 0))
    present = LabelMap(labels=labels, names={}, colors={}, source="").present()
    colors = palette(max(present, default=1))
    return LabelMap(labels=labels, names={v: f"Label {v}" for v in present},
                    colors={v: colors[v - 1] for v in present}, source="NIfTI label map")


def _gunzip(data: bytes, limit: int) -> bytes:
    """The first ``limit`` bytes of a gzip stream, never inflating more (a bomb stops here)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pos, step = 0, 1 << 16
    try:
        while len(out) < limit and pos < len(data) and not d.eof:
            out += d.decompress(data[pos:pos + step], limit - len(out))
            pos += step
            while d.unconsumed_tail and len(out) < limit:
                out += d.decompress(d.unconsumed_tail, limit - len(out))
    except zlib.error:
        raise OverlayError("This .gz file is damaged.") from None
    return bytes(out)


# -- exports --------------------------------------------------------------------------------------

_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def source_images(volume: Volume, *, header_only: bool = False) -> list[Dataset]:
    """Copies of the series' headers, one per SOP instance, as highdicom wants its evidence.

    Missing type 2 patient and study attributes are added empty; nothing is changed otherwise.
    With ``header_only``, a volume without slice headers (a corrected, resampled series) gives
    its first slice's header instead: enough to name the study, the series and the frame of
    reference, not to refer to images of its grid.

    Raises
    ------
    OverlayError
        When the volume has no DICOM headers (nothing to refer to).
    """
    seen: dict[str, Dataset] = {}
    headers = volume.slice_headers
    if not headers and header_only and volume.header is not None:
        headers = (volume.header,)
    for h in headers:
        uid = str(h.get("SOPInstanceUID", ""))
        if uid and uid not in seen:
            ds = copy.copy(h)
            for keyword in _TYPE2:
                if keyword not in ds:
                    setattr(ds, keyword, "")
            seen[uid] = ds
    if not seen:
        raise OverlayError("This series has no DICOM headers to refer to, so no DICOM SEG can be made for it.")
    return list(seen.values())


def seg_bytes(volume: Volume, labelmap: LabelMap, *, segmentation_type: str = "LABELMAP") -> bytes:
    """The label map as a DICOM SEG file on ``volume``'s series (highdicom).

    One segment per label value present, with its name and colour. The frames carry the
    volume's own geometry (each slice's ImagePositionPatient, its orientation and spacing) and
    refer to the series' instances, so viewers (OHIF, 3D Slicer) lay it on the same images.
    Patient and study identity come from the series (the SEG belongs to the same study).

    Parameters
    ----------
    segmentation_type : {"LABELMAP", "BINARY"}
        LABELMAP writes a Label Map Segmentation (one 8-bit frame per slice, RLE Lossless, segment
        numbers equal to the label values); BINARY writes a classic Segmentation Storage object (one
        1-bit frame per slice and segment, segments numbered 1..N in the order of the values).

    Raises
    ------
    OverlayError
        When the label map is empty, does not fit the volume, or the series has no headers.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    if labelmap.labels.shape != volume.shape:
        raise OverlayError("This label map does not fit the series.")
    if segmentation_type not in ("LABELMAP", "BINARY"):
        raise ValueError(f"segmentation_type must be 'LABELMAP' or 'BINARY', got {segmentation_type!r}")
    present = labelmap.present()
    if not present:
        raise OverlayError("This label map is empty: there is no segment to write.")
    fallback = palette(max(present))
    pixels = np.asarray(labelmap.labels)
    numbers = dict(zip(present, present, strict=True))
    if segmentation_type == "BINARY" and present != list(range(1, len(present) + 1)):
        numbers = {v: i for i, v in enumerate(present, start=1)}  # highdicom numbers BINARY segments 1..N
        table = np.zeros(256, dtype=np.uint8)
        table[present] = list(numbers.values())
        pixels = table[pixels]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=numbers[v],
            segment_label=labelmap.names.get(v, f"Label {v}")[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type="MANUAL",
            display_color=hd.color.CIELabColor.from_rgb(*labelmap.colors.get(v, fallback[v - 1])),
        )
        for v in present
    ]
    sources = source_images(volume)
    dz, dy, dx = volume.spacing
    orientation = [*map(float, volume.row_direction), *map(float, volume.col_direction)]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=segmentation_type,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(sources[0].get("SeriesNumber") or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Hounsfield",
        manufacturer_model_name="Hounsfield dashboard",
        software_versions="1",
        device_serial_number="none",
        content_label="SEGMENTATION",
        content_description=labelmap.source[:64],
        series_description=f"Segmentation: {labelmap.source}"[:64],
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=[dy, dx], slice_thickness=dz),
        plane_orientation=hd.PlaneOrientationSequence(coordinate_system="PATIENT",
                                                      image_orientation=orientation),
        plane_positions=[hd.PlanePositionSequence(coordinate_system="PATIENT",
                                                  image_position=[float(x) for x in p])
                         for p in volume.positions],
        omit_empty_frames=True,
        # RLE: a label map compresses about tenfold (the sample: 0.7 MB instead of 7.6 MB); 1-bit BINARY frames
        # are small already and stay uncompressed, as every viewer reads them.
        transfer_syntax_uid=RLELossless if segmentation_type == "LABELMAP" else ExplicitVRLittleEndian,
    )
    buf = io.BytesIO()
    seg.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def nifti_label_bytes(volume: Volume, labelmap: LabelMap, *, compress: bool = True) -> bytes:
    """The label map as NIfTI-1 (uint8), with the same affine as ``core.export.nifti_bytes``.

    Raises
    ------
    core.geometry.GeometryError
        When the slices are not evenly spaced (as ``nifti_bytes``).
    """
    from core.export import nifti_bytes

    if labelmap.labels.shape != volume.shape:
        raise OverlayError("This label map does not fit the series.")
    return nifti_bytes(volume.with_changes(voxels=labelmap.labels, units=""), compress=compress)
