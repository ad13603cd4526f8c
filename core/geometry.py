"""Slice geometry: the normal and its name, ordering along it, and spacing analysis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.numbers import decimal

__all__ = [
    "GeometryError",
    "StackGeometry",
    "analyse_stack",
    "orientation_name",
    "slice_normal",
]


class GeometryError(ValueError):
    """Raised when ImageOrientationPatient or ImagePositionPatient cannot define a stack."""


def orientation_name(normal: np.ndarray) -> str:
    """``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"oblique"`` from a slice normal."""
    a = np.abs(np.asarray(normal, dtype=float))
    if a.max() < 0.95:
        return "oblique"
    return ("sagittal", "coronal", "axial")[int(a.argmax())]


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
        raise GeometryError("(0020,0037) Image Orientation (Patient) row and column directions are parallel: "
                            f"{list(iop)}")
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
    return decimal(x) if abs(x) < 1e6 else f"{x:.3g}"  # the app's one way to write a length (core.numbers)


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
