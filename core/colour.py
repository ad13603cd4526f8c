"""Colour images to 8-bit RGB as pydicom renders them, and their luminance for grey-value code."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

__all__ = ["COLOUR_SAMPLES", "luminance", "rgb8"]

COLOUR_SAMPLES = {"RGB": 3, "YBR_FULL": 3, "YBR_FULL_422": 3, "YBR_ICT": 3, "YBR_RCT": 3, "PALETTE COLOR": 1}
"""The colour photometric interpretations the loader reads, with their samples per pixel."""


def rgb8(decoded: np.ndarray, ds: Dataset, *, photometric: str, bits_stored: int) -> np.ndarray:
    """One decoded frame as 8-bit RGB.

    Parameters
    ----------
    decoded : (R, C, 3) or (R, C) ndarray
        What ``pydicom.pixels.pixel_array(ds, index=...)`` returns: RGB for RGB, YBR_FULL and
        YBR_FULL_422 (pydicom converts them with ``convert_color_space``), YBR_ICT and YBR_RCT
        (the JPEG 2000 decoders undo the colour transform), palette indices for PALETTE COLOR.
    ds : pydicom.Dataset
        The image's header: the palette of a PALETTE COLOR image (segmented or not).
    photometric : str
        (0028,0004) Photometric Interpretation.
    bits_stored : int
        (0028,0101) Bits Stored: 16-bit colour is scaled down to 8 bits by a right shift.

    Returns
    -------
    (R, C, 3) uint8 ndarray
    """
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(decoded, ds)
        if rgb.dtype.itemsize > 1:
            # 16-bit palette entries (PS3.3 C.7.6.3.1.5): the top 8 bits are the 8-bit colour.
            return (rgb >> 8).astype(np.uint8)
        return rgb.astype(np.uint8, copy=False)
    if decoded.ndim != 3 or decoded.shape[-1] != 3:
        raise ValueError(f"a {photometric} frame must decode to (rows, columns, 3), got {decoded.shape}")
    if decoded.dtype.itemsize > 1:
        shift = max(0, bits_stored - 8)
        return np.clip(decoded.astype(np.uint32) >> shift, 0, 255).astype(np.uint8)
    return decoded.astype(np.uint8, copy=False)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """The grey level of each RGB pixel, ITU-R BT.601 (``0.299 R + 0.587 G + 0.114 B``), rounded.

    Parameters
    ----------
    rgb : (..., 3) uint8 ndarray

    Returns
    -------
    (...) uint8 ndarray
    """
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.rint(rgb.astype(np.float32) @ weights).clip(0, 255).astype(np.uint8)
