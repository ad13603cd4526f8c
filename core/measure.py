"""Measurements on a volume: the value at a voxel, and statistics of a box ROI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["PointValue", "RoiStats", "roi_stats", "value_at", "values_stats"]


@dataclass(frozen=True)
class PointValue:
    """One voxel: its value, index (k, j, i) and patient position (LPS mm)."""

    value: float
    index: tuple[int, int, int]
    patient_mm: tuple[float, float, float]
    padding: bool


def value_at(volume: Volume, k: int, j: int, i: int) -> PointValue:
    """The voxel at slice ``k``, row ``j``, column ``i``.

    Raises
    ------
    IndexError
        If the index is outside the volume.
    """
    s, r, c = volume.shape
    if not (0 <= k < s and 0 <= j < r and 0 <= i < c):
        raise IndexError(f"voxel ({k}, {j}, {i}) is outside the volume of shape {volume.shape}")
    pad = volume.padding
    is_pad = bool(pad is not None and (pad[k, j, i // 8] >> (7 - i % 8)) & 1)
    p = volume.patient_position(k, j, i)
    return PointValue(float(volume.voxels[k, j, i]), (k, j, i), (float(p[0]), float(p[1]), float(p[2])), is_pad)


@dataclass(frozen=True)
class RoiStats:
    """Statistics of the voxels inside a box (padding excluded).

    ``area_mm2`` is the box's in-plane area counted over the voxels used;
    ``volume_ml`` is that area times the plane's thickness (one voxel deep).
    """

    n: int
    mean: float
    sd: float
    min: float
    max: float
    area_mm2: float
    volume_ml: float


def roi_stats(volume: Volume, *, axis: int, index: int, rows: tuple[int, int], cols: tuple[int, int]) -> RoiStats:
    """Statistics of a box on one plane of ``volume``.

    Parameters
    ----------
    volume : Volume
    axis : {0, 1, 2}
        The plane's fixed axis (see :func:`core.mpr.slab`).
    index : int
        Plane index along ``axis``.
    rows, cols : (start, stop)
        Half-open ranges in the plane's array coordinates: for axis 0 rows are ``j``
        and columns ``i``; for axis 1 rows are ``k`` and columns ``i``; for axis 2 rows
        are ``k`` and columns ``j``.

    Returns
    -------
    RoiStats
        Population SD (``ddof=0``). ``n == 0`` (and NaN statistics) when every voxel in
        the box is padding.

    Raises
    ------
    ValueError
        If the box is empty or outside the plane.
    """
    from core.mpr import slab

    plane = slab(volume.voxels, axis, index)
    r0, r1 = sorted(int(v) for v in rows)
    c0, c1 = sorted(int(v) for v in cols)
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, plane.shape[0]), min(c1, plane.shape[1])
    if r1 <= r0 or c1 <= c0:
        raise ValueError(f"the box rows={rows}, cols={cols} is empty or outside the plane of shape {plane.shape}")
    values = plane[r0:r1, c0:c1]
    mask = volume.padding_plane(axis, index)
    if mask is not None:
        values = values[~mask[r0:r1, c0:c1]]
    dz, dy, dx = volume.spacing
    pixel_area = {0: dy * dx, 1: dz * dx, 2: dz * dy}[axis]
    return values_stats(values, pixel_area_mm2=pixel_area, depth_mm=volume.spacing[axis])


def values_stats(values: np.ndarray, *, pixel_area_mm2: float, depth_mm: float = 0.0) -> RoiStats:
    """Statistics of the voxel ``values`` of an ROI (any shape), each voxel ``pixel_area_mm2`` in the
    plane and ``depth_mm`` deep. ``n == 0`` and NaN statistics when ``values`` is empty."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = int(values.size)
    if n == 0:
        nan = float("nan")
        return RoiStats(0, nan, nan, nan, nan, 0.0, 0.0)
    area = n * pixel_area_mm2
    return RoiStats(
        n=n,
        mean=float(values.mean()),
        sd=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        area_mm2=float(area),
        volume_ml=float(area * depth_mm / 1000.0),
    )
