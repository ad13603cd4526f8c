"""A depth-shaded rendering of the skin surface of a CT, as a camera would see the face (no GPU)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from core import hu

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["render_skin"]


def render_skin(
    volume: Volume,
    *,
    level: float = hu.SKIN,
    azimuth: float = 0.0,
    light: tuple[float, float, float] = (0.0, 0.0, 1.0),
    pixel_mm: float = 1.0,
) -> np.ndarray:
    """A depth-shaded picture of the skin surface seen from the front (no GPU).

    The volume is first placed on a regular grid at its true patient positions (gantry
    tilt removed), turned by ``azimuth`` degrees about the patient's vertical axis, and
    each ray from the front stops at the first voxel at or above ``level``; the depth
    map is then lit with a Lambert model.

    Parameters
    ----------
    volume : Volume
        An axial CT (slices along the patient's head-feet axis).
    level : float
        Skin threshold in HU.
    azimuth : float
        Degrees; positive turns the patient's left side towards the viewer.
    light : (3,) float
        Direction towards the light in view coordinates (x right, y up, z towards the viewer).
    pixel_mm : float
        Size of one output pixel.

    Returns
    -------
    (H, W) uint8 ndarray
        Head at the top, the patient's right on the viewer's left; background 0.
    """
    vol = volume if volume.is_regular else volume.corrected()
    dz, dy, dx = vol.spacing
    # Work near pixel_mm: stride the in-plane axes, keep slices (usually the coarsest).
    sy, sx = max(1, int(round(pixel_mm / dy))), max(1, int(round(pixel_mm / dx)))
    mask = (vol.voxels[:, ::sy, ::sx] >= level).view(np.uint8)
    pad = vol.padding
    if pad is not None:
        pm = np.unpackbits(pad, axis=-1, count=vol.shape[2]).astype(bool)[:, ::sy, ::sx]
        mask = mask & ~pm
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    ry, rx = dy * sy, dx * sx
    nz, ny, nx = mask.shape
    if azimuth:
        # Rotate every axial plane about its centre, in millimetres (anisotropic pixels).
        c, s = np.cos(np.radians(azimuth)), np.sin(np.radians(azimuth))
        size = int(np.ceil(np.hypot(ny * ry, nx * rx) / pixel_mm))
        m = np.array([[c * rx / pixel_mm, -s * ry / pixel_mm, 0.0], [s * rx / pixel_mm, c * ry / pixel_mm, 0.0]])
        centre_in = np.array([(nx - 1) / 2, (ny - 1) / 2])
        m[:, 2] = (size - 1) / 2 - m[:, :2] @ centre_in
        planes = np.empty((nz, size, size), np.uint8)
        for k in range(nz):
            planes[k] = cv2.warpAffine(mask[k], m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
        mask, ry, rx = planes, pixel_mm, pixel_mm
        ny = nx = size
    hit = mask.any(axis=1)  # (slices, cols): rays (along rows, anterior first) that meet skin
    first = mask.argmax(axis=1).astype(np.float32) * ry  # depth in mm from the front
    depth = np.where(hit, first, np.nan)
    # Normals from the depth gradient (x across, y up the patient, z towards the viewer).
    superior_last = float(np.dot(vol.slice_step, [0, 0, 1])) > 0
    filled = np.nan_to_num(depth, nan=float(np.nanmax(depth)) if hit.any() else 0.0).astype(np.float32)
    # Depth comes in whole voxels: smooth it so the shading shows the surface, not its steps.
    smooth = cv2.GaussianBlur(filled, (0, 0), sigmaX=max(1.0, 1.5 / rx * pixel_mm),
                              sigmaY=max(1.0, 1.5 * pixel_mm / dz))
    gz, gx = np.gradient(smooth, dz, rx)
    g_up = gz if superior_last else -gz
    # The surface faces the viewer at z = -depth: its normal is (d depth/dx, d depth/d up, 1).
    normal = np.stack([gx, g_up, np.ones_like(gx)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    lvec = np.asarray(light, dtype=np.float64)
    lvec = lvec / np.linalg.norm(lvec)
    shade = 0.15 + 0.85 * np.clip(normal @ lvec, 0, 1)
    img = np.where(hit, shade * 255.0, 0.0)
    if superior_last:
        img = img[::-1]
    out_h = max(1, int(round(nz * dz / pixel_mm)))
    out = cv2.resize(img.astype(np.float32), (nx if azimuth else int(round(nx * rx / pixel_mm)), out_h),
                     interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
