"""The view of 2-D images (projections, loops, gallery images), drawn in the browser (a Streamlit v2 component).

One large view with zoom, pan, window/level (grey images) and length measurements; for loops a
frame slider and play/pause at the acquisition's rate. The frames go to the browser once per series
(grey values zlib-compressed, colour as PNG) and stay in its cache; later reruns send the header
alone. Images larger than :data:`MAX_PIXELS` go at a reduced size (every k-th pixel), and the
browser measures in the full image's pixels.
"""

from __future__ import annotations

import json
import math
import struct
import zlib

import numpy as np
import streamlit as st

from core import Volume
from core.memory import OverBudget, server_budget
from core.png import png_bytes
from core.windowing import default_window
from dashboard import kinds, state
from dashboard.components import local_component
from dashboard.owner import session_owner
from dashboard.text import md_escape, unit_label

__all__ = ["DEFAULT_FRAME_MS", "MAX_PIXELS", "calibration_note", "display_step", "frame_payload", "page_ui",
           "rate_text", "view_parts"]

KEY = "explorer_image"  # the component's key (its state holds the browser's ``need``)
SENT = "explorer_image_sent"  # per view: the browser's last request this session answered
PICK = "explorer_gallery_pick"  # the gallery image shown large
MAX_PIXELS = 2048 * 2048  # pixels per frame sent to the browser at most
MAX_LOOP_PIXELS = 32 * 1024**2  # pixels of a whole loop sent to the browser at most (64 MB as int16)
DEFAULT_FRAME_MS = 100.0  # 10 frames per second when the file gives no rate
GALLERY_PAGE = 48  # thumbnails per page of the gallery

COMPONENT = local_component("hounsfield_image", __file__, root_class="hf-img-root")


def display_step(rows: int, cols: int, *, frames: int = 1, max_pixels: int = MAX_PIXELS) -> int:
    """Every how many pixels the browser gets, so that a frame has at most ``max_pixels`` and
    ``frames`` of them (a loop) at most :data:`MAX_LOOP_PIXELS`."""
    per_frame = math.sqrt(rows * cols / max_pixels)
    whole = math.sqrt(frames * rows * cols / MAX_LOOP_PIXELS)
    return max(1, math.ceil(per_frame), math.ceil(whole))


def calibration_note(vol: Volume) -> str:
    """What a measured length means for this image, in words."""
    if vol.calibration == "detector":
        return ("Lengths in mm at the detector (Imager Pixel Spacing): anything between the source and the "
                "detector is magnified, so it measures larger than it is.")
    if vol.calibration == "calibrated":
        return "Lengths in mm from the image's pixel spacing, calibrated at the patient."
    if vol.calibration == "pixels":
        return "The file gives no pixel spacing: lengths are in pixels, not mm."
    return "Lengths in mm from the image's pixel spacing."


def rate_text(vol: Volume) -> str:
    """The loop's playing rate, and where it comes from."""
    if vol.frame_time_ms is None:
        return f"{1000 / DEFAULT_FRAME_MS:g} frames per second (the file gives no rate)"
    return f"{1000 / vol.frame_time_ms:.3g} frames per second, as acquired"


def _encode(vol: Volume, index: int, step: int, rows: int, cols: int) -> tuple[dict, bytes]:
    if vol.rgb is not None:
        rgb = np.ascontiguousarray(vol.rgb[index, :rows:step, :cols:step])
        return {"png": True, "rows": rgb.shape[0], "cols": rgb.shape[1]}, png_bytes(rgb)
    plane = vol.voxels[index, :rows:step, :cols:step]
    dtype = "<u1" if plane.dtype == np.uint8 else "<i2" if plane.dtype == np.int16 else "<f4"
    values = np.ascontiguousarray(plane, dtype=dtype)
    return {"png": False, "rows": values.shape[0], "cols": values.shape[1]}, zlib.compress(values.tobytes(), 1)


def _grey_settings(vol: Volume) -> dict:
    if vol.rgb is not None:
        return {"dtype": None, "center": 0, "width": 1, "range": [0, 255], "voi": None, "invert": False}
    c, w = default_window(vol)
    lo, hi = vol.value_range
    dtype = "u1" if vol.voxels.dtype == np.uint8 else "i2" if vol.voxels.dtype == np.int16 else "f4"
    voi = None
    if vol.voi_lut is not None:
        voi = {"first": vol.voi_lut[0], "table": vol.voi_lut[1].tolist()}
    return {"dtype": dtype, "center": round(c, 3), "width": round(max(w, 1.0), 3), "range": [lo, hi], "voi": voi,
            "invert": bool(vol.invert)}


class _Parts:
    """A view's header and encoded frames, holding their share of the memory budget while cached."""

    def __init__(self, header: dict, blobs: list[bytes]) -> None:
        self.header, self.blobs = header, blobs


@st.cache_resource(scope="session", max_entries=2, show_spinner=False)
def _cached_parts(_vol: Volume, key: str, index: int | None) -> _Parts:
    """:func:`view_parts`, with the bytes it may take (the frames, uncompressed) reserved first."""
    rows, cols = _vol.frame_sizes[index] if index is not None and _vol.frame_sizes else _vol.shape[1:]
    frames = 1 if index is not None else _vol.shape[0]
    step = display_step(rows, cols, frames=frames)
    per_pixel = 3 if _vol.rgb is not None else _vol.voxels.dtype.itemsize
    need = frames * math.ceil(rows / step) * math.ceil(cols / step) * per_pixel
    budget = server_budget()
    reservation = budget.reserve(need, owner=session_owner(), what="the frames for the browser")
    parts = _Parts(*view_parts(_vol, index))
    budget.hold(parts, reservation)
    return parts


def view_parts(vol: Volume, index: int | None = None) -> tuple[dict, list[bytes]]:
    """The header and the encoded frames of one view: the whole loop or projection, or one gallery image."""
    key = vol.key
    indices = list(range(vol.shape[0])) if index is None else [index]
    rows, cols = vol.frame_sizes[index] if index is not None and vol.frame_sizes else vol.shape[1:]
    step = display_step(rows, cols, frames=len(indices))
    metas, blobs = [], []
    for n, f in enumerate(indices):
        meta, blob = _encode(vol, f, step, rows, cols)
        meta["index"] = n
        metas.append(meta)
        blobs.append(blob)
    mm = vol.calibration != "pixels"
    _, dy, dx = vol.spacing
    note = calibration_note(vol)
    if step > 1:
        note += (f" Shown at 1/{step} of its {cols} x {rows} pixels, to spare the browser's memory; lengths use "
                 "the full image's pixel spacing.")
    header = {
        "vol": key if index is None else f"{key}-{index}", "n": len(indices),
        "rows": metas[0]["rows"], "cols": metas[0]["cols"], "scale": step, "colour": vol.rgb is not None,
        "mm": mm, "src_row_mm": dy, "src_col_mm": dx, "row_mm": dy if mm else 1.0, "col_mm": dx if mm else 1.0,
        "frame_ms": vol.frame_time_ms or DEFAULT_FRAME_MS, "rate_text": rate_text(vol), "note": note,
        "unit": unit_label(vol.units), "frames": metas, **_grey_settings(vol),
    }
    return header, blobs


def frame_payload(vol: Volume, index: int | None = None, *, with_frames: bool = True,
                  parts: tuple[dict, list[bytes]] | None = None) -> bytes:
    """What the component receives: ``uint32 length + JSON header + frames``, offsets in ``frames``.

    Parameters
    ----------
    vol : Volume
        A loop, projection or gallery (any kind works: its frames along axis 0).
    index : int, optional
        A gallery image to show alone; all frames when None.
    with_frames : bool
        False sends the header alone (the browser holds the frames already).
    parts : (header, frames), optional
        :func:`view_parts` of this view, when already made (cached per session).
    """
    header, blobs = parts if parts is not None else view_parts(vol, index)
    header = dict(header)
    if with_frames:
        offset, metas = 0, []
        for meta, blob in zip(header["frames"], blobs, strict=True):
            metas.append({**meta, "offset": offset, "length": len(blob)})
            offset += len(blob)
        header["frames"] = metas
    else:
        header["frames"], blobs = [], []
    text = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([struct.pack("<I", len(text)), text, *blobs])


def _browser_needs(view: str) -> bool:
    """Whether the browser's frames for ``view`` must be sent: the first time, or when it asks again."""
    sent = st.session_state.setdefault(SENT, {})
    component = st.session_state.get(KEY)
    need = component.get("need") if component is not None and hasattr(component, "get") else None
    asked = need.get("n") if isinstance(need, dict) and need.get("vol") == view else None
    if view not in sent or (asked is not None and asked != sent[view]):
        sent.clear()  # one view at a time: the browser's cache holds the rest, and asks if it lost them
        sent[view] = asked
        return True
    return False


def view_ui(vol: Volume, index: int | None = None) -> None:
    """Mount the large view of ``vol`` (or of gallery image ``index``)."""
    view = vol.key if index is None else f"{vol.key}-{index}"
    try:
        parts = _cached_parts(vol, vol.key, index)
    except OverBudget as exc:
        st.error(f"The image cannot be shown now: {md_escape(exc, max_len=None)}.")
        return
    data = frame_payload(vol, index, with_frames=_browser_needs(view), parts=(parts.header, parts.blobs))
    COMPONENT(data=data, key=KEY, default={"need": None}, on_need_change=lambda: None, width="stretch")


def gallery_ui(vol: Volume) -> int:
    """A grid of the gallery's thumbnails; returns the image to show large (a click picks it)."""
    count = vol.shape[0]
    st.session_state.setdefault(PICK, 0)
    pick = int(np.clip(st.session_state[PICK], 0, count - 1))
    start = 0
    if count > GALLERY_PAGE:
        pages = math.ceil(count / GALLERY_PAGE)
        state.keep_within("explorer_gallery_page", 1, pages, default=1 + pick // GALLERY_PAGE)
        page = st.number_input("Page of thumbnails", 1, pages, key="explorer_gallery_page",
                               persist_state="session")
        start = (int(page) - 1) * GALLERY_PAGE
    columns = st.columns(8)
    for n, i in enumerate(range(start, min(count, start + GALLERY_PAGE))):
        with columns[n % 8]:
            st.image(kinds.frame_data_url(vol, i), width="stretch")
            st.button(f"Image {i + 1}", key=f"explorer_gallery_{i}", type="primary" if i == pick else "secondary",
                      width="stretch", on_click=_pick, args=(i,))
    return pick


def _pick(index: int) -> None:
    st.session_state[PICK] = index


def page_ui(vol: Volume) -> None:
    """The explorer for a series that is not a volume: what it is, then its view."""
    st.caption(kinds.describe(vol))
    for warning in vol.warnings:
        st.warning(md_escape(warning, max_len=None), icon=":material/warning:")
    index = None
    if vol.kind == "gallery" and vol.shape[0] > 1:
        index = gallery_ui(vol)
        rows, cols = vol.frame_sizes[index] if vol.frame_sizes else vol.shape[1:]
        st.markdown(f"**Image {index + 1} of {vol.shape[0]}**, {cols} x {rows} pixels")
    elif vol.kind == "gallery":
        index = 0
    view_ui(vol, index)
