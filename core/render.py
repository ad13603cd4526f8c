"""Draw a windowed plane for the screen: physical aspect, zoom, crosshair, orientation letters, PNG."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from core.mpr import IN_PLANE, PlaneInfo
from core.png import png_bytes

__all__ = ["COLORMAPS", "CROSSHAIR", "ViewTransform", "colormap_table", "encode_png", "palette", "render_view"]

LEVELS = 253  # palette entries 0..252 carry the image; 253..255 the overlay colours
CROSSHAIR = {0: 253, 1: 254, 2: 255}  # the colour of each plane's line, by the axis it fixes
COLORMAPS = ("grey", "inverted grey", "viridis")
_OVERLAY_RGB = [(230, 60, 60), (70, 200, 90), (240, 210, 50)]  # red, green, yellow, as in 3D Slicer


@functools.lru_cache(maxsize=8)
def colormap_table(colormap: str) -> np.ndarray:
    """The (256, 3) uint8 RGB colour of each display level 0..255 in ``colormap``.

    Raises
    ------
    ValueError
        If ``colormap`` is not one of :data:`COLORMAPS`.
    """
    if colormap not in COLORMAPS:
        raise ValueError(f"colormap must be one of {COLORMAPS}, got {colormap!r}")
    levels = np.arange(256, dtype=np.uint8)
    rgb: np.ndarray
    if colormap == "grey":
        rgb = np.stack([levels] * 3, axis=1)
    elif colormap == "inverted grey":
        rgb = np.stack([255 - levels] * 3, axis=1)
    else:
        rgb = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_VIRIDIS).reshape(-1, 3)[:, ::-1]
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    rgb.flags.writeable = False
    return rgb


@functools.lru_cache(maxsize=8)
def palette(colormap: str) -> tuple[int, ...]:
    """A 256-entry RGB palette: 253 image levels in ``colormap``, then the overlay colours."""
    ramp = np.rint(np.arange(LEVELS) * 255.0 / (LEVELS - 1)).astype(np.uint8)
    out = colormap_table(colormap)[ramp].astype(int).ravel().tolist()
    for c in _OVERLAY_RGB:
        out += list(c)
    return tuple(out)


_TO_LEVELS = np.rint(np.arange(256) * (LEVELS - 1) / 255.0).astype(np.uint8)


@dataclass(frozen=True)
class ViewTransform:
    """Maps between display pixels and the plane's array coordinates (row, col).

    The plane array is as :func:`core.mpr.slab` returns it (not flipped); the display
    may be flipped (head up), zoomed into a window, and scaled to physical aspect.
    """

    plane_shape: tuple[int, int]
    flip_rows: bool
    origin: tuple[float, float]  # (row, col) in display-oriented array coordinates at display (0, 0)
    scale: tuple[float, float]  # display pixels per array pixel (down, across)
    size: tuple[int, int]  # display (height, width)

    def to_array(self, x: float, y: float) -> tuple[int, int]:
        """Array (row, col) under display pixel (x, y), clipped to the plane."""
        r = self.origin[0] + (y + 0.5) / self.scale[0] - 0.5
        c = self.origin[1] + (x + 0.5) / self.scale[1] - 0.5
        rows, cols = self.plane_shape
        r = int(np.clip(round(r), 0, rows - 1))
        c = int(np.clip(round(c), 0, cols - 1))
        return (rows - 1 - r if self.flip_rows else r), c

    def to_display(self, row: float, col: float) -> tuple[float, float]:
        """Display (x, y) of the centre of array pixel (row, col)."""
        if self.flip_rows:
            row = self.plane_shape[0] - 1 - row
        y = (row - self.origin[0] + 0.5) * self.scale[0] - 0.5
        x = (col - self.origin[1] + 0.5) * self.scale[1] - 0.5
        return x, y


def render_view(
    shown: np.ndarray,
    info: PlaneInfo,
    *,
    max_size: int = 512,
    zoom: float = 1.0,
    center: tuple[float, float] | None = None,
    crosshair: Mapping[int, float] | None = None,
    letters: bool = True,
    box: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, ViewTransform]:
    """Lay out a windowed plane for display.

    Parameters
    ----------
    shown : (H, W) uint8 ndarray
        The windowed plane (0..255), in array orientation.
    info : PlaneInfo
        The plane's layout (flip, pixel size in mm, orientation letters).
    max_size : int
        Longest display side in pixels at zoom 1.
    zoom : float
        Magnification (>= 1) around ``center``.
    center : (row, col), optional
        Array coordinates to zoom around; the plane's centre by default.
    crosshair : dict, optional
        ``{axis: position}`` of the other planes cutting this one: a plane fixing axis
        ``a`` appears as a horizontal line when ``a`` runs down this view's rows and a
        vertical line when it runs across its columns. Positions are array indices.
    letters : bool
        Draw the orientation letters at the edges.
    box : (row_start, row_stop, col_start, col_stop), optional
        An ROI box in array coordinates, outlined.

    Returns
    -------
    image : (h, w) uint8 ndarray
        Palette indices (see :func:`palette`).
    transform : ViewTransform
    """
    if shown.dtype != np.uint8 or shown.ndim != 2:
        raise ValueError(f"shown must be a 2D uint8 image, got {shown.dtype} with shape {shown.shape}")
    zoom = max(1.0, float(zoom))
    rows, cols = shown.shape
    img = _TO_LEVELS[shown]
    if info.flip_rows:
        img = img[::-1]
    h_mm, w_mm = rows * info.row_mm, cols * info.col_mm
    px = max_size / max(h_mm, w_mm)
    out_h, out_w = max(1, int(round(h_mm * px))), max(1, int(round(w_mm * px)))
    # The window of the (display-oriented) array shown after zooming.
    win_r, win_c = rows / zoom, cols / zoom
    cr, cc = center if center is not None else ((rows - 1) / 2, (cols - 1) / 2)
    if info.flip_rows:
        cr = rows - 1 - cr
    r0 = float(np.clip(cr + 0.5 - win_r / 2, 0, rows - win_r))
    c0 = float(np.clip(cc + 0.5 - win_c / 2, 0, cols - win_c))
    scale = (out_h / win_r, out_w / win_c)
    if zoom == 1.0:
        upscaling = out_h > rows or out_w > cols
        out = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR if upscaling else cv2.INTER_AREA)
    else:
        m = np.array([[scale[1], 0, -(c0 * scale[1]) + 0.5 * scale[1] - 0.5],
                      [0, scale[0], -(r0 * scale[0]) + 0.5 * scale[0] - 0.5]], dtype=np.float64)
        out = cv2.warpAffine(img, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    tf = ViewTransform((rows, cols), info.flip_rows, (r0, c0), scale, (out_h, out_w))
    if crosshair:
        _draw_crosshair(out, tf, info.axis, crosshair)
    if box is not None:
        x0, y0 = tf.to_display(box[0], box[2])
        x1, y1 = tf.to_display(box[1] - 1, box[3] - 1)
        cv2.rectangle(out, (int(round(min(x0, x1))), int(round(min(y0, y1)))),
                      (int(round(max(x0, x1))), int(round(max(y0, y1)))), 255, 1)
    if letters:
        _draw_letters(out, info.letters)
    return out, tf


def _draw_crosshair(out: np.ndarray, tf: ViewTransform, axis: int, crosshair: Mapping[int, float]) -> None:
    h, w = out.shape
    gap = max(6, min(h, w) // 40)
    # Which array axis runs down (rows) and across (cols) of this view.
    down_axis, across_axis = IN_PLANE[axis]
    x: float | None = None
    y: float | None = None
    for other, pos in crosshair.items():
        if other == down_axis:
            _, y = tf.to_display(pos, 0)
        elif other == across_axis:
            x, _ = tf.to_display(0, pos)
    # Each line stops ``gap`` short of the crossing point on both sides.
    if y is not None and 0 <= y < h:
        yi = int(round(y))
        left, right = (int(round(x)) - gap, int(round(x)) + gap) if x is not None else (w, w)
        for xs, xe in ((0, left), (right, w)):
            if xe > xs:
                out[yi, max(xs, 0):min(xe, w)] = CROSSHAIR[down_axis]
    if x is not None and 0 <= x < w:
        xi = int(round(x))
        top, bottom = (int(round(y)) - gap, int(round(y)) + gap) if y is not None else (h, h)
        for ys, ye in ((0, top), (bottom, h)):
            if ye > ys:
                out[max(ys, 0):min(ye, h), xi] = CROSSHAIR[across_axis]


def _draw_letters(out: np.ndarray, letters: dict[str, str]) -> None:
    h, w = out.shape
    scale = max(0.4, min(h, w) / 600)
    thick = 1 if scale < 0.8 else 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    for edge, text in letters.items():
        (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
        m = 6
        pos = {
            "top": ((w - tw) // 2, th + m),
            "bottom": ((w - tw) // 2, h - m),
            "left": (m, (h + th) // 2),
            "right": (w - tw - m, (h + th) // 2),
        }[edge]
        cv2.putText(out, text, pos, font, scale, 0, thick + 2, cv2.LINE_AA)
        cv2.putText(out, text, pos, font, scale, 255, thick, cv2.LINE_AA)


def encode_png(image: np.ndarray, colormap: str = "grey", *, compress_level: int = 1) -> bytes:
    """PNG bytes of a palette-index image (levels 0..252, overlays 253..255) in ``colormap``."""
    return png_bytes(np.asarray(image, dtype=np.uint8), palette=palette(colormap), compress_level=compress_level)
