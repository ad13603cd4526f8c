"""Multiplanar reformatting: planes and slabs of a volume, their display aspect and orientation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from core.geometry import orientation_name

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = [
    "AXES",
    "IN_PLANE",
    "VIEW_AXES",
    "VIEW_NAMES",
    "PlaneInfo",
    "SlabMode",
    "orientation_letter",
    "plane_info",
    "slab",
    "slab_width_slices",
]

SlabMode = Literal["mip", "minip", "mean"]

# Axis of the (slices, rows, cols) array that a view holds fixed: 0 is the acquired plane
# (axial for an axial CT), 1 fixes a row (coronal for axial CT), 2 fixes a column (sagittal).
AXES = (0, 1, 2)
# The view that holds each axis fixed, named as for an axial acquisition, and back.
VIEW_NAMES = {0: "Axial", 1: "Coronal", 2: "Sagittal"}
VIEW_AXES = {name: axis for axis, name in VIEW_NAMES.items()}
# The array axes that run down and across the view of each axis.
IN_PLANE = {0: (1, 2), 1: (0, 2), 2: (0, 1)}


def orientation_letter(direction: np.ndarray, *, threshold: float = 0.25) -> str:
    """Patient-direction letters (R/L, A/P, S/I) of an LPS direction vector.

    The dominant component comes first; others above ``threshold`` follow, so an
    oblique direction reads like ``"LA"``.
    """
    d = np.asarray(direction, dtype=float)
    d = d / (np.linalg.norm(d) or 1.0)
    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    order = np.argsort(-np.abs(d))
    out = [letters[a][int(d[a] > 0)] for a in order if abs(d[a]) >= threshold]
    return "".join(out) or "?"


@dataclass(frozen=True)
class PlaneInfo:
    """How a view of one axis is laid out on screen.

    Attributes
    ----------
    axis : int
        The array axis held fixed.
    name : str
        ``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"oblique"``, from the view's normal.
    flip_rows : bool
        True when image rows must be reversed so that the head is up (reformats).
    row_mm, col_mm : float
        Size of one image pixel down and across, in mm.
    down, right : (3,) ndarray
        Patient directions of increasing display row and column.
    letters : dict
        Orientation letters at the ``top``, ``bottom``, ``left`` and ``right`` edges.
    """

    axis: int
    name: str
    flip_rows: bool
    row_mm: float
    col_mm: float
    down: np.ndarray
    right: np.ndarray
    letters: dict[str, str]

    @property
    def aspect(self) -> float:
        """Display height/width of one pixel (1.0 for square pixels)."""
        return self.row_mm / self.col_mm


def plane_info(volume: Volume, axis: int) -> PlaneInfo:
    """Layout of the view that holds ``axis`` fixed, for a :class:`~core.volume.Volume`."""
    if axis not in AXES:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    dz, dy, dx = volume.spacing
    step = volume.slice_step
    step = step / (np.linalg.norm(step) or 1.0)
    r, c = volume.row_direction, volume.col_direction
    if axis == 0:
        down, right, row_mm, col_mm, normal, flip = c, r, dy, dx, volume.normal, False
    else:
        right, col_mm = (r, dx) if axis == 1 else (c, dy)
        normal = c if axis == 1 else r
        # Rows are slices: show the head at the top whatever the acquisition order.
        flip = bool(step[2] > 0)
        down, row_mm = (-step if flip else step), dz
    letters = {
        "top": orientation_letter(-down),
        "bottom": orientation_letter(down),
        "left": orientation_letter(-right),
        "right": orientation_letter(right),
    }
    return PlaneInfo(axis, orientation_name(normal), flip, float(row_mm), float(col_mm), down, right, letters)


def slab_width_slices(volume: Volume, axis: int, thickness_mm: float) -> int:
    """Number of slices along ``axis`` that a slab of ``thickness_mm`` covers (at least 1)."""
    step = volume.spacing[axis]
    return max(1, int(round(float(thickness_mm) / step))) if thickness_mm and thickness_mm > 0 else 1


def slab(
    voxels: np.ndarray,
    axis: int,
    index: int,
    *,
    width: int = 1,
    mode: SlabMode = "mip",
) -> np.ndarray:
    """A 2D plane of ``voxels`` (S, R, C), or a slab of ``width`` planes centred on ``index``.

    Parameters
    ----------
    voxels : (S, R, C) ndarray
    axis : {0, 1, 2}
        The axis held fixed.
    index : int
        Plane index along ``axis`` (clipped to the volume).
    width : int
        Number of planes in the slab; 1 gives the plane itself (a view, not a copy).
    mode : {"mip", "minip", "mean"}
        Maximum, minimum or mean intensity projection across the slab.

    Returns
    -------
    ndarray
        (R, C) for axis 0, (S, C) for axis 1, (S, R) for axis 2; the input dtype for
        a single plane, MIP and MinIP, float32 for the mean.
    """
    if mode not in ("mip", "minip", "mean"):
        raise ValueError(f"mode must be 'mip', 'minip' or 'mean', got {mode!r}")
    n = voxels.shape[axis]
    index = int(np.clip(index, 0, n - 1))
    width = max(1, int(width))
    if width == 1:
        return voxels[(slice(None),) * axis + (index,)]
    lo = int(np.clip(index - width // 2, 0, n - 1))
    hi = int(np.clip(lo + width, 1, n))
    block = voxels[(slice(None),) * axis + (slice(lo, hi),)]
    if mode == "mip":
        return block.max(axis=axis)
    if mode == "minip":
        return block.min(axis=axis)
    return block.mean(axis=axis, dtype=np.float32)
