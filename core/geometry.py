"""Slice geometry: the normal, ordering along it, spacing analysis and regular-grid resampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "GeometryError",
    "StackGeometry",
    "analyse_stack",
    "resample_regular",
    "slice_normal",
]


class GeometryError(ValueError):
    """Raised when ImageOrientationPatient or ImagePositionPatient cannot define a stack."""


def slice_normal(orientation: np.ndarray | list[float]) -> np.ndarray:
    """The unit slice normal of an ImageOrientationPatient (0020,0037) value.

    Parameters
    ----------
    orientation : (6,) array_like
        Row direction cosines followed by column direction cosines.

    Returns
    -------
    normal : (3,) ndarray of float64
        ``cross(row, col)``, normalised.
    """
    iop = np.asarray(orientation, dtype=float)
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise GeometryError(f"(0020,0037) Image Orientation (Patient) must be 6 finite numbers, got {orientation!r}")
    n = np.cross(iop[:3], iop[3:])
    norm = float(np.linalg.norm(n))
    if norm < 1e-3:
        raise GeometryError(f"(0020,0037) Image Orientation (Patient) row and column directions are parallel: {list(iop)}")
    return n / norm


@dataclass(frozen=True)
class StackGeometry:
    """What the positions of a stack of parallel slices say about it.

    Attributes
    ----------
    order : (N,) int ndarray
        Indices that sort the slices along the normal, ascending.
    plane_positions : (N,) float ndarray
        Position of each slice along the normal, in sorted order (mm).
    spacing : float
        Median distance between consecutive slice planes (mm).
    tilt_degrees : float
        Angle between the stacking direction and the normal; 0 when not sheared.
    warnings : list of str
        Problems in words.
    """

    order: np.ndarray
    plane_positions: np.ndarray
    spacing: float
    tilt_degrees: float
    warnings: list[str]


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if abs(x) < 1e6 else f"{x:.3g}"


def analyse_stack(
    positions: np.ndarray,
    normal: np.ndarray,
    *,
    nominal_spacing: float | None = None,
) -> StackGeometry:
    """Sort parallel slices along their normal and describe their spacing.

    Parameters
    ----------
    positions : (N, 3) array_like
        ImagePositionPatient (0020,0032) of each slice, in mm.
    normal : (3,) array_like
        Unit slice normal (see :func:`slice_normal`).
    nominal_spacing : float, optional
        Used only for a single slice, where positions cannot give a spacing
        (SpacingBetweenSlices or SliceThickness); 1 mm when absent.

    Returns
    -------
    StackGeometry
        Positions must be distinct: repeated positions are the caller's to split.
    """
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    n = np.asarray(normal, dtype=float)
    s = pos @ n
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    warnings: list[str] = []
    if len(pos) == 1:
        spacing = float(nominal_spacing) if nominal_spacing and nominal_spacing > 0 else 1.0
        warnings.append(
            f"Single slice: a 2D image, so the coronal, sagittal and 3D views have nothing to show "
            f"(slice spacing taken as {_fmt(spacing)} mm)."
        )
        return StackGeometry(order, s_sorted, spacing, 0.0, warnings)

    d = np.diff(s_sorted)
    spacing = float(np.median(d))
    if spacing <= 0:
        raise GeometryError("slices share one position along the normal; cannot form a stack")
    tol = max(0.01, 0.005 * spacing)

    # Shear: how far the line through the slice origins leans away from the normal.
    ordered = pos[order]
    step = ordered[-1] - ordered[0]
    along = float(np.dot(step, n))
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(step - along * n), abs(along)))) if along else 0.0
    if tilt >= 0.05:
        warnings.append(
            f"Gantry tilt: the stack is sheared by {tilt:.1f}° (each slice is shifted within its plane "
            f"relative to the previous one). Distances across slices and 3D views are distorted unless "
            f"the corrected geometry is used."
        )
    # Origins that wander off the line (other than the shear) also mean a non-rigid stack.
    if len(pos) > 2 and along:
        t = (s_sorted - s_sorted[0]) / along
        expected = ordered[0] + np.outer(t, step)
        off = float(np.max(np.linalg.norm(ordered - expected, axis=1)))
        if off > max(0.1, 0.05 * spacing):
            warnings.append(
                f"Irregular in-plane offsets: slice origins stray up to {_fmt(off)} mm from a straight line; "
                f"use the corrected geometry for measurements."
            )

    gaps = []
    irregular = []
    for i, di in enumerate(d):
        if abs(di - spacing) <= tol:
            continue
        ratio = di / spacing
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.15:
            gaps.append((i, di, int(round(ratio)) - 1))
        else:
            irregular.append(di)
    for i, di, missing in gaps:
        warnings.append(
            f"Missing slices: a gap of {_fmt(di)} mm between slices {i + 1} and {i + 2} "
            f"(at {_fmt(s_sorted[i])} and {_fmt(s_sorted[i + 1])} mm along the normal), "
            f"about {missing} slice{'s' if missing != 1 else ''} missing at the usual {_fmt(spacing)} mm spacing."
        )
    if irregular:
        warnings.append(
            f"Non-uniform spacing between slices: from {_fmt(float(d.min()))} to {_fmt(float(d.max()))} mm "
            f"(median {_fmt(spacing)} mm); the corrected geometry resamples it evenly."
        )
    return StackGeometry(order, s_sorted, spacing, tilt, warnings)


def _fill_value(volume) -> float:
    if volume.modality == "CT":
        return -1024.0
    return volume.value_range[0]


def resample_regular(volume, *, slice_spacing: float | None = None):
    """Resample a sheared or unevenly spaced stack onto a regular orthogonal grid.

    Every output voxel sits at its true patient position: each source slice is
    placed by its own ImagePositionPatient (so a gantry tilt's in-plane shift is
    honoured, not dropped), and values between slice planes are interpolated
    linearly along the normal. Voxels that no source slice covers are set to air
    (CT) or the volume minimum, and marked as padding.

    Parameters
    ----------
    volume : Volume
        The raw stack.
    slice_spacing : float, optional
        Output distance between planes in mm; the median source spacing by default.

    Returns
    -------
    Volume
        Same dtype, row/column spacing and directions; slices perpendicular to the
        normal and evenly spaced; ``positions`` give each output plane's origin.
    """
    from scipy import ndimage

    from core.volume import Volume

    src = volume.voxels
    nslices, rows, cols = src.shape
    if nslices < 2:
        return volume
    dz_src, dy, dx = volume.spacing
    n = volume.normal
    r, c = volume.row_direction, volume.col_direction
    p0 = volume.positions[0]
    rel = volume.positions - p0
    s = rel @ n
    u = rel @ r / dx
    v = rel @ c / dy
    dz = float(slice_spacing) if slice_spacing else float(np.median(np.diff(s)))
    if not (dz > 0):
        raise ValueError(f"slice_spacing must be positive, got {slice_spacing!r}")
    nk = int(np.floor((s[-1] - s[0]) / dz + 1e-6)) + 1
    x0, y0 = int(np.floor(u.min() + 1e-6)), int(np.floor(v.min() + 1e-6))
    out_cols = int(np.ceil(u.max() - 1e-6)) - x0 + cols
    out_rows = int(np.ceil(v.max() - 1e-6)) - y0 + rows
    fill = _fill_value(volume)
    pad_src = volume.padding_mask()

    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def placed(i: int) -> tuple[np.ndarray, np.ndarray]:
        """Source slice i on the output grid, and where it is padding or absent."""
        if i not in cache:
            offset = (y0 - v[i], x0 - u[i])
            img = ndimage.affine_transform(
                src[i].astype(np.float32), [1.0, 1.0], offset=offset,
                output_shape=(out_rows, out_cols), order=1, cval=np.nan, mode="constant",
            )
            absent = np.isnan(img)
            if pad_src is not None:
                pad = ndimage.affine_transform(
                    pad_src[i].astype(np.float32), [1.0, 1.0], offset=offset,
                    output_shape=(out_rows, out_cols), order=0, cval=1.0, mode="constant",
                )
                absent |= pad > 0.5
            img[np.isnan(img)] = fill
            for key in [k for k in cache if k < i - 1]:
                del cache[key]
            cache[i] = (img, absent)
        return cache[i]

    out = np.empty((nk, out_rows, out_cols), dtype=src.dtype)
    pad_out = np.zeros((nk, out_rows, (out_cols + 7) // 8), dtype=np.uint8)
    any_pad = False
    integral = np.issubdtype(src.dtype, np.integer)
    for k in range(nk):
        sk = s[0] + k * dz
        i = int(np.clip(np.searchsorted(s, sk, side="right") - 1, 0, nslices - 2))
        w = float(np.clip((sk - s[i]) / (s[i + 1] - s[i]), 0.0, 1.0))
        a, pa = placed(i)
        b, pb = placed(i + 1)
        plane = a * (1.0 - w) + b * w if w > 0 else a.copy()
        # Where only one neighbour has data, take it rather than blending with air.
        only_b, only_a = pa & ~pb, pb & ~pa
        plane[only_b] = b[only_b]
        plane[only_a] = a[only_a]
        absent = (pa if w < 0.5 else pb) | (pa & pb)
        plane[absent] = fill
        out[k] = np.rint(plane) if integral else plane
        if absent.any():
            any_pad = True
            pad_out[k] = np.packbits(absent, axis=-1)

    origin = p0 + x0 * dx * r + y0 * dy * c
    positions = origin[None, :] + np.arange(nk)[:, None] * dz * n[None, :]
    notes = []
    if volume.tilt_degrees >= 0.05:
        notes.append(f"gantry tilt of {volume.tilt_degrees:.1f}° removed")
    notes.append(f"{nslices} source slices resampled to {nk} planes {_fmt(dz)} mm apart")
    warning = "Corrected geometry: " + "; ".join(notes) + " (linear interpolation between slice planes)."
    return Volume(
        voxels=out,
        spacing=(dz, dy, dx),
        series_uid=volume.series_uid,
        modality=volume.modality,
        warnings=[warning],
        positions=positions,
        row_direction=r,
        col_direction=c,
        description=volume.description,
        window=volume.window,
        summary=dict(volume.summary, corrected_geometry=True),
        header=volume.header,
        padding=pad_out if any_pad else None,
        invert=volume.invert,
        units=volume.units,
        source_names=(),
    )
