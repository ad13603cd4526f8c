"""Measurements drawn on the explorer's views: what was drawn, where, and what it measures.

The browser draws and moves them; this module holds their shape and computes their values
exactly from the volume (for the list, the CSV and the DICOM SR), so the figures a user exports
never depend on what the browser had cached.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["CSV_COLUMNS", "KINDS", "VALUE_KEYS", "Kind", "Measurement", "measure", "measurement_names",
           "measurement_rows", "measurements_csv", "region_mask", "value_columns"]

Kind = Literal["length", "angle", "ellipse", "rectangle", "point"]
KINDS: tuple[Kind, ...] = ("length", "angle", "ellipse", "rectangle", "point")


@dataclass(frozen=True)
class Measurement:
    """One measurement on one plane of a volume.

    Parameters
    ----------
    kind : {"length", "angle", "ellipse", "rectangle", "point"}
        Length: two points. Angle: three points, the vertex in the middle. Ellipse and
        rectangle: two opposite corners of the bounding box. Point: one point.
    axis : int
        The view it was drawn on, by the axis it holds fixed: 0 axial, 1 coronal, 2 sagittal
        (``core.mpr.VIEW_NAMES``).
    index : int
        The slice along ``axis`` it lies on (0-based).
    points : tuple of (row, col) float pairs
        In the array coordinates of that plane: ``row`` runs along ``core.mpr.IN_PLANE[axis][0]``
        and ``col`` along ``IN_PLANE[axis][1]`` of the volume's voxel array, with voxel centres at
        integers (so a plane spans ``-0.5 .. n - 0.5``). Not flipped for display.
    label : str
        The user's name for it (may be empty).
    id : str
        Stable identity while it is edited (set by the browser).
    """

    kind: Kind
    axis: int
    index: int
    points: tuple[tuple[float, float], ...]
    label: str = ""
    id: str = field(default="", compare=False)


# The values each kind measures (the keys of ``measure``'s answer, the CSV columns and the SR's items):
#   length: "length_mm";  angle: "angle_deg";  point: "value" (modality units), "x_mm", "y_mm", "z_mm" (LPS);
#   ellipse and rectangle: "mean", "sd", "min", "max" (modality units, padding excluded), "area_mm2", "n" (voxels).
VALUE_KEYS: dict[str, tuple[str, ...]] = {
    "length": ("length_mm",),
    "angle": ("angle_deg",),
    "point": ("value", "x_mm", "y_mm", "z_mm"),
    "ellipse": ("mean", "sd", "min", "max", "area_mm2", "n"),
    "rectangle": ("mean", "sd", "min", "max", "area_mm2", "n"),
}


def _plane_spacing(volume: Volume, axis: int) -> tuple[float, float]:
    """(row_mm, col_mm) of the plane that holds ``axis`` fixed."""
    from core.mpr import IN_PLANE

    down, across = IN_PLANE[axis]
    return float(volume.spacing[down]), float(volume.spacing[across])


def _nearest(x: float, n: int) -> int:
    # Half up, as the browser's Math.round; clipped to the plane.
    return int(min(max(np.floor(x + 0.5), 0), n - 1))


def region_mask(kind: Kind, points: tuple[tuple[float, float], ...], shape: tuple[int, int]) -> np.ndarray:
    """The pixels of a rectangle or ellipse ROI on a plane of ``shape``, as a bool (R, C) array.

    A pixel counts when its centre (integer row and column) lies inside the box spanned by the two
    points (rectangle), or inside the ellipse inscribed in that box (ellipse), edges included.
    """
    if kind not in ("ellipse", "rectangle"):
        raise ValueError(f"kind must be 'ellipse' or 'rectangle', got {kind!r}")
    (ra, ca), (rb, cb) = points
    r0, r1, c0, c1 = min(ra, rb), max(ra, rb), min(ca, cb), max(ca, cb)
    rows = np.arange(shape[0], dtype=np.float64)[:, None]
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    mask = (rows >= r0) & (rows <= r1) & (cols >= c0) & (cols <= c1)
    if kind == "ellipse":
        a, b = (r1 - r0) / 2, (c1 - c0) / 2
        if a <= 0 or b <= 0:
            return np.zeros(shape, bool)
        u, v = (rows - (r0 + r1) / 2) / a, (cols - (c0 + c1) / 2) / b
        mask &= u * u + v * v <= 1
    return mask


def measure(volume: Volume, m: Measurement) -> dict[str, float]:
    """The values of ``m`` on ``volume``, exactly (``VALUE_KEYS[m.kind]``).

    Lengths and angles use the plane's own pixel spacing (rows and columns may differ, as on the
    coronal and sagittal views of a volume with thick slices). ROI statistics use the voxels whose
    centres lie inside the shape, padding excluded (as :func:`core.measure.roi_stats`); SD is the
    population SD; ``area_mm2`` is the number of voxels used times a pixel's area. An ROI over
    padding only gives ``n == 0`` and NaN statistics.

    Raises
    ------
    ValueError
        If the axis, slice or number of points does not fit the volume or the kind.
    """
    from core.measure import value_at, values_stats
    from core.mpr import IN_PLANE, slab

    n_points = {"length": 2, "angle": 3, "ellipse": 2, "rectangle": 2, "point": 1}
    if m.kind not in n_points:
        raise ValueError(f"kind must be one of {KINDS}, got {m.kind!r}")
    if m.axis not in (0, 1, 2) or not 0 <= m.index < volume.shape[m.axis]:
        raise ValueError(f"slice {m.index} on axis {m.axis} is outside the volume of shape {volume.shape}")
    if len(m.points) != n_points[m.kind]:
        raise ValueError(f"a {m.kind} has {n_points[m.kind]} points, got {len(m.points)}")
    row_mm, col_mm = _plane_spacing(volume, m.axis)
    pts = np.asarray(m.points, dtype=np.float64)
    if m.kind == "length":
        dr, dc = pts[1] - pts[0]
        return {"length_mm": float(np.hypot(dr * row_mm, dc * col_mm))}
    if m.kind == "angle":
        u = (pts[0] - pts[1]) * (row_mm, col_mm)
        w = (pts[2] - pts[1]) * (row_mm, col_mm)
        nu, nw = float(np.hypot(*u)), float(np.hypot(*w))
        if nu == 0 or nw == 0:
            return {"angle_deg": float("nan")}
        return {"angle_deg": float(np.degrees(np.arccos(np.clip(np.dot(u, w) / (nu * nw), -1.0, 1.0))))}
    down, across = IN_PLANE[m.axis]
    if m.kind == "point":
        ijk = [0, 0, 0]
        ijk[m.axis] = m.index
        ijk[down] = _nearest(pts[0, 0], volume.shape[down])
        ijk[across] = _nearest(pts[0, 1], volume.shape[across])
        pv = value_at(volume, *ijk)
        x, y, z = pv.patient_mm
        return {"value": float("nan") if pv.padding else pv.value, "x_mm": x, "y_mm": y, "z_mm": z}
    plane = slab(volume.voxels, m.axis, m.index)
    mask = region_mask(m.kind, m.points, plane.shape)
    padding = volume.padding_plane(m.axis, m.index)
    if padding is not None:
        mask &= ~padding
    stats = values_stats(plane[mask], pixel_area_mm2=row_mm * col_mm)
    return {"mean": stats.mean, "sd": stats.sd, "min": stats.min, "max": stats.max, "area_mm2": stats.area_mm2,
            "n": float(stats.n)}


CSV_COLUMNS: dict[str, str] = {
    "length_mm": "Length (mm)", "angle_deg": "Angle (degrees)", "value": "Value", "x_mm": "x (mm, LPS)",
    "y_mm": "y (mm, LPS)", "z_mm": "z (mm, LPS)", "mean": "Mean", "sd": "SD", "min": "Min", "max": "Max",
    "area_mm2": "Area (mm²)", "n": "Voxels",
}
"""The CSV's header for each value key, before the modality's unit is added (see :func:`value_columns`)."""

_IN_MODALITY_UNITS = ("value", "mean", "sd", "min", "max")

KIND_NAMES: dict[str, str] = {"length": "Length", "angle": "Angle", "ellipse": "Ellipse", "rectangle": "Rectangle",
                              "point": "Point"}


def value_columns(units: str) -> dict[str, str]:
    """The column name of each value key, the values in the modality's units with their unit in
    brackets: ``"Mean (HU)"`` (``"Mean (stored units)"`` when the series names none)."""
    unit = units or "stored units"
    return {k: f"{name} ({unit})" if k in _IN_MODALITY_UNITS else name for k, name in CSV_COLUMNS.items()}


def measurement_names(measurements: Sequence[Measurement]) -> list[str]:
    """Each measurement's name, numbered within its kind in the order drawn: ``Length 1``, ``Length 2``,
    ``Angle 1`` (as the views' list names them)."""
    seen: dict[str, int] = {}
    names = []
    for m in measurements:
        seen[m.kind] = seen.get(m.kind, 0) + 1
        names.append(f"{KIND_NAMES[m.kind]} {seen[m.kind]}")
    return names


def measurement_rows(volume: Volume, measurements: Sequence[Measurement], *,
                     measured: Callable[[Volume, Measurement], dict[str, float]] | None = None,
                     ) -> list[dict[str, object]]:
    """One row per measurement: its name, view, slice (counted from 1), label and values (``value_columns``;
    NaN where its kind has no such value). ``measured`` gives the values (default :func:`measure`; a
    caller may pass a cached one)."""
    measured = measured or measure
    from core.mpr import VIEW_NAMES

    columns = value_columns(volume.units)
    rows: list[dict[str, object]] = []
    for name, m in zip(measurement_names(measurements), measurements, strict=True):
        values = measured(volume, m)
        row: dict[str, object] = {"Measurement": name, "View": VIEW_NAMES[m.axis], "Slice": m.index + 1,
                                  "Label": m.label}
        row.update({columns[k]: values.get(k, float("nan")) for k in columns})
        rows.append(row)
    return rows


def measurements_csv(volume: Volume, measurements: Sequence[Measurement]) -> bytes:
    """The measurements and their exact values as CSV (UTF-8), one line each; empty cells where a
    kind has no such value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Measurement", "View", "Slice", "Label", *value_columns(volume.units).values()])
    for row in measurement_rows(volume, measurements):
        writer.writerow(["" if isinstance(v, float) and np.isnan(v) else (f"{v:.6g}" if isinstance(v, float) else v)
                         for v in row.values()])
    return out.getvalue().encode("utf-8")
