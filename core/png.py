"""PNG files built in memory from uint8 images: grey, RGB, or palette indices."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["png_bytes"]


def png_bytes(image: np.ndarray, *, palette: Sequence[int] | None = None, compress_level: int = 1) -> bytes:
    """Encode ``image`` as PNG.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 ndarray
        Grey levels, RGB, or (with ``palette``) palette indices.
    palette : sequence of int, optional
        Up to 256 RGB triples, flattened (``[r0, g0, b0, r1, ...]``): the image is stored as
        one byte per pixel with this palette (the fastest PNG to write).
    compress_level : int
        zlib level 0-9; 1 by default (fast), with the Z_RLE strategy, which on CT noise is
        about twice as fast as the default and smaller.

    Raises
    ------
    ValueError
        If ``image`` is not uint8, or not (H, W) or (H, W, 3) (palette images must be (H, W)).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if palette is not None and image.ndim != 2:
        raise ValueError(f"a palette image must be (H, W), got shape {image.shape}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}")
    image = np.ascontiguousarray(image)
    if palette is not None:
        im = Image.frombytes("P", (image.shape[1], image.shape[0]), image.tobytes())
        im.putpalette(list(palette))
    else:
        im = Image.fromarray(image)  # L for (H, W), RGB for (H, W, 3)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level, compress_type=3)
    return buf.getvalue()
