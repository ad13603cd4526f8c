"""Window/level: modality values to 8-bit display grey levels (DICOM LINEAR VOI LUT)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.volume import Volume

__all__ = ["CT_PRESETS", "auto_window", "default_window", "window"]

# (center, width) in HU, as the major viewers ship them.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "Soft tissue": (40.0, 400.0),
    "Lung": (-600.0, 1500.0),
    "Bone": (480.0, 2500.0),
    "Brain": (40.0, 80.0),
    "Liver": (90.0, 150.0),
    "Mediastinum": (50.0, 350.0),
}


def window(image: np.ndarray, center: float, width: float, *, invert: bool = False) -> np.ndarray:
    """Map modality values to display values 0..255 with DICOM's LINEAR function.

    Follows PS3.3 C.11.2.1.2.1: with ``c = center`` and ``w = width``,
    values ``<= c - 0.5 - (w - 1) / 2`` give 0, values ``> c - 0.5 + (w - 1) / 2``
    give 255, and in between ``((x - (c - 0.5)) / (w - 1) + 0.5) * 255``, rounded
    to the nearest integer.

    Parameters
    ----------
    image : ndarray
        Modality values (HU for CT), any shape, integer or float.
    center, width : float
        Window center and width in the same units; ``width >= 1``.
    invert : bool, optional
        Display MONOCHROME1 data (or an inverted grey map): 255 - value.

    Returns
    -------
    ndarray of uint8
        Same shape as ``image``.

    Raises
    ------
    ValueError
        If ``width < 1`` or either value is not finite.
    """
    c, w = float(center), float(width)
    if not (np.isfinite(c) and np.isfinite(w)):
        raise ValueError(f"window center and width must be finite, got center={center!r}, width={width!r}")
    if w < 1:
        raise ValueError(f"window width must be at least 1 (DICOM (0028,1051) Window Width), got {width!r}")
    image = np.asarray(image)
    lo = c - 0.5 - (w - 1) / 2
    hi = c - 0.5 + (w - 1) / 2
    if image.dtype in (np.int16, np.uint16, np.uint8, np.int8) and image.size > 4096:
        # A lookup table over the dtype's range: one gather instead of float arithmetic.
        lut = _lut(image.dtype.str, c, w, invert)
        if image.dtype == np.int16:
            # Offset-binary view: int16 x -> uint16 (x + 32768) without a widening copy.
            return lut[image.view(np.uint16) ^ np.uint16(0x8000)]
        if image.dtype == np.int8:
            return lut[image.view(np.uint8) ^ np.uint8(0x80)]
        return lut[image]
    return _linear(image.astype(np.float64), c, w, lo, hi, invert)


@functools.lru_cache(maxsize=32)
def _lut(dtype: str, c: float, w: float, invert: bool) -> np.ndarray:
    """The window as a table over every value of an integer dtype (numbers only, no image data)."""
    info = np.iinfo(np.dtype(dtype))
    values = np.arange(info.min, info.max + 1, dtype=np.float64)
    lut = _linear(values, c, w, c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2, invert)
    lut.flags.writeable = False
    return lut


def _linear(x: np.ndarray, c: float, w: float, lo: float, hi: float, invert: bool) -> np.ndarray:
    if w == 1:
        y = np.where(x > hi, 255.0, 0.0)
    else:
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
        y = np.where(x <= lo, 0.0, np.where(x > hi, 255.0, y))
    out = np.rint(np.clip(y, 0, 255)).astype(np.uint8)
    return 255 - out if invert else out


def auto_window(voxels: np.ndarray, *, mask: np.ndarray | None = None,
                percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """A window spanning the given percentiles of the values (padding excluded by ``mask``).

    Returns
    -------
    (center, width) : tuple of float
        ``width`` is at least 1.
    """
    values = voxels if mask is None else voxels[~mask]
    if values.size == 0:
        return 0.0, 1.0
    step = max(1, values.size // 2_000_000)  # a sample is plenty for percentiles
    lo, hi = np.percentile(values.ravel()[::step], percentiles)
    return float((lo + hi) / 2), float(max(hi - lo, 1.0))


def default_window(volume: Volume) -> tuple[float, float]:
    """The window to open a volume with: the header's, else soft tissue for CT, else automatic."""
    if volume.window is not None:
        return volume.window
    if volume.modality == "CT":
        return CT_PRESETS["Soft tissue"]
    return auto_window(volume.voxels, mask=volume.padding_mask())
