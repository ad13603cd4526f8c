"""The volume explorer's widgets: window/level, the views with their measurements and overlay, downloads."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import pandas as pd
import streamlit as st

from core import Volume
from core.annotations import Measurement, measure, measurement_rows, measurements_csv, region_mask, value_columns
from core.export import nifti_bytes, on_one_grid
from core.measure import value_at
from core.mpr import VIEW_NAMES, SlabMode, plane_info, slab, slab_width_slices
from core.render import COLORMAPS, encode_png, render_view
from core.windowing import CT_PRESETS, auto_window, default_window, window
from dashboard import loading, mpr_view, state
from dashboard.overlay_ui import Overlay, overlay_ui
from dashboard.text import decimal, file_part, md_escape, unit_label

# Session-state keys of this page.
SERIES_KEY = "explorer_series"
SLICE = {0: "explorer_k", 1: "explorer_j", 2: "explorer_i"}
CENTER, WIDTH, PRESET = "explorer_center", "explorer_width", "explorer_preset"
CMAP, SLAB_MM, SLAB_MODE = "explorer_cmap", "explorer_slab_mm", "explorer_slab_mode"
LIVE_VIEW = "explorer_live_view"  # the view as last drawn, read by the PNG download when clicked
# Keys whose values must survive visits to other pages (see frame.keep_widget_state): widget keys,
# and the crosshair and window the views component reports.
PERSISTENT = (*SLICE.values(), CENTER, WIDTH, PRESET, CMAP, SLAB_MM, SLAB_MODE)
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
class Roi:
    """The explorer's ROI: a rectangle or ellipse drawn on the plane ``index`` of the view that holds
    ``axis`` fixed, by the two corners of its box in array (row, col) coordinates (as
    :class:`core.annotations.Measurement`); its pixels are :func:`core.annotations.region_mask`'s."""

    axis: int
    index: int
    kind: Literal["rectangle", "ellipse"]
    points: tuple[tuple[float, float], ...]

    @property
    def label(self) -> str:
        """What it is, in words: ``"Explorer ellipse on axial slice 61"`` (slices counted from 1)."""
        return f"Explorer {self.kind} on {VIEW_NAMES[self.axis].lower()} slice {self.index + 1}"

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Its pixels on a plane of ``shape`` (bool), exactly those the explorer's values use."""
        return region_mask(self.kind, self.points, shape)


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
    st.session_state.setdefault(CMAP, "grey")
    st.session_state.setdefault(SLAB_MM, 0.0)
    st.session_state.setdefault(SLAB_MODE, "mip")


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
    if mpr_view.is_single_slice(vol):  # no slab across one slice
        c1, c2 = st.columns([1.4, 1])
    else:
        c1, c2, c3, c4 = st.columns([1.4, 1, 1.6, 1])
    c1.selectbox("Window preset", presets_for(vol), key=PRESET, persist_state="session", on_change=_apply_preset,
                 args=(vol,),
                 help="Soft tissue 400/40, lung 1500/-600, bone 2500/480, brain 80/40, liver 150/90, "
                 "mediastinum 350/50 (width/level, HU), as the major viewers use them.")
    cmap = c2.selectbox("Colours", COLORMAPS, key=CMAP, persist_state="session", format_func=str.capitalize)
    if mpr_view.is_single_slice(vol):
        return Display(float(st.session_state[CENTER]), float(st.session_state[WIDTH]), cmap, 0.0, "mip")
    slab_mm = c3.slider("Slab thickness (mm, 0 = single slice)", 0.0, 50.0, step=0.5, key=SLAB_MM, format="%.1f",
                        persist_state="session")
    mode = c4.selectbox("Slab rendering", list(SLAB_MODES), format_func=SLAB_MODES.__getitem__, key=SLAB_MODE,
                        persist_state="session")
    return Display(float(st.session_state[CENTER]), float(st.session_state[WIDTH]), cmap, slab_mm, mode)


def _crosshair() -> dict[int, int]:
    return {axis: int(st.session_state[k]) for axis, k in SLICE.items()}


def view_png(vol: Volume, axis: int, display: Display, index: int, *, max_size: int = 1024) -> bytes:
    """The PNG of one view drawn on the server (the download): the plane ``index`` along ``axis``,
    windowed, aspect-corrected, without crosshair or letters."""
    width = slab_width_slices(vol, axis, display.slab_mm)
    plane = slab(vol.voxels, axis, index, width=width, mode=display.slab_mode)
    shown = window(plane, display.center, display.width, invert=vol.invert)
    img, _ = render_view(shown, plane_info(vol, axis), max_size=max_size, letters=False)
    return encode_png(img, display.colormap)


def three_views_ui(vol: Volume, display: Display, overlay: Overlay | None = None) -> None:
    """Axial, coronal and sagittal, windowed, zoomed and measured in the browser (see dashboard.mpr_view)."""
    mpr_view.views_ui(vol, point=_crosshair(), center=display.center, width=display.width,
                      colormap=display.colormap, slab_mm=display.slab_mm, slab_mode=display.slab_mode,
                      window_range=_window_range(vol), unit=unit_label(vol.units), overlay=overlay)
    if mpr_view.is_single_slice(vol):
        name = mpr_view.view_layouts(vol)[0]["name"].lower()
        st.caption(f"A single slice: only the {name} view (the other two planes would be one pixel thick). "
                   "Ctrl or ⌘ + wheel (or pinch) zooms; drag with the middle button or with Shift held pans; "
                   "double-click or R resets. With *Navigate*, a drag sets the window; the other tools draw "
                   "measurements, which you can drag by their handles and delete with the Delete key.")
        return
    st.caption("Scroll with the mouse wheel, the sliders, or (after a click in a view) the arrow keys, Page Up/Down, "
               "Home and End. Ctrl or ⌘ + wheel (or pinch) zooms; drag with the middle button or with Shift held "
               "pans; double-click or R resets. With *Navigate*, a click moves the crosshair and a drag sets the "
               "window; the other tools draw measurements, which you can drag by their handles and delete with "
               "the Delete key.")


def point_ui(vol: Volume) -> None:
    """The value under the crosshair, with its voxel index and patient position."""
    p = _crosshair()
    pv = value_at(vol, p[0], p[1], p[2])
    unit = md_escape(unit_label(vol.units))
    x, y, z = pv.patient_mm
    value = "padding (outside the scan)" if pv.padding else f"{decimal(pv.value)} {unit}"
    st.markdown(  # slice, row and column numbered from 1, as people count them
        f"**At the crosshair:** {value} · voxel (slice {pv.index[0] + 1}, row {pv.index[1] + 1}, "
        f"column {pv.index[2] + 1}) · "
        f"patient x {decimal(x, places=1)}, y {decimal(y, places=1)}, z {decimal(z, places=1)} mm (LPS)"
    )


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
    """The rectangle or ellipse selected on the explorer's views (else the last one drawn), for the
    histogram page's scope, or None when there is none."""
    selected = mpr_view.selected_measurement(vol)
    ms = mpr_view.measurements(vol)
    for m in sorted(reversed(ms), key=lambda m: m.id != selected):
        if m.kind in ("rectangle", "ellipse"):
            return Roi(m.axis, m.index, m.kind, tuple((float(r), float(c)) for r, c in m.points))
    return None


# Decimals of each value in the page's table (core.numbers.decimal: trailing zeros dropped): lengths as
# length_mm, modality values at the point as the crosshair readout, statistics, angles, areas and positions
# with one; the CSV keeps every figure.
TABLE_PLACES = {"length_mm": 3, "value": 3, "angle_deg": 1, "x_mm": 1, "y_mm": 1, "z_mm": 1, "mean": 1, "sd": 1,
                "min": 1, "max": 1, "area_mm2": 1, "n": 0}


@st.cache_resource(scope="session", max_entries=512, show_spinner=False)
def _measured(_vol: Volume, key: str, kind: str, axis: int, index: int, points: tuple) -> dict[str, float]:
    """One measurement's values, kept for the session: the views' fragment reruns as planes arrive, and
    an ROI's values take a whole plane to compute."""
    return measure(_vol, Measurement(kind, axis, index, points))  # type: ignore[arg-type]


def measured(vol: Volume, m: Measurement) -> dict[str, float]:
    """``core.annotations.measure``, from this session's cache (by what the measurement is, not its name)."""
    return _measured(vol, vol.key, m.kind, m.axis, m.index, m.points)


def measurements_table(vol: Volume, ms: list[Measurement]) -> pd.DataFrame:
    """The measurements as the page lists them: numbers written as everywhere else, empty cells blank,
    columns no measurement uses left out."""
    rows = measurement_rows(vol, ms, measured=measured)
    columns = value_columns(vol.units)
    for row in rows:
        for key, name in columns.items():
            v = row[name]
            row[name] = "" if not isinstance(v, float) or math.isnan(v) else decimal(v, places=TABLE_PLACES[key])
    table = pd.DataFrame(rows)
    table = table[[c for c in table.columns if c not in columns.values() or table[c].astype(bool).any()]]
    if not table["Label"].astype(bool).any():
        table = table.drop(columns="Label")
    return table


def measurements_ui(vol: Volume) -> None:
    """The measurements drawn on the views, with their exact values (computed here from the volume)."""
    ms = mpr_view.measurements(vol)
    if not ms:
        st.caption("No measurements yet: choose Length, Angle, Ellipse, Rectangle or Point above the views and "
                   "draw on a view.")
        return
    table = measurements_table(vol, ms)
    st.markdown("**Measurements** (values computed from the series itself)")
    st.dataframe(table, hide_index=True, width="stretch")
    st.button("Delete all measurements", key="explorer_clear_measurements", icon=":material/delete:",
              on_click=mpr_view.clear_measurements, args=(vol,))


def _measurement_downloads(vol: Volume) -> None:
    """CSV and DICOM SR of the measurements, made when clicked from what the views last reported."""
    store = mpr_view.measurement_store(vol)  # the same dict the views update: read at click time
    idx = state.current_index()
    name = f"{file_part(vol.modality)}_series{idx + 1}_measurements"

    def current() -> list[Measurement]:
        return list(store["measurements"])

    def sr_bytes() -> bytes:
        from core.sr import measurement_report

        ms = current()
        return measurement_report(vol, ms, [measure(vol, m) for m in ms])

    c1, c2 = st.columns(2)
    c1.download_button("Download the measurements as CSV", data=lambda: measurements_csv(vol, current()),
                       mime="text/csv", key="explorer_dl_measurements_csv", on_click="ignore",
                       file_name=f"{name}.csv", icon=":material/table:")
    c2.download_button("Download the measurements as DICOM SR", data=sr_bytes, mime="application/dicom",
                       key="explorer_dl_measurements_sr", on_click="ignore", file_name=f"{name}_sr.dcm",
                       icon=":material/description:",
                       help="A DICOM Structured Report (TID 1500 measurement report) that refers to this series: "
                       "viewers such as OHIF and 3D Slicer show it with the images.")


def warnings_ui(vol: Volume) -> None:
    """The series' geometry warnings, with the corrected-geometry switch where it applies."""
    study = state.study()
    idx = state.current_index()
    if study is not None and study.volumes and vol.shape[0] > 1 and (
            not vol.is_regular or not study.volumes[idx].is_regular):
        loading.geometry_ui(study, idx)
        if state.current_volume() is not vol:  # just switched on: the corrected grid was made in this run
            st.rerun()
        return
    for w in vol.warnings:
        st.warning(md_escape(w, max_len=None), icon=":material/warning:")


def png_download_ui(vol: Volume) -> None:
    """The view as shown (the single view's plane in that layout, else axial), without overlays, encoded on click.

    Drawn outside the views' fragment: a button redrawn by a rerun while its file is being
    made cancels the download, and the views rerun as they fetch planes. The click reads the
    view as it is then, from what the fragment last recorded.
    """
    live = st.session_state.setdefault(LIVE_VIEW, {})
    idx = state.current_index()

    def view_bytes() -> bytes:
        # Runs when clicked, outside the script: it uses only what it holds.
        display, point, axis = live["view"]
        return view_png(vol, axis, display, point[axis])

    st.download_button(
        "Download the current view as PNG", data=view_bytes, mime="image/png", key="explorer_dl_png", on_click="ignore",
        file_name=f"{file_part(vol.modality)}_series{idx + 1}_view.png", icon=":material/image:",
        help="The plane of the view shown alone (else the axial one) at the crosshair, windowed and "
        "aspect-corrected, without crosshair or letters.",
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
    """Everything that changes as the user scrolls, windows and measures: reruns on its own."""
    if mpr_view.adopt(vol, _window_range(vol), slice_keys=SLICE, center_key=CENTER, width_key=WIDTH):
        st.session_state[PRESET] = CUSTOM  # the window was set by hand in the views
    display = window_ui(vol)
    overlay = overlay_ui(vol)
    three_views_ui(vol, display, overlay)
    point_ui(vol)
    measurements_ui(vol)
    layout = mpr_view.view_ui_settings(vol).get("layout", "all")
    axis = int(layout) if layout in ("0", "1", "2") else 0
    st.session_state.setdefault(LIVE_VIEW, {})["view"] = (display, _crosshair(), axis)  # for the PNG download


def measurement_downloads_ui(vol: Volume) -> None:
    """CSV and DICOM SR of the measurements (outside the views' fragment: see png_download_ui)."""
    _measurement_downloads(vol)
