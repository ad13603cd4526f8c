"""`load_series`: from files to volumes, with every unused input explained."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, pixel_array

from core.geometry import GeometryError, analyse_stack, slice_normal
from core.headers import READ_ERRORS, Budget, FileHeader, FrameInfo, SkipFile, read_header
from core.sources import ZipLimits, expand_sources
from core.volume import Volume

__all__ = ["LoadResult", "load_series", "orientation_name"]

ProgressCallback = Callable[[int, int], Any]

CT_AIR = -1024
_HEADER_PREFIX = 64 * 1024
CT_PADDING_BELOW = -1500  # no tissue or air reads below this; -2000/-3024 mark outside the scan circle

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


def _ctx_error(exc: BaseException) -> str:
    """A message for an unexpected parse error that carries no file content (no PHI)."""
    kind = type(exc).__name__
    if isinstance(exc, MemoryError):
        return "refused: reading it would need more memory than is available"
    if isinstance(exc, RecursionError):
        return "refused: the file's structure is nested too deeply to read safely"
    return f"could not be read as DICOM ({kind}); the file may be damaged or not DICOM"


def orientation_name(normal: np.ndarray) -> str:
    """``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"oblique"`` from a slice normal."""
    a = np.abs(np.asarray(normal, dtype=float))
    if a.max() < 0.95:
        return "oblique"
    return ("sagittal", "coronal", "axial")[int(a.argmax())]


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


def _split_repeats(frames: list[FrameInfo], normal: np.ndarray) -> tuple[list[list[FrameInfo]], list[str], list[tuple[str, str]]]:
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
            skipped.append((fr.name, f"same position as {members[0].name} (repeated position in the series); one slice per position kept"))
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
        stacks = _cluster_orientation(series_frames)
        stacks.sort(key=len, reverse=True)
        for stack_no, stack in enumerate(stacks):
            first = stack[0]
            ds = headers[first.entry].dataset
            dy, dx = first.pixel_spacing or (1.0, 1.0)
            base_warnings: list[str] = []
            if first.pixel_spacing is None:
                base_warnings.append("No (0028,0030) Pixel Spacing: 1 mm pixels assumed, so distances are not in true mm.")
            image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
            label = "localizer" if "LOCALIZER" in image_type else ""
            if len(stacks) > 1:
                base_warnings.append(
                    f"This series holds {len(stacks)} stacks of different orientation or size; "
                    f"this is stack {stack_no + 1} ({len(stack)} slices), kept apart from the others."
                )

            if first.position is None or first.orientation is None:
                stack.sort(key=lambda fr: (fr.instance_number is None, fr.instance_number or 0, fr.frame or 0, fr.name))
                nominal = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
                dz = float(nominal) if nominal not in (None, "") and float(nominal) > 0 else 1.0
                warnings = base_warnings + [
                    "No (0020,0032) Image Position / (0020,0037) Image Orientation: slices are ordered by "
                    f"InstanceNumber and frame, {dz:g} mm apart as declared, and the patient orientation is unknown."
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
                nominal = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
                try:
                    nominal_f = float(nominal) if nominal not in (None, "") else None
                except (TypeError, ValueError):
                    nominal_f = None
                geo = analyse_stack(positions, normal, nominal_spacing=nominal_f)
                ordered = [part[i] for i in geo.order]
                plans.append(
                    _Plan(ordered, (geo.spacing, dy, dx), base_warnings + notes + geo.warnings, first.orientation, label)
                )
    return plans, skipped


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
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=(header.pixel_offset if base is None else base) + frame * count * itemsize)
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


def _decoded_frames(data: bytes, header: FileHeader, wanted: list[int], base: int | None = None) -> dict[int, np.ndarray]:
    """Raw stored values of the wanted frames (``base``: where pixel data starts in ``data``)."""
    if header.native:
        return {f: _native_frame(data, header, f, base) for f in wanted}
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data), force=True)
    if header.n_frames == 1:
        return {0: pixel_array(ds, raw=True)}
    return {f: pixel_array(ds, index=f, raw=True) for f in wanted}


def _padding_of(raw: np.ndarray, header: FileHeader) -> np.ndarray | None:
    if header.padding_value is None:
        return None
    lo = header.padding_value
    hi = header.padding_limit if header.padding_limit is not None else lo
    lo, hi = min(lo, hi), max(lo, hi)
    mask = (raw >= lo) & (raw <= hi)
    return mask if mask.any() else None


class _Canvas:
    """One volume's voxel array, filled slice by slice, widened to float32 only if needed."""

    def __init__(self, plan: _Plan, modality: str) -> None:
        shape = (len(plan.frames), plan.frames[0].rows, plan.frames[0].cols)
        integral = all(float(fr.slope).is_integer() and float(fr.intercept).is_integer() for fr in plan.frames)
        self.voxels = np.empty(shape, dtype=np.int16 if integral else np.float32)
        self.padding: np.ndarray | None = None
        self.done = np.zeros(shape[0], dtype=bool)
        self.modality = modality

    def put(self, k: int, values: np.ndarray, pad: np.ndarray | None) -> None:
        if self.voxels.dtype == np.int16:
            lo, hi = (values.min(), values.max()) if values.size else (0, 0)
            if lo < -32768 or hi > 32767 or not np.issubdtype(values.dtype, np.integer):
                self.voxels = self.voxels.astype(np.float32)
        if pad is not None and pad.any():
            if self.padding is None:
                s, r, c = self.voxels.shape
                self.padding = np.zeros((s, r, (c + 7) // 8), dtype=np.uint8)
            self.padding[k] = np.packbits(pad, axis=-1)
            values = values.copy() if not values.flags.writeable else values
            values[pad] = CT_AIR if self.modality == "CT" else 0
        self.voxels[k] = values
        self.done[k] = True


def _modality_values(raw: np.ndarray, fr: FrameInfo, header: FileHeader) -> np.ndarray:
    """Stored values to modality units (HU for CT) with this frame's own rescale."""
    if header.modality_lut:
        return np.asarray(apply_modality_lut(raw, header.dataset))
    if fr.slope == 1.0 and float(fr.intercept).is_integer():
        out = raw.astype(np.int32)
        if fr.intercept:
            out += int(fr.intercept)
        return out
    if float(fr.slope).is_integer() and float(fr.intercept).is_integer():
        return raw.astype(np.int64) * int(fr.slope) + int(fr.intercept)
    return raw.astype(np.float32) * np.float32(fr.slope) + np.float32(fr.intercept)


def _safe_summary(plan: _Plan, header: FileHeader, shape: tuple[int, int, int]) -> dict[str, Any]:
    ds = header.dataset
    out: dict[str, Any] = {"Modality": header.modality}
    for kw in _SUMMARY_KEYWORDS:
        v = ds.get(kw)
        if v not in (None, ""):
            out[kw] = str(v) if not isinstance(v, pydicom.multival.MultiValue) else "\\".join(str(x) for x in v)
    out["Slices"], out["Rows"], out["Columns"] = shape
    out["Spacing (mm)"] = tuple(round(float(x), 4) for x in plan.spacing)
    out["Orientation"] = orientation_name(slice_normal(plan.orientation))
    out["Transfer syntax"] = header.transfer_syntax.name
    out["Bits stored"] = header.bits_stored
    out["Photometric"] = header.photometric
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
    description = str(ds.get("SeriesDescription", "") or "").strip()
    if plan.label:
        description = f"{description} ({plan.label})" if description else plan.label
    modality = header.modality
    units = "HU" if modality == "CT" else str(ds.get("RescaleType", "") or "").strip()
    if units.upper() == "HU":
        units = "HU"
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
        window=first.window,
        summary=_safe_summary(plan, header, canvas.voxels.shape),
        header=ds,
        padding=canvas.padding,
        invert=header.photometric == "MONOCHROME1",
        units=units,
        source_names=tuple(fr.name for fr in plan.frames),
        slice_headers=tuple(headers[fr.entry].dataset for fr in plan.frames),
    )


def load_series(
    sources: Iterable[Any] | Any,
    progress: ProgressCallback | None = None,
    *,
    budget: Budget | None = None,
    zip_limits: ZipLimits | None = None,
    release_source: Callable[[int], Any] | None = None,
) -> LoadResult:
    """Read DICOM files and assemble one volume per series (and per stack within it).

    Headers are read first (no pixels), files are grouped by SeriesInstanceUID and
    split by orientation, matrix and pixel spacing, sorted along the slice normal, and
    only then are pixels decoded, straight into one array per volume with each slice's
    own Rescale Slope/Intercept.

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

    Returns
    -------
    LoadResult
        ``volumes`` largest first, ``skipped`` as ``(name, reason)`` pairs.
    """
    entries, skipped = expand_sources(sources, limits=zip_limits)
    total = len(entries)
    done = 0
    remaining: dict[int, int] = defaultdict(int)
    for e in entries:
        remaining[e.source] += 1

    def finished(i: int) -> None:
        """Entry i is no longer needed: drop our reference to its bytes, release its input if done."""
        entry = entries[i]
        if entry is None:
            return
        entries[i] = None  # type: ignore[call-overload]
        remaining[entry.source] -= 1
        if remaining[entry.source] == 0 and release_source is not None and entry.source >= 0:
            release_source(entry.source)

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)

    headers: dict[int, FileHeader] = {}
    frames: list[FrameInfo] = []
    for i, entry in enumerate(entries):
        try:
            header = None
            if entry.read_range is not None and entry.size > _HEADER_PREFIX:
                # Headers are small: try the file's beginning before reading all of it.
                try:
                    header = read_header(entry.read_range(0, _HEADER_PREFIX), entry=i, name=entry.name,
                                         budget=budget, file_size=entry.size)
                except (SkipFile, *READ_ERRORS):
                    header = None
            if header is None:
                data = entry.read()
                header = read_header(data, entry=i, name=entry.name, budget=budget)
        except SkipFile as exc:
            skipped.append((entry.name, exc.reason))
            tick()
            finished(i)
            continue
        except READ_ERRORS as exc:
            skipped.append((entry.name, _ctx_error(exc)))
            tick()
            finished(i)
            continue
        finally:
            data = None  # noqa: F841  (drop the file's bytes before reading the next)
        headers[i] = header
        frames.extend(header.frames)

    plans, plan_skipped = _plan_volumes(frames, headers)
    skipped.extend(plan_skipped)
    plans = _within_memory_budget(plans, headers, budget or Budget(), skipped)
    used = {(fr.entry, fr.frame) for plan in plans for fr in plan.frames}
    dropped_entries = {fr.entry for fr in frames} - {e for e, _ in used}
    if dropped_entries:
        tick(len(dropped_entries))
    for i in dropped_entries:
        finished(i)

    canvases = [_Canvas(plan, headers[plan.frames[0].entry].modality) for plan in plans]
    slots: dict[int, list[tuple[FrameInfo, int, int]]] = defaultdict(list)
    for v, plan in enumerate(plans):
        for k, fr in enumerate(plan.frames):
            slots[fr.entry].append((fr, v, k))

    for i in sorted(slots):
        header = headers[i]
        wanted = sorted({fr.frame or 0 for fr, _, _ in slots[i]})
        try:
            entry = entries[i]
            if header.native and entry.read_range is not None and header.bits_allocated >= 8:
                frame_bytes = header.frames[0].rows * header.frames[0].cols * header.bits_allocated // 8
                data = entry.read_range(header.pixel_offset, frame_bytes * header.n_frames)
                raw_frames = _decoded_frames(data, header, wanted, base=0)
            else:
                data = entry.read()
                raw_frames = _decoded_frames(data, header, wanted)
        except READ_ERRORS as exc:
            reason = f"pixel data could not be decoded ({header.transfer_syntax.name}): {_decode_hint(exc, header)}"
            for fr, _, _ in slots[i]:
                skipped.append((fr.name, reason))
            tick()
            finished(i)
            continue
        for fr, v, k in slots[i]:
            try:
                raw = raw_frames[fr.frame or 0]
                if raw.shape != (fr.rows, fr.cols):
                    raise SkipFile(f"decoded frame is {raw.shape}, the header says {fr.rows} x {fr.cols}")
                values = _modality_values(raw, fr, header)
                pad = _padding_of(raw, header)
                if canvases[v].modality == "CT":
                    low = values <= CT_PADDING_BELOW
                    if low.any():
                        pad = low if pad is None else (pad | low)
                canvases[v].put(k, values, pad)
            except SkipFile as exc:
                skipped.append((fr.name, exc.reason))
            except READ_ERRORS as exc:
                skipped.append((fr.name, f"pixel values could not be converted ({type(exc).__name__})"))
        data = raw_frames = None
        tick()
        finished(i)

    volumes: list[Volume] = []
    for plan, canvas in zip(plans, canvases):
        if not canvas.done.all():
            plan, canvas = _without_missing(plan, canvas, headers)
            if plan is None:
                continue
        volumes.append(_volume_from(plan, canvas, headers))
    volumes.sort(key=lambda vol: vol.voxels.size, reverse=True)
    return LoadResult(volumes=volumes, skipped=skipped)


def _within_memory_budget(plans: list[_Plan], headers: dict[int, FileHeader], budget: Budget,
                          skipped: list[tuple[str, str]]) -> list[_Plan]:
    """Keep the largest volumes whose voxels fit the study budget; explain the others."""
    kept, used = [], 0
    for plan in sorted(plans, key=lambda p: len(p.frames) * p.frames[0].rows * p.frames[0].cols, reverse=True):
        integral = all(float(fr.slope).is_integer() and float(fr.intercept).is_integer() for fr in plan.frames)
        size = len(plan.frames) * plan.frames[0].rows * plan.frames[0].cols * (2 if integral else 4)
        if used + size > budget.max_study_bytes:
            reason = (f"refused: this series needs {size / 1e6:,.0f} MB and the study would exceed the memory "
                      f"budget of {budget.max_study_bytes / 1e6:,.0f} MB; load it on its own")
            skipped.extend((fr.name, reason) for fr in plan.frames)
            continue
        used += size
        kept.append(plan)
    return kept


def _decode_hint(exc: BaseException, header: FileHeader) -> str:
    if isinstance(exc, MemoryError):
        return "not enough memory to decode it"
    msg = str(exc).lower()
    if "missing required dependencies" in msg or "no pixel data decoders" in msg or "no decoders" in msg:
        return "no decoder for this compression is installed"
    return f"the compressed data looks damaged or uses an unsupported variant ({type(exc).__name__})"


def _without_missing(plan: _Plan, canvas: _Canvas, headers: dict[int, FileHeader]) -> tuple[_Plan | None, _Canvas | None]:
    """Drop slices whose pixels failed to decode and re-check the geometry of the rest."""
    keep = np.flatnonzero(canvas.done)
    if keep.size == 0:
        return None, None
    frames = [plan.frames[k] for k in keep]
    warnings = [w for w in plan.warnings if not w.startswith(("Missing slices", "Non-uniform", "Single slice"))]
    spacing = plan.spacing
    if frames[0].position is not None:
        geo = analyse_stack(np.array([fr.position for fr in frames]), slice_normal(plan.orientation),
                            nominal_spacing=plan.spacing[0])
        spacing = (geo.spacing, plan.spacing[1], plan.spacing[2])
        warnings += [w for w in geo.warnings if not w.startswith("Gantry tilt") or not any(x.startswith("Gantry") for x in warnings)]
    warnings.append(f"{len(plan.frames) - len(frames)} slice(s) of this stack could not be decoded and are left out.")
    new_plan = _Plan(frames, spacing, warnings, plan.orientation, plan.label)
    new_canvas = _Canvas.__new__(_Canvas)
    new_canvas.voxels = canvas.voxels[keep]
    new_canvas.padding = None if canvas.padding is None else canvas.padding[keep]
    new_canvas.done = np.ones(len(keep), dtype=bool)
    new_canvas.modality = canvas.modality
    return new_plan, new_canvas

