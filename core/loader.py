"""`load_series`: from files to volumes, with every unused input explained."""

from __future__ import annotations

import contextlib
import logging
import lzma
import struct
import traceback
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, pixel_array

from core import hu
from core.colour import luminance, rgb8
from core.geometry import GeometryError, analyse_stack, orientation_name, slice_normal
from core.headers import (
    READ_ERRORS,
    Budget,
    FileHeader,
    FrameInfo,
    SkipFile,
    frame_time_ms,
    inflate_deflated,
    lenient,
    read_header,
    spacing_calibration,
    voi_lut_table,
)
from core.memory import MemoryBudget, OverBudget, Reservation
from core.numbers import count, decimal
from core.sources import ZipLimits, expand_sources
from core.volume import Volume
from core.windowing import window

__all__ = ["LoadResult", "load_series"]

ProgressCallback = Callable[[int, int], Any]

log = logging.getLogger(__name__)

_HEADER_PREFIX = 64 * 1024
MAX_SEGMENTATION_BYTES = 256 * 1024**2  # DICOM SEG files kept whole in one study (issue 18)

_SUMMARY_KEYWORDS = (
    "Manufacturer",
    "ManufacturerModelName",
    "ConvolutionKernel",
    "KVP",
    "SliceThickness",
    "MagneticFieldStrength",
    "SequenceName",
    "ScanningSequence",
)


@dataclass
class LoadResult:
    """What `load_series` found.

    Attributes
    ----------
    volumes : list of Volume
        One per stack that could be assembled, largest first.
    skipped : list of (name, reason)
        Every input (file, zip member or frame) that was not used, and why.
    """

    volumes: list[Volume] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    segmentations: list[tuple[str, bytes]] = field(default_factory=list)
    """DICOM SEG files found among the inputs, as ``(name, file bytes)``: kept, not decoded
    (``core.overlay`` places them on a series when the user shows one)."""


def unusable_reason(exc: BaseException, *, stage: str = "read") -> str:
    """The "skipped" reason for any exception raised while reading or decoding one file.

    Reasons never name an exception or quote the file. An exception that no known kind of
    damage explains is logged for developers by type and code location only (file names
    and values can be PHI).
    """
    if isinstance(exc, SkipFile):
        return exc.reason
    if isinstance(exc, OverBudget):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "refused: reading it would need more memory than is available"
    if isinstance(exc, RecursionError):
        return "refused: the file's structure is nested too deeply to read safely"
    if isinstance(exc, (zipfile.BadZipFile, lzma.LZMAError)):
        return "could not be taken out of its zip archive: the archive is damaged at this file"
    if not isinstance(exc, READ_ERRORS):
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
        log.warning("unexpected %s while a file was being %s, at %s", type(exc).__name__,
                    "decoded" if stage == "decode" else "read", where)
        if stage == "decode":
            return "pixel data could not be decoded: an unexpected problem in this file's image data"
        return "could not be read: an unexpected problem in this file's structure"
    if stage == "decode":
        return "pixel data could not be decoded: the image data is damaged or not what the header describes"
    return "could not be read as DICOM: the file is damaged, or not a DICOM file"


def _reraise_interrupts(exc: BaseException) -> None:
    """Let a stop (Ctrl+C, exit) through the per-file boundaries, which catch BaseException:
    decoders written in Rust raise PanicException, a BaseException, on damaged data."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        raise exc


def _finite_float(value: Any) -> float | None:
    """A finite number from a DS value (the first of several), or None (``"abcd"``, NaN, empty)."""
    try:
        f = float(value[0] if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else value)
    except (TypeError, ValueError, IndexError):
        return None
    return f if np.isfinite(f) else None


def _positive_float(value: Any) -> float | None:
    """A finite number above zero from a DS value (``"abcd"``, NaN, 0 and lists give None)."""
    f = _finite_float(value)
    return f if f is not None and f > 0 else None


# ---------------------------------------------------------------------------------------
# Planning: which frames form which volume, in which order
# ---------------------------------------------------------------------------------------


@dataclass
class _Plan:
    frames: list[FrameInfo]
    spacing: tuple[float, float, float]
    warnings: list[str]
    orientation: np.ndarray
    label: str = ""
    kind: str = "volume"
    colour: bool = False


def _cluster_orientation(frames: list[FrameInfo]) -> list[list[FrameInfo]]:
    groups: list[tuple[np.ndarray | None, tuple, list[FrameInfo]]] = []
    for fr in frames:
        ps = None if fr.pixel_spacing is None else (round(fr.pixel_spacing[0], 4), round(fr.pixel_spacing[1], 4))
        key = (fr.rows, fr.cols, ps, fr.position is None or fr.orientation is None)
        for iop, gkey, members in groups:
            if gkey != key:
                continue
            if (iop is None and fr.orientation is None) or (
                iop is not None and fr.orientation is not None and np.max(np.abs(iop - fr.orientation)) < 1e-3
            ):
                members.append(fr)
                break
        else:
            groups.append((fr.orientation, key, [fr]))
    return [m for _, _, m in groups]


def _split_repeats(frames: list[FrameInfo], normal: np.ndarray
                   ) -> tuple[list[list[FrameInfo]], list[str], list[tuple[str, str]]]:
    """Split a stack whose slices repeat positions (echoes, phases) into stacks that do not."""
    skipped: list[tuple[str, str]] = []
    seen: dict[str, FrameInfo] = {}
    unique: list[FrameInfo] = []
    for fr in frames:
        if fr.sop_uid and fr.sop_uid in seen:
            skipped.append((fr.name, f"duplicate of {seen[fr.sop_uid].name} (same SOP Instance UID)"))
            continue
        seen[fr.sop_uid] = fr
        unique.append(fr)

    def repeats(group: list[FrameInfo]) -> int:
        s = np.sort(np.array([fr.position @ normal for fr in group]))
        return int(np.sum(np.diff(s) < 1e-3)) if len(s) > 1 else 0

    if repeats(unique) == 0:
        return [unique], [], skipped

    keys = sorted({k for fr in unique for k in fr.split_keys})
    preferred = ["EchoNumbers", "TemporalPositionIndex", "TemporalPositionIdentifier", "StackID",
                 "TriggerTime", "AcquisitionNumber", "DiffusionBValue", "EchoTime", "InversionTime", "ImageType"]
    for key in [k for k in preferred if k in keys]:
        parts: dict[Any, list[FrameInfo]] = defaultdict(list)
        for fr in unique:
            parts[fr.split_keys.get(key)].append(fr)
        if len(parts) > 1 and all(repeats(p) == 0 for p in parts.values()):
            counts = sorted({len(p) for p in parts.values()})
            note = (
                f"Repeated positions: this series stacks {len(parts)} acquisitions at the same positions "
                f"(several time points or echoes); it was split by {key} into {len(parts)} volumes"
                f"{'' if len(counts) == 1 else ' of different sizes'}."
            )
            ordered = sorted(parts.items(), key=lambda kv: str(kv[0]))
            return [p for _, p in ordered], [note], skipped

    # No attribute separates them: keep one slice per position (lowest InstanceNumber).
    by_pos: dict[int, list[FrameInfo]] = defaultdict(list)
    for fr in unique:
        by_pos[int(round(float(fr.position @ normal) * 1000))].append(fr)
    kept: list[FrameInfo] = []
    extra = 0
    for members in by_pos.values():
        members.sort(key=lambda fr: (fr.instance_number is None, fr.instance_number or 0, fr.name))
        kept.append(members[0])
        for fr in members[1:]:
            extra += 1
            skipped.append((fr.name, f"same position as {members[0].name} (repeated position in the series); "
                                     "one slice per position kept"))
    note = (
        f"Repeated positions: {extra} slices share a position with another slice (several time points or "
        f"echoes stacked, with no attribute to tell them apart); one slice per position was kept."
    )
    return [kept], [note], skipped


def _plan_volumes(frames: list[FrameInfo], headers: dict[int, FileHeader]) -> tuple[list[_Plan], list[tuple[str, str]]]:
    plans: list[_Plan] = []
    skipped: list[tuple[str, str]] = []
    by_series: dict[str, list[FrameInfo]] = defaultdict(list)
    for fr in frames:
        by_series[fr.series_uid].append(fr)
    for series_frames in by_series.values():
        series_plans: list[_Plan] = []
        series_skipped: list[tuple[str, str]] = []
        try:
            _plan_series(series_frames, headers, series_plans, series_skipped)
        except BaseException as exc:  # noqa: BLE001 - one series' odd geometry must not end the load
            _reraise_interrupts(exc)
            reason = unusable_reason(exc).replace("could not be read", "could not be placed in its series", 1)
            series_plans, series_skipped = [], [(fr.name, reason) for fr in series_frames]
        plans.extend(series_plans)
        skipped.extend(series_skipped)
    return plans, skipped


# Modalities whose single frames are projection images (PS3.3 C.7.3.1.1.1), each shown on its own.
_PROJECTION = {"CR", "DX", "MG", "XA", "RF", "IO", "PX"}
# Modalities that never stack into volumes: their images without a position form a gallery.
_NOT_STACKS = {"US", "XC", "ES", "OP", "GM", "SM", "DOC", "OT", "SC", "KO", "PR", "VL"}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_IDENTITY = np.array([1.0, 0, 0, 0, 1.0, 0])


_TOMOGRAPHIC = {"CT", "MR", "PT", "NM", "RTDOSE"}


def _is_loop(frames: list[FrameInfo], header: FileHeader) -> bool:
    """A multi-frame file whose frames share one position, or have none: a loop, not a stack.

    A CT, MR, PET, NM or RT dose file without positions stays a stack (old multi-frame files ordered
    by frame, dose grids with their Grid Frame Offset Vector), unless it gives a frame rate.
    """
    if len(frames) < 2 or "GridFrameOffsetVector" in header.dataset:
        return False
    positions = [fr.position for fr in frames]
    if any(p is None for p in positions):
        return header.modality not in _TOMOGRAPHIC or frame_time_ms(header.dataset) is not None
    return bool(np.all(np.abs(np.array(positions) - positions[0]) < 1e-3))


def _plan_images(series_frames: list[FrameInfo], headers: dict[int, FileHeader],
                 plans: list[_Plan]) -> list[FrameInfo]:
    """Plans for what is not a stack (loops, projections, a gallery); returns the frames left to stack."""
    by_file: dict[int, list[FrameInfo]] = defaultdict(list)
    for fr in series_frames:
        by_file[fr.entry].append(fr)
    rest: list[FrameInfo] = []
    gallery: list[FrameInfo] = []
    for entry, frames in by_file.items():
        header = headers[entry]
        colour = header.photometric not in ("MONOCHROME1", "MONOCHROME2")
        ds = header.dataset
        sop_class = str(lenient(ds, "SOPClassUID", "") or "")
        spacing = (1.0, *(frames[0].pixel_spacing or (1.0, 1.0)))
        if header.n_frames > 1 and _is_loop(frames, header):
            frames.sort(key=lambda fr: fr.frame or 0)
            plans.append(_Plan(frames, spacing, [], _IDENTITY, "", "loop", colour))
        elif header.n_frames == 1 and not colour and header.modality in _PROJECTION:
            plans.append(_Plan(frames, spacing, [], _IDENTITY, "", "projection", False))
        elif header.n_frames == 1 and (colour or (frames[0].position is None and (
                header.modality in _NOT_STACKS or sop_class.startswith(_SECONDARY_CAPTURE)))):
            gallery.extend(frames)
        else:
            rest.extend(frames)
    if gallery:
        gallery.sort(key=lambda fr: (fr.instance_number is None, fr.instance_number or 0, fr.name))
        colour = any(headers[fr.entry].photometric not in ("MONOCHROME1", "MONOCHROME2") for fr in gallery)
        plans.append(_Plan(gallery, (1.0, 1.0, 1.0), [], _IDENTITY, "", "gallery", colour))
    return rest


def _at_one_place(stack: list[FrameInfo]) -> bool:
    """Two images or more, each its own file, all at one position: frames of a loop."""
    if len({fr.sop_uid for fr in stack}) < 2 or any(fr.position is None or fr.frame is not None for fr in stack):
        return False
    positions = np.array([fr.position for fr in stack])
    return bool(np.all(np.abs(positions - positions[0]) < 1e-3))


def _one_place_loop(stack: list[FrameInfo], skipped: list[tuple[str, str]]) -> _Plan:
    """A loop of single-frame files at one position, in Trigger Time order (then Instance Number)."""
    seen: dict[str, FrameInfo] = {}
    for fr in stack:
        if fr.sop_uid in seen:
            skipped.append((fr.name, f"duplicate of {seen[fr.sop_uid].name} (same SOP Instance UID)"))
        else:
            seen[fr.sop_uid] = fr

    def order(fr: FrameInfo) -> tuple:
        trigger = _finite_float(fr.split_keys.get("TriggerTime"))
        return (trigger is None, trigger or 0.0, fr.instance_number is None, fr.instance_number or 0, fr.name)

    frames = sorted(seen.values(), key=order)
    spacing = (1.0, *(frames[0].pixel_spacing or (1.0, 1.0)))
    return _Plan(frames, spacing, [], _IDENTITY if frames[0].orientation is None else frames[0].orientation, "",
                 "loop", False)


def _trigger_step_ms(frames: list[FrameInfo]) -> float | None:
    """The median step of Trigger Time (0018,1060) between a loop's frames, in ms, if they give one."""
    times = [_finite_float(fr.split_keys.get("TriggerTime")) for fr in frames]
    if len(times) < 2 or any(t is None for t in times):
        return None
    steps = np.diff(np.array(times, dtype=float))
    step = float(np.median(steps))
    return step if step > 0 else None


def _plan_series(series_frames: list[FrameInfo], headers: dict[int, FileHeader], plans: list[_Plan],
                 skipped: list[tuple[str, str]]) -> None:
    """Plans for one series: loops, projections and a gallery apart, then its stacks, sorted
    along their normal, with geometry warnings."""
    series_frames = _plan_images(series_frames, headers, plans)
    if not series_frames:
        return
    stacks = _cluster_orientation(series_frames)
    stacks.sort(key=len, reverse=True)
    for stack_no, stack in enumerate(stacks):
        first = stack[0]
        ds = headers[first.entry].dataset
        if _at_one_place(stack):  # single-frame files of one position over time: cine, not a stack
            plans.append(_one_place_loop(stack, skipped))
            continue
        dy, dx = first.pixel_spacing or (1.0, 1.0)
        base_warnings: list[str] = []
        if first.spacing_note:
            base_warnings.append(first.spacing_note)
        elif first.pixel_spacing is None:
            base_warnings.append("No (0028,0030) Pixel Spacing: 1 mm pixels assumed, so distances and areas are "
                                 "in pixels, not mm.")
        image_type = [str(v).upper() for v in (lenient(ds, "ImageType") or [])]
        label = "localizer" if "LOCALIZER" in image_type else ""
        if len(stacks) > 1:
            base_warnings.append(
                f"This series holds {len(stacks)} stacks of different orientation or size; "
                f"this is stack {stack_no + 1} ({len(stack)} slices), kept apart from the others."
            )

        if first.position is None or first.orientation is None:
            stack.sort(key=lambda fr: (fr.instance_number is None, fr.instance_number or 0, fr.frame or 0, fr.name))
            dz = (_positive_float(lenient(ds, "SpacingBetweenSlices"))
                  or _positive_float(lenient(ds, "SliceThickness")) or 1.0)
            warnings = base_warnings + [
                "No (0020,0032) Image Position / (0020,0037) Image Orientation: slices are ordered by "
                f"InstanceNumber and frame, {decimal(dz)} mm apart as declared, and the patient orientation is unknown."
            ]
            if len(stack) == 1:
                warnings.append("Single slice: a 2D image, so the coronal, sagittal and 3D views have nothing to show.")
            plans.append(_Plan(stack, (dz, dy, dx), warnings, np.array([1.0, 0, 0, 0, 1.0, 0]), label))
            continue

        try:
            normal = slice_normal(first.orientation)
        except GeometryError as exc:
            skipped.extend((fr.name, str(exc)) for fr in stack)
            continue
        parts, notes, dup_skipped = _split_repeats(stack, normal)
        skipped.extend(dup_skipped)
        for part in parts:
            positions = np.array([fr.position for fr in part])
            nominal_f = (_positive_float(lenient(ds, "SpacingBetweenSlices"))
                         or _positive_float(lenient(ds, "SliceThickness")))
            geo = analyse_stack(positions, normal, nominal_spacing=nominal_f)
            ordered = [part[i] for i in geo.order]
            plans.append(
                _Plan(ordered, (geo.spacing, dy, dx), base_warnings + notes + geo.warnings, first.orientation, label)
            )


# ---------------------------------------------------------------------------------------
# Decoding: pixels straight into one array per volume
# ---------------------------------------------------------------------------------------


def _native_frame(data: bytes, header: FileHeader, frame: int, base: int | None = None) -> np.ndarray:
    rows, cols = header.frames[0].rows, header.frames[0].cols
    count = rows * cols
    big = str(header.transfer_syntax) == "1.2.840.10008.1.2.2"
    if header.bits_allocated == 1:
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), force=True)
        return pixel_array(ds, index=frame if header.n_frames > 1 else None)
    itemsize = header.bits_allocated // 8
    kind = "i" if header.signed else "u"
    dtype = np.dtype(f"{'>' if big else '<'}{kind}{itemsize}")
    start = header.pixel_offset if base is None else base
    assert start is not None, "read_header gives every native file its pixel offset"
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=start + frame * count * itemsize)
    return _fix_bits(arr.reshape(rows, cols), header)


def _fix_bits(arr: np.ndarray, header: FileHeader) -> np.ndarray:
    """Drop bits above BitsStored (old overlays) and sign-extend signed values."""
    stored, allocated = header.bits_stored, header.bits_allocated
    if stored >= allocated or allocated > 16:
        return arr
    if header.signed:
        shift = 32 - stored
        return (arr.astype(np.int32) << shift) >> shift
    return arr & np.array((1 << stored) - 1, dtype=arr.dtype)


def _decoded_frames(data: bytes, header: FileHeader, wanted: list[int],
                    base: int | None = None) -> dict[int, np.ndarray | BaseException]:
    """Raw stored values of the wanted frames (``base``: where pixel data starts in ``data``).

    A compressed frame that does not decode is given as its exception, so that the other frames
    of a loop survive it; when none decodes, the first exception is raised.
    """
    if header.native:
        return {f: _native_frame(data, header, f, base) for f in wanted}
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), force=True)
    if header.n_frames == 1:
        return {0: pixel_array(ds, raw=True)}
    out: dict[int, np.ndarray | BaseException] = {}
    for f in wanted:
        try:
            out[f] = pixel_array(ds, index=f, raw=True)
        except READ_ERRORS as exc:
            out[f] = exc
    failed = [v for v in out.values() if isinstance(v, BaseException)]
    if len(failed) == len(out) and failed:
        raise failed[0]
    return out


def _padding_of(raw: np.ndarray, header: FileHeader) -> np.ndarray | None:
    if header.padding_value is None:
        return None
    lo = header.padding_value
    hi = header.padding_limit if header.padding_limit is not None else lo
    lo, hi = min(lo, hi), max(lo, hi)
    mask = (raw >= lo) & (raw <= hi)
    return mask if mask.any() else None


class _Canvas:
    """One volume's voxel array, filled slice by slice, widened to float32 only if needed.

    With a memory budget, the array's bytes are reserved before it is allocated (and the
    extra bytes before a widening); the reservation then belongs to the volume.
    """

    def __init__(self, plan: _Plan, modality: str, memory: MemoryBudget | None = None, owner: str = "local") -> None:
        shape = _plan_shape(plan)
        self.memory, self.owner = memory, owner
        self.reservations: list[Reservation] = []
        self._reserve(_plan_bytes(plan), shape)
        self.rgb: np.ndarray | None = None
        if plan.colour:  # luminance (uint8) beside the colour
            self.rgb = np.zeros((*shape, 3), dtype=np.uint8)
            self.voxels = np.zeros(shape, dtype=np.uint8)
        else:
            integral = all(float(fr.slope).is_integer() and float(fr.intercept).is_integer() for fr in plan.frames)
            self.voxels = (np.zeros if plan.kind == "gallery" else np.empty)(
                shape, dtype=np.int16 if integral else np.float32)
        self.padding: np.ndarray | None = None
        self.done = np.zeros(shape[0], dtype=bool)
        self.modality = modality
        self.kind = plan.kind

    def _reserve(self, nbytes: int, shape: tuple[int, ...]) -> None:
        if self.memory is not None:
            what = f"this series ({shape[0]} slices of {shape[1]} x {shape[2]})"
            self.reservations.append(self.memory.reserve(nbytes, owner=self.owner, what=what))

    def release(self) -> None:
        for res in self.reservations:
            res.release()
        self.reservations = []

    def put_rgb(self, k: int, rgb: np.ndarray) -> None:
        """Frame ``k`` in colour (padded at the bottom and right in a gallery)."""
        assert self.rgb is not None, "colour goes to a colour canvas"
        r, c = rgb.shape[:2]
        self.rgb[k, :r, :c] = rgb
        self.voxels[k, :r, :c] = luminance(rgb)
        self.done[k] = True

    def put(self, k: int, values: np.ndarray, pad: np.ndarray | None) -> None:
        if self.kind == "gallery":
            pad = None  # a gallery's frames differ in size: no padding mask
            r, c = values.shape
            if self.voxels.dtype == np.int16 and values.size and (
                    values.min() < -32768 or values.max() > 32767 or not np.issubdtype(values.dtype, np.integer)):
                self._reserve(self.voxels.size * 2, self.voxels.shape)
                self.voxels = self.voxels.astype(np.float32)
            self.voxels[k, :r, :c] = values
            self.done[k] = True
            return
        if self.voxels.dtype == np.int16:
            lo, hi = (values.min(), values.max()) if values.size else (0, 0)
            if lo < -32768 or hi > 32767 or not np.issubdtype(values.dtype, np.integer):
                self._reserve(self.voxels.size * 2, self.voxels.shape)  # float32 needs 2 bytes more per voxel
                self.voxels = self.voxels.astype(np.float32)
        if pad is not None and pad.any():
            if self.padding is None:
                s, r, c = self.voxels.shape
                self.padding = np.zeros((s, r, (c + 7) // 8), dtype=np.uint8)
            self.padding[k] = np.packbits(pad, axis=-1)
            values = values.copy() if not values.flags.writeable else values
            values[pad] = hu.AIR if self.modality == "CT" else 0
        self.voxels[k] = values
        self.done[k] = True


def _value_window(values: np.ndarray) -> tuple[float, float]:
    """A window over all of ``values`` (center, width), for a grey image without one."""
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return (lo + hi) / 2, max(hi - lo, 1.0)


def _plan_shape(plan: _Plan) -> tuple[int, int, int]:
    """(frames, rows, cols) of a plan's array: a gallery's frames padded to the largest."""
    return (len(plan.frames), max(fr.rows for fr in plan.frames), max(fr.cols for fr in plan.frames))


def _plan_bytes(plan: _Plan) -> int:
    """Bytes a plan's arrays take: colour 3 bytes per pixel and 1 of luminance, grey 2 or 4."""
    pixels = int(np.prod(_plan_shape(plan)))
    if plan.colour:
        return 4 * pixels
    integral = all(float(fr.slope).is_integer() and float(fr.intercept).is_integer() for fr in plan.frames)
    return pixels * (2 if integral else 4)


def _modality_values(raw: np.ndarray, fr: FrameInfo, header: FileHeader) -> np.ndarray:
    """Stored values to modality units (HU for CT) with this frame's own rescale."""
    if header.modality_lut:
        return np.asarray(apply_modality_lut(raw, header.dataset))
    if fr.slope == 1.0 and fr.intercept == 0 and raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2:
        return raw  # as stored: no widened copy (the canvas takes int16, or widens once)
    if fr.slope == 1.0 and float(fr.intercept).is_integer() and abs(fr.intercept) < 2**30:
        out = raw.astype(np.int32)
        if fr.intercept:
            out += int(fr.intercept)
        return out
    whole = float(fr.slope).is_integer() and float(fr.intercept).is_integer()
    if whole and max(abs(fr.slope), abs(fr.intercept)) < 2**40:
        return raw.astype(np.int64) * int(fr.slope) + int(fr.intercept)
    return raw.astype(np.float32) * np.float32(fr.slope) + np.float32(fr.intercept)


def _safe_summary(plan: _Plan, header: FileHeader, shape: tuple[int, int, int]) -> dict[str, Any]:
    """PHI-free facts keyed by DICOM keyword, or by a snake_case name for what the loader measured
    (the dashboard gives them labels)."""
    ds = header.dataset
    out: dict[str, Any] = {"Modality": header.modality}
    for kw in _SUMMARY_KEYWORDS:
        v = lenient(ds, kw)
        if v not in (None, ""):
            out[kw] = str(v) if not isinstance(v, pydicom.multival.MultiValue) else "\\".join(str(x) for x in v)
    out["slices"], out["rows"], out["columns"] = shape
    out["spacing_mm"] = tuple(round(float(x), 4) for x in plan.spacing)
    out["orientation"] = orientation_name(slice_normal(plan.orientation))
    if plan.kind != "volume":  # a 2-D image: no orientation to speak of, spacing only if the file gives one
        del out["orientation"]
        if plan.frames[0].pixel_spacing is None or plan.kind == "gallery":
            del out["spacing_mm"]
    out["transfer_syntax"] = header.transfer_syntax.name
    out["BitsStored"] = header.bits_stored
    out["PhotometricInterpretation"] = header.photometric
    return out


def _volume_from(plan: _Plan, canvas: _Canvas, headers: dict[int, FileHeader]) -> Volume:
    first = plan.frames[0]
    header = headers[first.entry]
    ds = header.dataset
    iop = np.asarray(plan.orientation, dtype=float)
    row_dir, col_dir = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    if first.position is not None:
        positions = np.array([fr.position for fr in plan.frames], dtype=float)
    else:
        n = np.cross(row_dir, col_dir)
        positions = np.arange(len(plan.frames))[:, None] * plan.spacing[0] * n[None, :]
    description = str(lenient(ds, "SeriesDescription", "") or "").strip()
    if plan.label:
        description = f"{description} ({plan.label})" if description else plan.label
    modality = header.modality
    units = "HU" if modality == "CT" else str(lenient(ds, "RescaleType", "") or "").strip()
    if units.upper() == "HU":
        units = "HU"
    if canvas.rgb is not None or (plan.kind == "gallery" and units == "HU"):
        units = ""  # colour, or a CT study's screenshots and dose pages: no Hounsfield units
    return Volume(
        voxels=canvas.voxels,
        spacing=plan.spacing,
        series_uid=first.series_uid,
        modality=modality,
        warnings=list(plan.warnings),
        positions=positions,
        row_direction=row_dir,
        col_direction=col_dir,
        description=description,
        window=first.window if canvas.rgb is None else None,
        summary=_safe_summary(plan, header, canvas.voxels.shape),
        header=ds,
        padding=canvas.padding,
        invert=header.photometric == "MONOCHROME1",
        units=units,
        source_names=tuple(fr.name for fr in plan.frames),
        slice_headers=tuple(headers[fr.entry].dataset for fr in plan.frames),
        **_kind_fields(plan, canvas, header),
    )


def _kind_fields(plan: _Plan, canvas: _Canvas, header: FileHeader) -> dict[str, Any]:
    """The Volume fields of a loop, a projection or a gallery (nothing for a stack)."""
    if plan.kind == "volume":
        return {}
    first, ds = plan.frames[0], header.dataset
    if plan.kind == "gallery" or first.pixel_spacing is None:
        calibration = "pixels"
    elif header.modality in _PROJECTION:
        calibration = spacing_calibration(ds)
    else:
        calibration = "calibrated"
    grey = canvas.rgb is None
    return {
        "kind": plan.kind,
        "rgb": canvas.rgb,
        "frame_time_ms": (frame_time_ms(ds) or _trigger_step_ms(plan.frames)) if plan.kind == "loop" else None,
        "calibration": calibration,
        "frame_sizes": tuple((fr.rows, fr.cols) for fr in plan.frames) if plan.kind == "gallery" else (),
        "voi_lut": voi_lut_table(ds) if grey and plan.kind != "gallery" else None,
    }


def load_series(
    sources: Iterable[Any] | Any,
    progress: ProgressCallback | None = None,
    *,
    budget: Budget | None = None,
    zip_limits: ZipLimits | None = None,
    release_source: Callable[[int], Any] | None = None,
    memory: MemoryBudget | None = None,
    owner: str = "local",
) -> LoadResult:
    """Read DICOM files and assemble one volume per series (and per stack within it).

    Headers are read first (no pixels), files are grouped by SeriesInstanceUID and
    split by orientation, matrix and pixel spacing, sorted along the slice normal, and
    only then are pixels decoded, straight into one array per volume with each slice's
    own Rescale Slope/Intercept (or Modality LUT).

    No file can end the load: whatever one file raises, while it is read or decoded,
    becomes one ``skipped`` line for it in words.

    Parameters
    ----------
    sources : iterable
        Paths (files, folders searched recursively, .zip archives), ``(name, bytes)``
        pairs, or binary file-like objects with a ``.name`` (Streamlit uploads).
    progress : callable(done, total), optional
        Called as files are read; ``total`` is the number of files found, ``done``
        the number finished (decoded or skipped).
    budget : Budget, optional
        Per-file limits checked from the header before decoding.
    zip_limits : ZipLimits, optional
        Bounds for zip archives.
    release_source : callable(index), optional
        Called with an input's position in ``sources`` as soon as every file it held has
        been decoded or refused, so that the caller can free it (an upload, say) before the
        rest of the study is read: memory then holds one copy of the data, not two.
    memory : MemoryBudget, optional
        The server's budget (:func:`core.memory.server_budget`): each volume's voxels are
        reserved before they are allocated, and held until the Volume is collected;
        inflating and decoding reserve their buffers while they run. A refusal costs the
        series (or the file) a ``skipped`` line with the budget's message.
    owner : str
        Whose share of ``memory`` this load uses (a browser session's id).

    Returns
    -------
    LoadResult
        ``volumes`` largest first, ``skipped`` as ``(name, reason)`` pairs.
    """
    load = _Load(sources, progress, budget=budget or Budget(), zip_limits=zip_limits,
                 release_source=release_source, memory=memory, owner=owner)
    headers, frames = load.read_headers()
    plans, plan_skipped = _plan_volumes(frames, headers)
    load.skipped.extend(plan_skipped)
    plans = _within_memory_budget(plans, headers, load.budget, load.skipped)
    canvases = load.allocate(plans, headers)
    load.drop_unused(frames, plans)
    load.decode(plans, canvases, headers)
    volumes = load.assemble(plans, canvases, headers)
    return LoadResult(volumes=volumes, skipped=load.skipped, segmentations=load.segmentations)


class _Load:
    """The state of one `load_series` call: its inputs, progress, releases and memory."""

    def __init__(self, sources: Any, progress: ProgressCallback | None, *, budget: Budget,
                 zip_limits: ZipLimits | None, release_source: Callable[[int], Any] | None,
                 memory: MemoryBudget | None, owner: str) -> None:
        self.entries: list[Any]
        self.entries, self.skipped = expand_sources(sources, limits=zip_limits)
        self.segmentations: list[tuple[str, bytes]] = []
        self.total, self.done = len(self.entries), 0
        self.progress, self.release_source = progress, release_source
        self.budget, self.memory, self.owner = budget, memory, owner
        self.remaining: dict[int, int] = defaultdict(int)
        for e in self.entries:
            self.remaining[e.source] += 1
        if progress is not None:
            progress(0, self.total)

    def finished(self, i: int) -> None:
        """Entry i is no longer needed: drop our reference to its bytes, release its input if done."""
        entry = self.entries[i]
        if entry is None:
            return
        self.entries[i] = None
        self.remaining[entry.source] -= 1
        if self.remaining[entry.source] == 0 and self.release_source is not None and entry.source >= 0:
            self.release_source(entry.source)

    def tick(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)

    def transient(self, nbytes: int, what: str) -> Any:
        """A reservation for the duration of a ``with`` block (nothing without a budget)."""
        if self.memory is None:
            return contextlib.nullcontext()
        return self.memory.reserved(nbytes, owner=self.owner, what=what)

    def inflate_limit(self) -> int:
        limit = self.budget.max_inflated_bytes
        return limit if self.memory is None else min(limit, self.memory.available(self.owner) // 2)

    # -- step 1: headers -----------------------------------------------------------------

    def read_headers(self) -> tuple[dict[int, FileHeader], list[FrameInfo]]:
        headers: dict[int, FileHeader] = {}
        frames: list[FrameInfo] = []
        for i, entry in enumerate(self.entries):
            try:
                header = self._header_of(i, entry)
            except BaseException as exc:  # noqa: BLE001 - the per-file boundary: any failure is this file's
                _reraise_interrupts(exc)
                self.skipped.append((entry.name, unusable_reason(exc)))
                self.tick()
                self.finished(i)
                continue
            if self._kept_segmentation(i, entry, header):
                continue
            headers[i] = header
            frames.extend(header.frames)
        return headers, frames

    # -- segmentations (issue 18): kept whole for core.overlay, not stacked as images ----------

    def _kept_segmentation(self, i: int, entry: Any, header: FileHeader) -> bool:
        """Keep a DICOM SEG's bytes (True), or say nothing (False: not a segmentation)."""
        from core.overlay import SEG_SOP_CLASSES

        if str(lenient(header.dataset, "SOPClassUID", "") or "") not in SEG_SOP_CLASSES:
            return False
        kept = sum(len(data) for _, data in self.segmentations)
        if kept + entry.size > MAX_SEGMENTATION_BYTES:
            self.skipped.append((entry.name, f"refused: a segmentation of {entry.size / 2**20:,.1f} MB (at most "
                                             f"{MAX_SEGMENTATION_BYTES // 2**20} MB of segmentations are kept)"))
        else:
            try:
                self.segmentations.append((entry.name, bytes(entry.read())))
            except BaseException as exc:  # noqa: BLE001 - the per-file boundary, as read_headers
                _reraise_interrupts(exc)
                self.skipped.append((entry.name, unusable_reason(exc)))
        self.tick()
        self.finished(i)
        return True

    def _header_of(self, i: int, entry: Any) -> FileHeader:
        if entry.read_range is not None and entry.size > _HEADER_PREFIX:
            # Headers are small: try the file's beginning before reading all of it.
            try:
                header = read_header(entry.read_range(0, _HEADER_PREFIX), entry=i, name=entry.name,
                                     budget=self.budget, file_size=entry.size, inflate_limit=0)
                if not header.deflated:
                    return header
            except BaseException as exc:  # noqa: BLE001 - the whole file decides below
                _reraise_interrupts(exc)
                pass
        limit = self.inflate_limit()
        with self.transient(2 * limit if _maybe_deflated(entry) else 0, "inflating this deflated file"):
            return read_header(entry.read(), entry=i, name=entry.name, budget=self.budget, inflate_limit=limit)

    # -- step 2: memory for the voxels ---------------------------------------------------------

    def allocate(self, plans: list[_Plan], headers: dict[int, FileHeader]) -> list[_Canvas | None]:
        canvases: list[_Canvas | None] = []
        for plan in plans:
            try:
                canvases.append(_Canvas(plan, headers[plan.frames[0].entry].modality, self.memory, self.owner))
            except MemoryError as exc:
                self.skipped.extend((fr.name, unusable_reason(exc)) for fr in plan.frames)
                canvases.append(None)
        return canvases

    def drop_unused(self, frames: list[FrameInfo], plans: list[_Plan]) -> None:
        used = {fr.entry for plan in plans for fr in plan.frames}
        dropped = {fr.entry for fr in frames} - used
        if dropped:
            self.tick(len(dropped))
        for i in dropped:
            self.finished(i)

    # -- step 3: pixels ------------------------------------------------------------------

    def decode(self, plans: list[_Plan], canvases: list[_Canvas | None], headers: dict[int, FileHeader]) -> None:
        slots: dict[int, list[tuple[FrameInfo, int, int]]] = defaultdict(list)
        for v, plan in enumerate(plans):
            for k, fr in enumerate(plan.frames):
                slots[fr.entry].append((fr, v, k))
        for i in sorted(slots):
            header = headers[i]
            live = [(fr, canvas, k) for fr, v, k in slots[i] if (canvas := canvases[v]) is not None]
            if live:
                before = len(self.skipped)
                self._decode_file(i, header, live)
                self.skipped[before:] = _one_line_per_reason(self.skipped[before:], header.name, live)
            self.tick()
            self.finished(i)

    def _decode_colour_file(self, i: int, header: FileHeader, slots: list[tuple[FrameInfo, _Canvas, int]]) -> None:
        """Colour frames decoded one at a time by pydicom (YBR converted to RGB), palettes applied."""
        rows, cols = header.frames[0].rows, header.frames[0].cols
        frame_bytes = rows * cols * 3 * max(header.bits_allocated, 8) // 8
        try:
            entry = self.entries[i]
            if header.deflated:
                limit = self.inflate_limit()
                with self.transient(2 * limit, "inflating this deflated file"):
                    data = inflate_deflated(entry.read(), max_bytes=limit)
            else:
                data = entry.read()
                if not header.native:
                    _check_codestream_size(data, header)
            ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), force=True)
            if "TransferSyntaxUID" not in ds.file_meta:  # a file without meta: its encoding as read
                ds.file_meta.TransferSyntaxUID = header.transfer_syntax
        except BaseException as exc:  # noqa: BLE001 - the per-file boundary
            _reraise_interrupts(exc)
            self.skipped.extend((fr.name, _decode_reason(exc, header)) for fr, _, _ in slots)
            return
        for fr, canvas, k in slots:
            try:
                # pydicom's decoded frame, its RGB copy, the float copy of the luminance: reserved.
                with self.transient(frame_bytes * 4 + rows * cols * 8, "decoding this file's pixels"):
                    decoded = pixel_array(ds, index=fr.frame if header.n_frames > 1 else None)
                    if decoded.shape[:2] != (fr.rows, fr.cols):
                        raise SkipFile(f"damaged: the decoded image is {' x '.join(map(str, decoded.shape[:2]))} "
                                       f"pixels, the header says {fr.rows} x {fr.cols}")
                    canvas.put_rgb(k, rgb8(decoded, ds, photometric=header.photometric,
                                           bits_stored=header.bits_stored))
            except BaseException as exc:  # noqa: BLE001 - one frame must not end the load
                _reraise_interrupts(exc)
                self.skipped.append((fr.name, _decode_reason(exc, header)))

    def _decode_file(self, i: int, header: FileHeader, slots: list[tuple[FrameInfo, _Canvas, int]]) -> None:
        if header.photometric not in ("MONOCHROME1", "MONOCHROME2"):
            self._decode_colour_file(i, header, slots)
            return
        wanted = sorted({fr.frame or 0 for fr, _, _ in slots})
        try:
            raw_frames = self._raw_frames(i, header, wanted)
        except BaseException as exc:  # noqa: BLE001 - the per-file boundary
            _reraise_interrupts(exc)
            reason = _decode_reason(exc, header)
            self.skipped.extend((fr.name, reason) for fr, _, _ in slots)
            return
        for fr, canvas, k in slots:
            try:
                raw = raw_frames[fr.frame or 0]
                if isinstance(raw, BaseException):
                    self.skipped.append((fr.name, _decode_reason(raw, header)))
                    continue
                if raw.shape != (fr.rows, fr.cols):
                    raise SkipFile(f"damaged: the decoded image is {' x '.join(map(str, raw.shape))} pixels, "
                                   f"the header says {fr.rows} x {fr.cols}")
                values = _modality_values(raw, fr, header)
                if canvas.rgb is not None:  # a grey image in a gallery that holds colour
                    c, w = fr.window or ((128.0, 256.0) if header.bits_stored <= 8 else _value_window(values))
                    grey = window(values, c, w, invert=header.photometric == "MONOCHROME1")
                    canvas.put_rgb(k, np.repeat(grey[..., None], 3, axis=-1))
                    continue
                pad = _padding_of(raw, header)
                if canvas.modality == "CT":
                    low = values <= hu.PADDING_BELOW
                    if low.any():
                        pad = low if pad is None else (pad | low)
                canvas.put(k, values, pad)
            except BaseException as exc:  # noqa: BLE001 - one frame's values must not end the load
                _reraise_interrupts(exc)
                reason = exc.reason if isinstance(exc, SkipFile) else (
                    str(exc) if isinstance(exc, OverBudget) else
                    "pixel values could not be converted to modality units (the rescale or LUT does not fit them)")
                self.skipped.append((fr.name, reason))

    def _raw_frames(self, i: int, header: FileHeader, wanted: list[int]) -> dict[int, np.ndarray | BaseException]:
        entry = self.entries[i]
        frame_bytes = header.frames[0].rows * header.frames[0].cols * max(header.bits_allocated, 8) // 8
        if header.deflated:
            limit = self.inflate_limit()
            with self.transient(2 * limit, "inflating this deflated file"):  # the pieces, then the file
                data = inflate_deflated(entry.read(), max_bytes=limit)
                return _decoded_frames(data, header, wanted)
        if header.native and entry.read_range is not None and header.bits_allocated >= 8:
            with self.transient(frame_bytes * header.n_frames, "reading this file's pixels"):
                data = entry.read_range(header.pixel_offset, frame_bytes * header.n_frames)
                return _decoded_frames(data, header, wanted, base=0)
        decoded = 0 if header.native else frame_bytes * header.samples * 4 * len(wanted)
        data = entry.read()
        if not header.native:
            _check_codestream_size(data, header)
        with self.transient(decoded, "decoding this file's pixels"):
            return _decoded_frames(data, header, wanted)

    # -- step 4: volumes -------------------------------------------------------------------

    def assemble(self, plans: list[_Plan], canvases: list[_Canvas | None],
                 headers: dict[int, FileHeader]) -> list[Volume]:
        volumes: list[Volume] = []
        for plan, canvas in zip(plans, canvases, strict=True):
            if canvas is None:
                continue
            try:
                volume = self._volume(plan, canvas, headers)
            except BaseException as exc:  # noqa: BLE001 - one series must not end the load
                _reraise_interrupts(exc)
                canvas.release()
                reason = unusable_reason(exc).replace("could not be read", "could not be assembled", 1)
                self.skipped.extend((fr.name, reason) for fr in plan.frames if canvas is not None)
                continue
            if volume is not None:
                volumes.append(volume)
        volumes.sort(key=lambda vol: vol.voxels.size, reverse=True)
        return volumes

    def _volume(self, plan: _Plan, canvas: _Canvas, headers: dict[int, FileHeader]) -> Volume | None:
        if not canvas.done.all():
            kept_plan, kept_canvas = _without_missing(plan, canvas, headers)
            if kept_plan is None or kept_canvas is None:
                canvas.release()
                return None
            plan, canvas = kept_plan, kept_canvas
        volume = _volume_from(plan, canvas, headers)
        if self.memory is not None:
            for res in canvas.reservations:
                self.memory.hold(volume, res)
        return volume


_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203"}
_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
         "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def _codestream_size(data: bytes, syntax: str) -> tuple[int, int] | None:
    """(rows, columns) that the first compressed frame declares, or None if not found.

    Decoders allocate what the codestream declares: a 1 KB JPEG 2000 frame can ask for 8100 x 8100
    pixels under a 32 x 32 header. Reading the size first lets the loader refuse it unallocated.
    """
    if syntax in _J2K:
        at = data.find(b"\xff\x4f\xff\x51")  # SOC then SIZ (ISO 15444-1 A.5.1)
        if at < 0 or at + 22 > len(data):
            return None
        xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", data, at + 8)
        return ysiz - yo, xsiz - xo
    if syntax in _JPEG:
        i = data.find(b"\xff\xd8\xff")  # SOI, then marker segments up to the frame header
        if i < 0:
            return None
        i += 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if marker in _SOF:
                height, width = struct.unpack_from(">HH", data, i + 5)
                return height, width
            i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    return None


def _check_codestream_size(data: bytes, header: FileHeader) -> None:
    size = _codestream_size(data, str(header.transfer_syntax))
    rows, cols = header.frames[0].rows, header.frames[0].cols
    if size is not None and size != (rows, cols) and size[0] * size[1] > rows * cols:
        raise SkipFile(f"damaged: the compressed image declares {size[1]} x {size[0]} pixels, the header "
                       f"{cols} x {rows}")


def _maybe_deflated(entry: Any) -> bool:
    """Whether an entry may be a deflated file (worth reserving for its inflation)."""
    try:
        head = entry.read_range(0, 4096) if entry.read_range is not None else entry.read()[:4096]
    except BaseException as exc:  # noqa: BLE001 - the read below reports it
        _reraise_interrupts(exc)
        return False
    return b"1.2.840.10008.1.2.1.99" in head


def _one_line_per_reason(lines: list[tuple[str, str]], name: str,
                         slots: list[tuple[FrameInfo, Any, int]]) -> list[tuple[str, str]]:
    """One file's skipped lines with frames failing for the same reason told once: by the file's
    name when every frame failed alike, else as "name [frames 31 to 1000]" (a file saying 1,000
    frames of which 30 are there costs one line, not 970)."""
    if len(lines) < 2:
        return lines
    if len(lines) == len(slots) and len({reason for _, reason in lines}) == 1:
        return [(name, lines[0][1])]
    number = {fr.name: (fr.frame or 0) + 1 for fr, _, _ in slots}
    by_reason: dict[str, list[str]] = defaultdict(list)
    for line_name, reason in lines:
        by_reason[reason].append(line_name)
    out: list[tuple[str, str]] = []
    for reason, names in by_reason.items():
        frames = sorted(number[n] for n in names if n in number)
        if len(names) == 1 or len(frames) != len(names):
            out.extend((n, reason) for n in names)
        elif frames[-1] - frames[0] + 1 == len(frames):
            out.append((f"{name} [frames {frames[0]} to {frames[-1]}]", reason))
        else:
            out.append((f"{name} [{len(frames)} frames from {frames[0]} to {frames[-1]}]", reason))
    return out


def _decode_reason(exc: BaseException, header: FileHeader) -> str:
    if isinstance(exc, (SkipFile, MemoryError)) or not isinstance(exc, READ_ERRORS):
        return unusable_reason(exc, stage="decode")
    return f"pixel data could not be decoded ({header.transfer_syntax.name}): {_decode_hint(exc, header)}"


def _within_memory_budget(plans: list[_Plan], headers: dict[int, FileHeader], budget: Budget,
                          skipped: list[tuple[str, str]]) -> list[_Plan]:
    """Keep the largest volumes whose voxels fit the study budget; explain the others."""
    kept, used = [], 0
    for plan in sorted(plans, key=_plan_bytes, reverse=True):
        size = _plan_bytes(plan)
        if used + size > budget.max_study_bytes:
            reason = (f"refused: this series needs {size / 1e6:,.0f} MB and the study would exceed the memory "
                      f"budget of {budget.max_study_bytes / 1e6:,.0f} MB; load it on its own")
            skipped.extend((fr.name, reason) for fr in plan.frames)
            continue
        used += size
        kept.append(plan)
    return kept


def _decode_hint(exc: BaseException, header: FileHeader) -> str:
    msg = str(exc).lower()
    if "missing required dependencies" in msg or "no pixel data decoders" in msg or "no decoders" in msg \
            or "not supported" in msg or "unsupported" in msg:
        return "no decoder for this compression is installed, or it uses a variant none of them supports"
    if header.native:
        return "the pixel values are damaged or do not match what the header describes"
    return "the compressed data looks damaged or uses a variant the decoders do not support"


def _without_missing(plan: _Plan, canvas: _Canvas,
                     headers: dict[int, FileHeader]) -> tuple[_Plan | None, _Canvas | None]:
    """Drop slices whose pixels failed to decode and re-check the geometry of the rest."""
    keep = np.flatnonzero(canvas.done)
    if keep.size == 0:
        return None, None
    frames = [plan.frames[k] for k in keep]
    warnings = [w for w in plan.warnings if not w.startswith(("Missing slices", "Non-uniform", "Single slice"))]
    spacing = plan.spacing
    if frames[0].position is not None and plan.kind == "volume":
        geo = analyse_stack(np.array([fr.position for fr in frames]), slice_normal(plan.orientation),
                            nominal_spacing=plan.spacing[0])
        spacing = (geo.spacing, plan.spacing[1], plan.spacing[2])
        tilt_noted = any(x.startswith("Gantry") for x in warnings)
        warnings += [w for w in geo.warnings if not w.startswith("Gantry tilt") or not tilt_noted]
    lost = len(plan.frames) - len(frames)
    noun, whole = {"loop": ("frame", "loop"), "gallery": ("image", "gallery")}.get(plan.kind, ("slice", "stack"))
    warnings.append(f"{count(lost, noun)} of this {whole} could not be decoded and "
                    f"{'is' if lost == 1 else 'are'} left out.")
    new_plan = _Plan(frames, spacing, warnings, plan.orientation, plan.label, plan.kind, plan.colour)
    new_canvas = _Canvas.__new__(_Canvas)
    new_canvas.voxels = canvas.voxels[keep]
    new_canvas.rgb = None if canvas.rgb is None else canvas.rgb[keep]
    new_canvas.kind = canvas.kind
    new_canvas.padding = None if canvas.padding is None else canvas.padding[keep]
    new_canvas.done = np.ones(len(keep), dtype=bool)
    new_canvas.modality = canvas.modality
    new_canvas.memory, new_canvas.owner, new_canvas.reservations = canvas.memory, canvas.owner, canvas.reservations
    return new_plan, new_canvas

