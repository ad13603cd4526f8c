"""Corrected geometry: a sheared or unevenly spaced stack resampled onto a regular grid."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core import hu
from core.geometry import _fmt

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["resample_regular"]


def _fill_value(volume: Volume) -> float:
    if volume.modality == "CT":
        return float(hu.AIR)
    return volume.value_range[0]


def resample_regular(volume: Volume, *, slice_spacing: float | None = None):
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
    return volume.with_changes(
        voxels=out,
        spacing=(dz, dy, dx),
        warnings=[warning],
        positions=positions,
        summary=dict(volume.summary, corrected_geometry=True),
        padding=pad_out if any_pad else None,
        source_names=(),
        slice_headers=(),
    )
