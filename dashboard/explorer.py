"""The volume explorer's widgets: window/level, three linked views, a large view, ROI, downloads."""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict

import numpy as np
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from core import Volume
from core.export import nifti_bytes, on_one_grid
from core.measure import roi_stats, value_at
from core.mpr import IN_PLANE, VIEW_AXES, VIEW_NAMES, SlabMode, plane_info, slab, slab_width_slices
from core.render import COLORMAPS, encode_png, render_view
from core.windowing import CT_PRESETS, auto_window, default_window, window
from dashboard import mpr_view, state
from dashboard.streamlit_internals import EncodedPNG as _EncodedPNG
from dashboard.text import file_part, md_escape, unit_label

# Session-state keys of this page.
SERIES_KEY = "explorer_series"
SLICE = {0: "explorer_k", 1: "explorer_j", 2: "explorer_i"}
CENTER, WIDTH, PRESET = "explorer_center", "explorer_width", "explorer_preset"
CMAP, SLAB_MM, SLAB_MODE = "explorer_cmap", "explorer_slab_mm", "explorer_slab_mode"
LARGE, ZOOM, LARGE_CLICK, LARGE_TF = "explorer_large", "explorer_zoom", "explorer_large_click", "explorer_large_tf"
ROI_ROWS, ROI_COLS, ROI_ON = "explorer_roi_rows", "explorer_roi_cols", "explorer_roi_on"
PNG_CACHE = "explorer_png_cache"
LIVE_VIEW = "explorer_live_view"  # the view as last drawn, read by the PNG download when clicked
# Keys whose values must survive visits to other pages (see frame.keep_widget_state): widget keys,
# and the crosshair and window the views component reports.
PERSISTENT = (*SLICE.values(), CENTER, WIDTH, PRESET, CMAP, SLAB_MM, SLAB_MODE, LARGE, ZOOM, ROI_ROWS, ROI_COLS, ROI_ON)
state.persist(*PERSISTENT)

CUSTOM, HEADER, AUTO = "Custom", "From the header", "Automatic (1st-99th percentile)"
SLAB_MODES: dict[SlabMode, str] = {"mip": "MIP (maximum)", "minip": "MinIP (minimum)", "mean": "Mean"}


@dataclasses.dataclass(frozen=True)
class Display:
    """The display settings every view shares, as plain values."""

    center: float
    width: float
    colormap: str
    slab_mm: float
    slab_mode: SlabMode


@dataclasses.dataclass(frozen=True)
class RoiBox:
    """A box on a plane, in array rows and columns, half-open: ``[row_start, row_stop)``."""

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int


@dataclasses.dataclass(frozen=True)
class Roi:
    """The explorer's ROI: a box on the plane ``index`` of the view that holds ``axis`` fixed."""

    axis: int
    index: int
    box: RoiBox


def init(vol: Volume) -> None:
    """Defaults for this series; reset when the current series changes."""
    key = vol.key
    if st.session_state.get(SERIES_KEY) != key:
        st.session_state[SERIES_KEY] = key
        for axis, k in SLICE.items():
            st.session_state[k] = vol.shape[axis] // 2
        c, w = default_window(vol)
        st.session_state[CENTER], st.session_state[WIDTH] = float(round(c)), float(max(1, round(w)))
        st.session_state[PRESET] = HEADER if vol.window is not None else (
            "Soft tissue" if vol.modality == "CT" else AUTO)
        st.session_state[ROI_ON] = False
        st.session_state[ROI_ROWS] = (vol.shape[1] // 2 - 10, vol.shape[1] // 2 + 10)
        st.session_state[ROI_COLS] = (vol.shape[2] // 2 - 10, vol.shape[2] // 2 + 10)
        st.session_state[PNG_CACHE] = OrderedDict()
    st.session_state.setdefault(CMAP, "grey")
    st.session_state.setdefault(SLAB_MM, 0.0)
    st.session_state.setdefault(SLAB_MODE, "mip")
    st.session_state.setdefault(LARGE, "Off")
    st.session_state.setdefault(ZOOM, 1.0)


def presets_for(vol: Volume) -> list[str]:
    names = [CUSTOM]
    if vol.window is not None:
        names.append(HEADER)
    names.append(AUTO)
    if vol.modality == "CT":
        names += list(CT_PRESETS)
    return names


def _window_range(vol: Volume) -> tuple[float, float, float]:
    """(lowest center, highest center, largest width) for the sliders."""
    if vol.modality == "CT":
        return -1200.0, 3000.0, 6000.0
    lo, hi = vol.value_range
    span = max(hi - lo, 2.0)
    return lo - span / 2, hi + span / 2, span * 2


def _apply_preset(vol: Volume) -> None:
    name = st.session_state[PRESET]
    if name == CUSTOM:
        return
    if name == HEADER and vol.window is not None:
        c, w = vol.window
    elif name == AUTO:
        c, w = auto_window(vol.voxels, mask=vol.padding_mask())
    else:
        c, w = CT_PRESETS[name]
    lo, hi, wmax = _window_range(vol)
    st.session_state[CENTER] = float(np.clip(round(c), lo, hi))
    st.session_state[WIDTH] = float(np.clip(round(w), 1, wmax))


def window_ui(vol: Volume) -> Display:
    """Preset, colours and slab (Streamlit widgets). Center and width are set in the views. Returns the settings."""
    c1, c2, c3, c4 = st.columns([1.4, 1, 1.6, 1])
    c1.selectbox("Window preset", presets_for(vol), key=PRESET, persist_state="session", on_change=_apply_preset,
                 args=(vol,),
                 help="Soft tissue 400/40, lung 1500/-600, bone 2500/480, brain 80/40, liver 150/90, "
                 "mediastinum 350/50 (width/level, HU), as the major viewers use them.")
    cmap = c2.selectbox("Colours", COLORMAPS, key=CMAP, persist_state="session")
    slab_mm = c3.slider("Slab thickness (mm, 0 = single slice)", 0.0, 50.0, step=0.5, key=SLAB_MM,
                        persist_state="session")
    mode = c4.selectbox("Slab rendering", list(SLAB_MODES), format_func=SLAB_MODES.__getitem__, key=SLAB_MODE,
                        persist_state="session")
    return Display(float(st.session_state[CENTER]), float(st.session_state[WIDTH]), cmap, slab_mm, mode)


def _crosshair() -> dict[int, int]:
    return {axis: int(st.session_state[k]) for axis, k in SLICE.items()}


def view_png(vol: Volume, axis: int, display: Display, point: dict[int, int], *, max_size: int = 480,
             zoom: float = 1.0, box: tuple | None = None, overlays: bool = True,
             cache: bool = True) -> tuple[bytes, object]:
    """The PNG of one view drawn on the server (the large view, the download), from a small
    per-session cache keyed by everything that shows."""
    index = point[axis]
    width = slab_width_slices(vol, axis, display.slab_mm)
    others = {a: p for a, p in point.items() if a != axis} if overlays else None
    down, across = IN_PLANE[axis]
    center = (point[down], point[across]) if zoom > 1 else None  # the zoom follows the crosshair
    key = (id(vol.voxels), axis, index, width, display.slab_mode, display.center, display.width,
           display.colormap, max_size, zoom, tuple(sorted(others.items())) if others else None, box, overlays, center)
    store: OrderedDict = st.session_state.setdefault(PNG_CACHE, OrderedDict()) if cache else OrderedDict()
    if key in store:
        store.move_to_end(key)
        return store[key]
    info = plane_info(vol, axis)
    plane = slab(vol.voxels, axis, index, width=width, mode=display.slab_mode)
    shown = window(plane, display.center, display.width, invert=vol.invert)
    img, tf = render_view(shown, info, max_size=max_size, zoom=zoom, center=center, crosshair=others,
                          letters=overlays, box=box)
    out = (encode_png(img, display.colormap), tf)
    store[key] = out
    while len(store) > 48:
        store.popitem(last=False)
    return out


def three_views_ui(vol: Volume, display: Display) -> None:
    """Axial, coronal and sagittal side by side, windowed in the browser (see dashboard.mpr_view)."""
    mpr_view.views_ui(vol, point=_crosshair(), center=display.center, width=display.width,
                      colormap=display.colormap, slab_mm=display.slab_mm, slab_mode=display.slab_mode,
                      window_range=_window_range(vol), unit=unit_label(vol.units))
    st.caption("Scroll with the sliders or the mouse wheel over a view; click a view to move the crosshair; "
               "drag on a view to set the window (across: width, up and down: center).")


def point_ui(vol: Volume) -> None:
    """The value under the crosshair, with its voxel index and patient position."""
    p = _crosshair()
    pv = value_at(vol, p[0], p[1], p[2])
    unit = md_escape(unit_label(vol.units))
    x, y, z = pv.patient_mm
    value = "padding (outside the scan)" if pv.padding else f"{pv.value:g} {unit}"
    st.markdown(
        f"**At the crosshair:** {value} · voxel (slice {pv.index[0]}, row {pv.index[1]}, column {pv.index[2]}) · "
        f"patient x {x:.1f}, y {y:.1f}, z {z:.1f} mm (LPS)"
    )


def _on_large_click(vol: Volume, axis: int) -> None:
    ev = st.session_state.get(LARGE_CLICK)
    tf = st.session_state.get(LARGE_TF)
    if not ev or tf is None:
        return
    sx = tf.size[1] / max(ev.get("width") or tf.size[1], 1)
    sy = tf.size[0] / max(ev.get("height") or tf.size[0], 1)
    x1, y1 = ev.get("x1", ev.get("x")), ev.get("y1", ev.get("y"))
    x2, y2 = ev.get("x2", x1), ev.get("y2", y1)
    r1, c1 = tf.to_array(x1 * sx, y1 * sy)
    r2, c2 = tf.to_array(x2 * sx, y2 * sy)
    down, across = IN_PLANE[axis]
    if abs(x2 - x1) < 3 and abs(y2 - y1) < 3:
        st.session_state[SLICE[down]] = r1
        st.session_state[SLICE[across]] = c1
    else:
        st.session_state[ROI_ROWS] = (min(r1, r2), max(r1, r2) + 1)
        st.session_state[ROI_COLS] = (min(c1, c2), max(c1, c2) + 1)
        st.session_state[ROI_ON] = True


def large_view_ui(vol: Volume, display: Display) -> int:
    """One view, large, with zoom around the crosshair; click sets the point, drag draws an ROI box.

    Returns the axis of the plane that ROI statistics refer to.
    """
    options = ["Off", *VIEW_AXES]
    c1, c2 = st.columns([1, 2])
    choice = c1.selectbox("Large view", options, key=LARGE, persist_state="session",
                          help="Click the large view to move the crosshair there; drag to draw an ROI box.")
    zoom = c2.slider("Zoom (around the crosshair)", 1.0, 8.0, step=0.5, key=ZOOM, persist_state="session")
    axis = VIEW_AXES.get(choice, 0)
    if choice == "Off":
        return axis
    point = _crosshair()
    box = dataclasses.astuple(_roi_box()) if st.session_state.get(ROI_ON) else None
    png, tf = view_png(vol, axis, display, point, max_size=800, zoom=zoom, box=box)
    st.session_state[LARGE_TF] = tf
    streamlit_image_coordinates(_EncodedPNG(png), key=LARGE_CLICK, click_and_drag=True,
                                on_click=lambda: _on_large_click(vol, axis), cursor="crosshair", width="content")
    return axis


def current_window() -> tuple[float, float] | None:
    """The explorer's (center, width), once the explorer has been opened."""
    if CENTER not in st.session_state or WIDTH not in st.session_state:
        return None
    return float(st.session_state[CENTER]), float(st.session_state[WIDTH])


def current_slice(vol: Volume, axis: int = 0) -> int:
    """The explorer's slice index along ``axis`` (the middle one before the explorer is opened)."""
    return int(st.session_state.get(SLICE[axis], vol.shape[axis] // 2))


def set_window(center: float, width: float) -> None:
    """Set the explorer's window from elsewhere (the histogram): a custom window, not a preset."""
    st.session_state[CENTER], st.session_state[WIDTH] = float(center), float(width)
    st.session_state[PRESET] = CUSTOM


def current_roi(vol: Volume) -> Roi | None:
    """The explorer's ROI box and the plane it is on, or None when it is off."""
    if not st.session_state.get(ROI_ON) or ROI_ROWS not in st.session_state:
        return None
    large = st.session_state.get(LARGE, "Off")
    axis = VIEW_AXES.get(large, 0)
    return Roi(axis, current_slice(vol, axis), _roi_box())


def _roi_box() -> RoiBox:
    r0, r1 = st.session_state[ROI_ROWS]
    c0, c1 = st.session_state[ROI_COLS]
    return RoiBox(int(r0), int(r1), int(c0), int(c1))


def roi_ui(vol: Volume, axis: int) -> None:
    """A box typed as row/column ranges (or drawn on the large view) and its statistics."""
    down, across = IN_PLANE[axis]
    nr, nc = vol.shape[down], vol.shape[across]
    for key, n in ((ROI_ROWS, nr), (ROI_COLS, nc)):
        lo, hi = st.session_state[key]
        lo = int(np.clip(lo, 0, n - 1))
        st.session_state[key] = (lo, int(np.clip(max(hi, lo + 1), 1, n)))
    st.toggle("Show ROI statistics", key=ROI_ON, persist_state="session")
    if not st.session_state[ROI_ON]:
        return
    c1, c2 = st.columns(2)
    c1.slider("ROI rows (start, stop)", 0, nr, key=ROI_ROWS, persist_state="session")
    c2.slider("ROI columns (start, stop)", 0, nc, key=ROI_COLS, persist_state="session")
    box = _roi_box()
    index = int(st.session_state[SLICE[axis]])
    try:
        stats = roi_stats(vol, axis=axis, index=index, rows=(box.row_start, box.row_stop),
                          cols=(box.col_start, box.col_stop))
    except ValueError as exc:
        st.warning(f"The ROI box is empty: {md_escape(exc)}. Drag the sliders apart.")
        return
    unit = md_escape(unit_label(vol.units))  # metric values render Markdown too
    if stats.n == 0:
        st.info("Every voxel in this box is padding (outside the scan); move the box onto the image.")
        return
    cols = st.columns(7)
    for col, (label, value) in zip(cols, [
        ("Mean", f"{stats.mean:.1f} {unit}"), ("SD", f"{stats.sd:.1f}"), ("Min", f"{stats.min:g}"),
        ("Max", f"{stats.max:g}"), ("Area", f"{stats.area_mm2:.1f} mm²"), ("Volume", f"{stats.volume_ml:.3f} mL"),
        ("Voxels", f"{stats.n}"),
    ], strict=True):
        col.metric(label, value)
    st.caption(f"On the {VIEW_NAMES[axis].lower()} plane at slice {index}, one voxel deep; padding excluded.")


def warnings_ui(vol: Volume) -> None:
    for w in vol.warnings:
        st.warning(md_escape(w, max_len=None), icon=":material/warning:")
    if not vol.is_regular:
        st.caption("Turn on **Use corrected geometry** on *Load a study* to view this series on a regular grid.")


def png_download_ui(vol: Volume) -> None:
    """The view as shown (the large view's plane, else axial), without overlays, encoded on click.

    Drawn outside the views' fragment: a button redrawn by a rerun while its file is being
    made cancels the download, and the views rerun as they fetch planes. The click reads the
    view as it is then, from what the fragment last recorded.
    """
    live = st.session_state.setdefault(LIVE_VIEW, {})
    idx = state.current_index()

    def view_bytes() -> bytes:
        # Runs when clicked, outside the script: it uses only what it holds.
        display, point, axis = live["view"]
        return view_png(vol, axis, display, point, max_size=1024, overlays=False, cache=False)[0]

    st.download_button(
        "Download the current view as PNG", data=view_bytes, mime="image/png", key="explorer_dl_png", on_click="ignore",
        file_name=f"{file_part(vol.modality)}_series{idx + 1}_view.png", icon=":material/image:",
        help="The large view's plane (else the axial one) at the crosshair, windowed and aspect-corrected, "
        "without crosshair or letters.",
    )


def downloads_ui(vol: Volume) -> None:
    """The series as NIfTI, built when the button is clicked (on its corrected grid when uneven)."""
    idx = state.current_index()
    name = f"{file_part(vol.modality)}_series{idx + 1}"
    if on_one_grid(vol):
        st.download_button(
            "Download the series as NIfTI (.nii.gz)", data=lambda: nifti_bytes(vol), mime="application/gzip",
            key="explorer_dl_nifti", on_click="ignore", file_name=f"{name}.nii.gz", icon=":material/download:",
            help="RAS affine from the DICOM geometry: opens aligned in 3D Slicer and ITK-SNAP.",
        )
        return
    st.download_button(
        "Download the series as NIfTI on a regular grid (.nii.gz)", data=lambda: nifti_bytes(vol.corrected()),
        mime="application/gzip", key="explorer_dl_nifti", on_click="ignore", file_name=f"{name}_regular_grid.nii.gz",
        icon=":material/download:",
        help="A NIfTI file has one affine, so one step between slices; this series has gaps or uneven steps.",
    )
    st.caption("The slices of this series are not evenly spaced, so no NIfTI affine can place them all: the file "
               "holds the series resampled onto a regular grid at the slices' true positions (the corrected "
               "geometry), and its name ends in *_regular_grid*.")


@st.fragment
def viewer(vol: Volume) -> None:
    """Everything that changes as the user scrolls and windows: reruns on its own."""
    start = time.perf_counter()
    if mpr_view.adopt(vol, _window_range(vol), slice_keys=SLICE, center_key=CENTER, width_key=WIDTH):
        st.session_state[PRESET] = CUSTOM  # the window was set by hand in the views
    display = window_ui(vol)
    three_views_ui(vol, display)
    point_ui(vol)
    axis = large_view_ui(vol, display)
    roi_ui(vol, axis)
    st.session_state.setdefault(LIVE_VIEW, {})["view"] = (display, _crosshair(), axis)  # for the PNG download
    st.caption(f"Views drawn in {(time.perf_counter() - start) * 1000:.1f} ms on the server.")
