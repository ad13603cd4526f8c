"""A second built-in sample: a deterministic synthetic head CT with a face, and its label map."""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from core import hu
from core.phantom_chest import _noise, _psf
from core.volume import Volume

__all__ = ["HEAD_LABELS", "HEAD_TISSUE_HU", "head_ct", "head_labels"]

HEAD_SHAPE = (96, 192, 192)
HEAD_SPACING = (2.5, 1.2, 1.2)  # a 230 mm field of view, 240 mm from the neck to the vertex

_TISSUES: dict[str, tuple[int, int]] = {
    "outside scan circle": (0, hu.PADDING_STORED),
    "air": (1, -1000),
    "skin": (2, 30),
    "subcutaneous fat": (3, -100),
    "cortical bone": (4, 1300),
    "diploe": (5, 500),
    "brain grey matter": (6, 40),
    "brain white matter": (7, 28),
    "cerebrospinal fluid": (8, 6),
    "eye": (9, 12),
    "orbital fat": (10, -80),
    "nose cartilage": (11, 90),
    "muscle": (12, 50),
    "sinus air": (13, -1000),
    "ear": (14, 60),
}
HEAD_LABELS: dict[str, int] = {name: v[0] for name, v in _TISSUES.items()}
HEAD_TISSUE_HU: dict[str, int] = {name: v[1] for name, v in _TISSUES.items()}
_SEED = 20261130


def _ell(x, y, z, c, r) -> np.ndarray:
    return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2


@functools.lru_cache(maxsize=1)
def _build_head() -> tuple[np.ndarray, np.ndarray]:
    """(raw HU with -2000 outside the scan circle, labels), (96, 192, 192), read-only."""
    nz, ny, nx = HEAD_SHAPE
    dz, dy, dx = HEAD_SPACING
    z = (np.arange(nz, dtype=np.float32) * dz)[:, None, None]  # 0 at the neck .. 237.5 at the vertex
    y = ((np.arange(ny, dtype=np.float32) - (ny - 1) / 2) * dy)[None, :, None]  # + towards the back
    x = ((np.arange(nx, dtype=np.float32) - (nx - 1) / 2) * dx)[None, None, :]  # + patient left
    lab = np.full(HEAD_SHAPE, HEAD_LABELS["air"], np.uint8)

    def paint(mask, name, onto=None):
        mask = np.broadcast_to(mask, HEAD_SHAPE)
        if onto is not None:
            mask = mask & np.isin(lab, [HEAD_LABELS[o] for o in onto])
        lab[mask] = HEAD_LABELS[name]

    skull = _ell(x, y, z, (0, 8, 140), (74, 92, 96))
    face = _ell(x, y, z, (0, -30, 80), (62, 62, 62)) <= 1  # cheeks, jaw and chin
    neck = (x**2 / 55**2 + (y - 15) ** 2 / 55**2 <= 1) & (z < 80)
    nose = (_ell(x, y, z, (0, -86, 100), (13, 22, 26)) <= 1) & (y < -(86 - 30 * np.clip((z - 75) / 50, 0, 1)) + 6)
    lips = (_ell(x, y, z, (0, -88, 70), (24, 9, 5.5)) <= 1) | (_ell(x, y, z, (0, -87, 58), (22, 9, 5.5)) <= 1)
    chin = _ell(x, y, z, (0, -80, 42), (24, 14, 16)) <= 1
    brows = _ell(x, y, z, (0, -82, 138), (55, 10, 9)) <= 1
    ears = (_ell(np.abs(x), y, z, (76, 8, 118), (7, 14, 26)) <= 1)
    head = (skull <= 1) | face | neck | nose | lips | chin | brows | ears
    inner = ndimage.binary_erosion(head, iterations=2)
    paint(head, "skin")
    paint(inner, "subcutaneous fat")
    neck_core = neck & (x**2 + (y - 15) ** 2 <= 45**2)
    paint((skull <= 0.93) | (face & ndimage.binary_erosion(face, iterations=6)) | neck_core,
          "muscle", onto=("subcutaneous fat",))
    paint(ears & inner, "ear")
    paint(nose & ndimage.binary_erosion(nose, iterations=3), "nose cartilage")
    # The skull: outer table, diploe, inner table; the brain inside with its ventricles.
    floor = 66 + 62 * np.clip(-(y + 12) / 45, 0, 1)  # the skull base: anterior fossa above the orbits
    paint((skull <= 0.9) & (z > floor - 7), "cortical bone")
    paint((skull <= 0.87) & (z > floor - 5), "diploe")
    paint((skull <= 0.84) & (z > floor - 2.5), "cortical bone")
    paint((skull <= 0.8) & (z > floor), "cerebrospinal fluid")
    paint((skull <= 0.78) & (z > floor + 2.5), "brain grey matter")
    paint((skull <= 0.66) & (z > floor + 14), "brain white matter")
    ventricles = (_ell(np.abs(x), y, z, (9, 5, 150), (5, 28, 12)) <= 1)
    paint(ventricles, "cerebrospinal fluid")
    # Orbits with the eyes set back under the brows; the maxillary sinuses below them.
    for side in (-1, 1):
        paint(_ell(x, y, z, (side * 31, -62, 120), (17, 22, 16)) <= 1, "orbital fat")
        paint(_ell(x, y, z, (side * 31, -70, 121), (12, 12, 12)) <= 1, "eye")
        paint(_ell(x, y, z, (side * 30, -50, 92), (15, 18, 14)) <= 1, "sinus air")
    # The eye surface (lids open) and the mouth (lips parted) are the face's dark features.
    eyes = (_ell(x, y, z, (-31, -70, 121), (12, 12, 12)) <= 1) | (_ell(x, y, z, (31, -70, 121), (12, 12, 12)) <= 1)
    paint(eyes, "eye")
    paint((np.abs(z - 64) < 1.3) & (np.abs(x) < 18) & (y < -80), "air")
    lab[:, (y[0] ** 2 + x[0] ** 2) > 114.0**2] = HEAD_LABELS["outside scan circle"]

    lut = np.zeros(256, np.float32)
    for name, value in HEAD_TISSUE_HU.items():
        lut[HEAD_LABELS[name]] = value
    lut[0] = HEAD_TISSUE_HU["air"]
    img = _psf(lut[lab])
    img += _noise(np.random.default_rng(_SEED), HEAD_SHAPE)
    np.rint(img, out=img)
    np.clip(img, hu.AIR, hu.TOP, out=img)
    raw = img.astype(np.int16)
    raw[lab == 0] = hu.PADDING_STORED
    raw.flags.writeable = False
    lab.flags.writeable = False
    return raw, lab


def head_labels() -> np.ndarray:
    """The head sample's label map: (96, 192, 192) uint8, values from :data:`HEAD_LABELS`."""
    return _build_head()[1]


@functools.lru_cache(maxsize=1)
def head_ct() -> Volume:
    """A synthetic head CT with a face (nose, orbits and eyes, brows, lips, chin, ears), int16 HU.

    Deterministic, built in a fraction of a second, padding outside the scan circle set to air
    (-1024) and recorded in ``padding`` as for the chest sample. Noise as the chest sample's
    (``core.phantom_chest.NOISE_SD`` HU, band-passed). Cached: every call returns the same read-only object.
    """
    raw, lab = _build_head()
    outside = lab == 0
    voxels = raw.copy()
    voxels[outside] = hu.AIR
    voxels.flags.writeable = False
    nz, ny, nx = HEAD_SHAPE
    dz, dy, dx = HEAD_SPACING
    positions = np.stack([np.full(nz, -(nx - 1) / 2 * dx), np.full(nz, -(ny - 1) / 2 * dy),
                          np.arange(nz) * dz - 120.0], 1)
    return Volume(
        voxels=voxels, spacing=HEAD_SPACING, series_uid="2.25.20261130000000000000000000000000001", modality="CT",
        warnings=[], positions=positions, row_direction=np.array([1.0, 0.0, 0.0]),
        col_direction=np.array([0.0, 1.0, 0.0]), description="Synthetic head CT (built-in sample)",
        window=(40.0, 80.0), units="HU", padding=np.packbits(outside, axis=-1), invert=False,
        summary={"Modality": "CT", "Manufacturer": "Hounsfield (synthetic)", "slices": nz, "rows": ny,
                 "columns": nx, "spacing_mm": HEAD_SPACING, "orientation": "axial"},
    )

