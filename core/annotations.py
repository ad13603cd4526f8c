"""Measurements drawn on the explorer's views: what was drawn, where, and what it measures.

The browser draws and moves them; this module holds their shape and computes their values
exactly from the volume (for the list, the CSV and the DICOM SR), so the figures a user exports
never depend on what the browser had cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["KINDS", "VALUE_KEYS", "Kind", "Measurement"]

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
