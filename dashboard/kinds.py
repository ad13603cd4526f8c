"""What kind of image a series is, in words and thumbnails, and the pages' guards for it."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import streamlit as st

from core import Volume
from core.geometry import orientation_name
from core.numbers import count, spacing_mm
from core.png import png_bytes
from core.windowing import default_window, window
from dashboard.images import middle_slice_preview, thumbnail_data_url

__all__ = ["describe", "facts", "frame_data_url", "frame_image", "image_count", "kind_label", "needs",
           "next_step", "pixel_spacing", "preview", "preview_data_url", "thumbnail"]

# What each page needs, and what it says when the series is something else.
_NEEDS_VOLUME = {
    "loop": "a loop (frames of one place over time)",
    "projection": "a projection image (one radiograph)",
    "gallery": "a gallery of images without a position",
}


def kind_label(vol: Volume) -> str:
    """The kind as the series table shows it: volume, loop, projection, gallery or image (a gallery of
    one), with colour said ("colour loop")."""
    label = "image" if vol.kind == "gallery" and vol.shape[0] == 1 else vol.kind
    return f"colour {label}" if vol.rgb is not None else label


def _rate(vol: Volume) -> str:
    if vol.frame_time_ms is None:
        return "not given in the file"
    return f"{1000.0 / vol.frame_time_ms:.3g} frames per second"


def _rate_words(vol: Volume) -> str:
    return "no frame rate in the file" if vol.frame_time_ms is None else _rate(vol)


def describe(vol: Volume) -> str:
    """One sentence on what the series is, for the explorer's caption."""
    colour = " in colour" if vol.rgb is not None else ""
    rows, cols = vol.shape[1:]
    if vol.kind == "loop":
        return f"A loop of {vol.shape[0]} frames{colour}, {cols} x {rows} pixels, {_rate_words(vol)}."
    if vol.kind == "projection":
        return f"A projection image{colour}, {cols} x {rows} pixels."
    if vol.kind == "gallery" and vol.shape[0] == 1:
        return f"A single image{colour} without a position in the patient, {cols} x {rows} pixels."
    if vol.kind == "gallery":
        count = vol.shape[0]
        return (f"A gallery of {count} image{'s' if count != 1 else ''}{colour} without a position in the patient "
                "(reports, screenshots or photos): pick one to see it large.")
    return f"A volume of {vol.shape[0]} slices{colour}."


def image_count(vol: Volume) -> str:
    """How many images a series holds, named for its kind: "120 slices", "30 frames", "1 image"."""
    noun = {"volume": "slice", "loop": "frame"}.get(vol.kind, "image")
    return count(int(vol.shape[0]), noun)


def pixel_spacing(vol: Volume) -> str:
    """A 2-D image's pixel spacing (rows x columns) with what it is calibrated at, or "in pixels"."""
    if vol.calibration == "pixels":
        return "in pixels (the file gives none)"
    text = spacing_mm(vol.spacing[1:])
    return {"detector": f"{text} at the detector", "calibrated": f"{text}, calibrated at the patient"}.get(
        vol.calibration, text)


def next_step(vol: Volume) -> str:
    """The first page's link to the explorer, in words that fit the series."""
    if vol.kind == "loop":
        return "Next: play this loop in the Volume explorer"
    if vol.kind == "gallery" and vol.shape[0] > 1:
        return "Next: browse these images in the Volume explorer"
    if vol.kind != "volume" or vol.shape[0] == 1:
        return "Next: look at this image in the Volume explorer"
    return "Next: explore this series in three planes"


def facts(vol: Volume) -> dict[str, str]:
    """The sidebar's facts about the series' images, as fits its kind."""
    rows, cols = vol.shape[1:]
    size = f"{cols:,} x {rows:,} pixels"
    if vol.kind == "volume":
        out = {"Voxels": " x ".join(str(n) for n in vol.shape), "Spacing": spacing_mm(vol.spacing),
               "Orientation": orientation_name(vol.normal)}
    elif vol.kind == "loop":
        out = {"Frames": f"{image_count(vol)} of {size}", "Rate": _rate(vol), "Pixel spacing": pixel_spacing(vol)}
    elif vol.kind == "projection":
        out = {"Size": size, "Pixel spacing": pixel_spacing(vol)}
    else:
        out = {"Images": image_count(vol), "Size": size if vol.shape[0] == 1 else f"up to {size}"}
    if vol.rgb is not None:
        out["Values"] = "colour"
    return out


def frame_image(vol: Volume, index: int) -> np.ndarray:
    """Frame ``index`` as shown: (R, C, 3) uint8 for colour, (R, C) uint8 grey (windowed) otherwise,
    cropped to its own size in a gallery."""
    index = int(np.clip(index, 0, vol.shape[0] - 1))
    rows, cols = vol.frame_sizes[index] if vol.frame_sizes else vol.shape[1:]
    if vol.rgb is not None:
        return np.asarray(vol.rgb[index, :rows, :cols])
    plane = vol.voxels[index, :rows, :cols]
    if vol.voi_lut is not None:
        first, table = vol.voi_lut
        grey = table[np.clip(plane.astype(np.int64) - int(first), 0, len(table) - 1)]
        return 255 - grey if vol.invert else grey
    c, w = default_window(vol)
    return window(plane, c, w, invert=vol.invert)


def thumbnail(vol: Volume, index: int = 0, *, size: int = 96) -> np.ndarray:
    """:func:`frame_image` shrunk to fit ``size`` pixels, its aspect kept."""
    img = frame_image(vol, index)
    scale = size / max(img.shape[:2])
    out = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, out, interpolation=cv2.INTER_AREA)


@st.cache_resource(scope="session", max_entries=256, show_spinner=False)
def _frame_data_url(_vol: Volume, key: str, index: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(thumbnail(_vol, index))).decode()


def frame_data_url(vol: Volume, index: int) -> str:
    """A PNG data URL of one frame's thumbnail (cached per session)."""
    return _frame_data_url(vol, vol.key, index)


def preview_data_url(vol: Volume) -> str:
    """The series table's preview: the middle slice of a volume, the first frame of anything else."""
    if vol.kind == "volume" and vol.rgb is None:
        return thumbnail_data_url(vol, vol.key)
    return frame_data_url(vol, 0)


def preview(vol: Volume, *, size: int) -> tuple[np.ndarray, str]:
    """The Load page's preview of a series and its caption: a volume's middle slice, else the first frame."""
    if vol.kind == "volume" and vol.rgb is None:
        return middle_slice_preview(vol, size=size), "Middle slice, default window"
    what = {"loop": "First frame", "projection": "The image", "gallery": "First image"}.get(vol.kind, "First frame")
    return _first_frame(vol, vol.key, size), what


@st.cache_resource(scope="session", max_entries=16, show_spinner=False)
def _first_frame(_vol: Volume, key: str, size: int) -> np.ndarray:
    """The first frame shrunk for the Load page, kept for the session: a projection's frame is large."""
    return thumbnail(_vol, 0, size=size)


def needs(vol: Volume | None, *, what: str, kinds: tuple[str, ...] = ("volume",), colour: bool = False) -> None:
    """Stop the page with a message when ``vol`` is not of a kind it works on.

    Parameters
    ----------
    vol : Volume or None
        The current series (None: nothing to check, the page says so itself).
    what : str
        What the page does, in words ("A 3D surface"), to start the message with.
    kinds : tuple of str
        The kinds the page works on.
    colour : bool
        Whether it works on colour images too.
    """
    if vol is None:
        return
    if vol.kind not in kinds:
        needed = " or ".join(
            {"volume": "a volume (a stack of slices)", "loop": "a loop", "projection": "a projection image",
             "gallery": "a gallery"}[k] for k in kinds)
        st.info(f"{what} needs {needed}; the current series is {_NEEDS_VOLUME.get(vol.kind, vol.kind)}. Choose "
                "another series on **Load a study**, or look at this one in the **Volume explorer**.",
                icon=":material/info:")
        st.stop()
    if vol.rgb is not None and not colour:
        st.info(f"{what} works on grey values (CT numbers, signal intensities); the current series is in colour, "
                "where a single value per pixel means nothing. Look at it in the **Volume explorer**.",
                icon=":material/info:")
        st.stop()
