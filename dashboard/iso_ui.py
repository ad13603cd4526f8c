"""The 3D isosurface page: settings, cached surfaces and lungs, the 3D view, exports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import cast

import numpy as np
import streamlit as st

from core import Volume, hu
from core.isosurface import IsoPlan, Mesh, extract_isosurface, mesh_bytes, plan_isosurface
from core.lungs import LungStats, check_lungs, lung_statistics, segment_lungs
from core.memory import OverBudget, server_budget
from dashboard import iso_view, state
from dashboard.owner import session_owner
from dashboard.text import md_escape, unit_label

PRESET, LEVEL, BUDGET, KEEP, CROP, SHOW = "iso_preset", "iso_level", "iso_budget", "iso_keep", "iso_crop", "iso_show"
SMOOTH = "iso_smooth"
PERSISTENT = (PRESET, LEVEL, BUDGET, KEEP, CROP, SHOW, SMOOTH)
state.persist(*PERSISTENT)
LUNGS = "Lungs (segmented)"
BONE = "Bone (400 HU)"
SKIN = f"Skin ({hu.SKIN:g} HU)"
SOFT = "Soft tissue (40 HU)"
VESSELS = "Vessels (150 to 400 HU)"
CUSTOM = "Custom"


@dataclass(frozen=True)
class Preset:
    level: float | None  # None: the user's threshold (Custom) or a mask (lungs)
    color: str
    upper: float | None = None  # values from here up are left out (bone, for the vessels)


PRESETS: dict[str, Preset] = {
    BONE: Preset(400.0, "#f2efe4"),
    SKIN: Preset(hu.SKIN, "#e0ac8c"),
    SOFT: Preset(40.0, "#d46a6a"),
    VESSELS: Preset(150.0, "#e04848", upper=400.0),
    LUNGS: Preset(None, "#7fb8e6"),
    CUSTOM: Preset(None, "#c8c8c8"),
}
SMOOTH_SIGMA = 1.0  # voxels of the volume (see core.isosurface.extract_isosurface)
SMOOTH_LABEL = "Smooth first (σ 1 voxel)"
# Up to this many voxels the surface is drawn when the page opens (the sample has 7.9 million);
# larger series wait for a click, so that a visit to the page does not start seconds of work.
SHOW_ON_ARRIVAL_VOXELS = 40_000_000


DEFAULT_MAX_TRIANGLES = 500_000
# What a surface starts with: enough for bone at the detail of a 2.5 mm chest CT, and drawn within
# a second and a half of a click on a CPU-only browser (more triangles are for export).
DEFAULT_TRIANGLES = 150_000
MIN_TRIANGLES = 10_000


def max_triangles_allowed() -> int:
    """The largest triangle budget a visitor may ask for: ``HOUNSFIELD_MAX_TRIANGLES``, else 500,000.

    The default fits a 2.7 GB, 2-core host: on a 300 x 512 x 512 CT, 500,000 triangles take
    1 to 3 s and at most about 320 MB to build, and 9 MB to send to the 3D view (it was 12 MB of
    Plotly JSON); 2 million took 4 to 26 s and up to 1 GB. An operator with a larger host raises
    it (a value that is not a whole number of at least 10,000 is ignored).
    """
    text = os.environ.get("HOUNSFIELD_MAX_TRIANGLES", "").strip().replace("_", "")
    return int(text) if text.isdigit() and int(text) >= MIN_TRIANGLES else DEFAULT_MAX_TRIANGLES


# Bytes a mesh holds per triangle once built (float32 vertices, int32 faces), and what the 3D
# view's message takes while it is sent (about 18 bytes per triangle: the payload, then its copies
# in the protobuf message and its serialised form).
MESH_BYTES_PER_TRIANGLE = 24
FIGURE_BYTES_PER_TRIANGLE = 60  # the view's message (float32 vertices, uint32 triangles) and its copies


@dataclass(frozen=True)
class Settings:
    preset: str
    level: float
    budget: int
    keep: int
    crop: tuple[int, int]
    smooth: bool = True

    @property
    def upper(self) -> float | None:
        return PRESETS[self.preset].upper if self.preset in PRESETS else None


def init(vol: Volume) -> None:
    ct = vol.units == "HU"
    st.session_state.setdefault(PRESET, BONE if ct else CUSTOM)
    if st.session_state[PRESET] not in (PRESETS if ct else (CUSTOM,)):
        st.session_state[PRESET] = BONE if ct else CUSTOM
    lo, hi = level_limits(vol)
    if st.session_state.get(LEVEL) is None or st.session_state.get(f"{LEVEL}__basis", vol.units) != vol.units:
        st.session_state[LEVEL] = PRESETS[BONE].level if ct else float(np.percentile(vol.voxels[::4, ::4, ::4], 75))
    # Kept across pages and series: fitted to this series' values, and anew when its units differ.
    state.keep_within(LEVEL, lo, hi, default=st.session_state[LEVEL], basis=vol.units)
    st.session_state.setdefault(BUDGET, min(DEFAULT_TRIANGLES, max_triangles_allowed()))
    st.session_state[BUDGET] = min(int(st.session_state[BUDGET]), max_triangles_allowed())
    st.session_state.setdefault(KEEP, 0)
    st.session_state.setdefault(SHOW, False)
    st.session_state.setdefault(SMOOTH, True)
    if CROP not in st.session_state or st.session_state[CROP][1] > vol.shape[0] or st.session_state[CROP][0] < 1:
        st.session_state[CROP] = (1, vol.shape[0])  # slices as a person counts them: first to last, from 1


def level_limits(vol: Volume) -> tuple[float, float]:
    """The threshold slider's bounds: -1000 to 3000 HU on CT, the series' own values otherwise."""
    if vol.units == "HU":
        return -1000.0, 3000.0
    lo, hi = vol.value_range
    return float(lo), float(hi)


def _apply_preset() -> None:
    level = PRESETS[st.session_state[PRESET]].level
    if level is not None:
        st.session_state[LEVEL] = level
    if st.session_state[PRESET] == LUNGS:
        st.session_state[KEEP] = 0


def settings_ui(vol: Volume) -> Settings:
    """The surface's settings, stacked for the column beside the view."""
    ct = vol.units == "HU"
    names = list(PRESETS) if ct else [CUSTOM]
    unit = md_escape(unit_label(vol.units))  # labels render Markdown
    preset = st.selectbox("Surface", names, key=PRESET, on_change=_apply_preset, persist_state="session",
                          help="Vessels: the contrast-filled vessels and heart chambers of a CT with contrast, "
                          "bone and what it encloses left out. Lungs: segmented, with their volume.")
    lo, hi = level_limits(vol)
    level = st.slider(f"Threshold ({unit})", lo, hi, step=10.0 if ct else max((hi - lo) / 400, 1e-3), key=LEVEL,
                      persist_state="session", format="%.0f" if ct else "%g", disabled=preset == LUNGS,
                      help="The surface is where the values cross this threshold.")
    upper = PRESETS[preset].upper if preset in PRESETS else None
    if upper is not None:
        st.caption(f"Up to {upper:g} {unit}: values from {upper:g} {unit} up (bone) are left out, with what they "
                   "enclose.")
    smooth = st.toggle(SMOOTH_LABEL, key=SMOOTH, persist_state="session",
                       help="A Gaussian filter (σ of 1 voxel) averages each voxel with its neighbours before the "
                       "surface is built, so that image noise does not turn into specks (needed for soft tissue).")
    n = vol.shape[0]
    # init() gives the key a (first, last) pair counted from 1, so the slider is a range slider.
    first, last = cast(tuple[int, int], st.slider("Slices used", 1, n, key=CROP, persist_state="session")) \
        if n > 1 else (1, n)
    crop = (first - 1, last)  # the array's half-open range
    c1, c2 = st.columns(2)
    cap = max_triangles_allowed()
    budget = c1.number_input("Triangles at most", MIN_TRIANGLES, cap, step=50_000, key=BUDGET, persist_state="session",
                             help=f"Fewer triangles draw faster; the surface is built coarser or simplified to "
                             f"meet the number. This server allows up to {cap:,}.")
    keep = c2.number_input("Largest parts (0 = all)", 0, 50, key=KEEP, persist_state="session",
                           help="Keep only this many of the largest connected parts (0 keeps all): 1 or 2 drop "
                           "the table, loose specks and noise.")
    return Settings(preset, float(level), int(budget), int(keep), (int(crop[0]), int(crop[1])), bool(smooth))


def show_on_arrival(vol: Volume) -> bool:
    return int(np.prod(vol.shape)) <= SHOW_ON_ARRIVAL_VOXELS


@st.cache_resource(scope="session", max_entries=2, show_spinner=False)
def lungs_for(_vol: Volume, key: str) -> tuple[np.ndarray, LungStats]:
    """The lungs and their figures; :class:`ValueError` in words when there are none (a head CT)."""
    mask = segment_lungs(_vol)
    stats = lung_statistics(_vol, mask)
    check_lungs(stats)
    return mask, stats


@st.cache_resource(scope="session", max_entries=4, show_spinner=False)
def mesh_for(_vol: Volume, key: str, settings: Settings) -> Mesh:
    """The surface, built once per settings; its memory is reserved against the server's budget
    before meshing (raises :class:`core.memory.OverBudget`) and held as long as it is cached."""
    crop = (slice(settings.crop[0], settings.crop[1]), slice(None), slice(None))
    budget, owner = server_budget(), session_owner()
    if settings.preset == LUNGS:
        mask, _ = lungs_for(_vol, key)
        # A uint8 view of the mask (no copy of the volume): the surface is its 0.5 level.
        source, level = _vol.with_changes(voxels=mask.view(np.uint8), warnings=[], padding=None), 0.5
    else:
        source, level = _vol, settings.level
    smooth = SMOOTH_SIGMA if settings.smooth else 0.0
    upper = None if settings.preset == LUNGS else settings.upper
    def build(plan: IsoPlan) -> Mesh:
        with budget.reserved(plan.nbytes, owner=owner, what="building this surface"):
            return extract_isosurface(source, level, max_triangles=settings.budget, crop=crop,
                                      keep_largest=settings.keep, plan=plan, smooth=smooth, upper=upper)

    plan = plan_isosurface(source, level, max_triangles=settings.budget, crop=crop, smooth=smooth, upper=upper)
    mesh = build(plan)
    if upper is not None and plan.step != (1, 1, 1) and 3 * mesh.n_triangles < settings.budget:
        # The step was chosen for everything in the band, bone rims and marrow included; what is
        # left (the vessels) is far smaller: built again as finely as the budget allows.
        more = settings.budget * settings.budget // max(mesh.n_triangles, 1)
        finer = plan_isosurface(source, level, max_triangles=more, crop=crop, smooth=smooth, upper=upper)
        if finer.step != plan.step:
            mesh = build(finer)
    budget.hold(mesh, budget.reserve(MESH_BYTES_PER_TRIANGLE * mesh.n_triangles, owner=owner, what="this surface"))
    return mesh


def surface_ui(vol: Volume, settings: Settings) -> tuple[Mesh, LungStats | None] | None:
    """Build (or fetch) the surface behind a spinner; a failure or a refusal becomes a message."""
    lungs = None
    try:
        with st.spinner("Building the surface…"):
            if settings.preset == LUNGS:
                _, lungs = lungs_for(vol, vol.key)
            mesh = mesh_for(vol, vol.key, settings)
    except ValueError as exc:
        st.error(f"No surface: {md_escape(exc, max_len=None)}. Choose another threshold or surface.")
        return None
    except OverBudget as exc:
        st.error(f"No surface now: {md_escape(exc, max_len=None)}. A smaller triangle budget or fewer slices "
                 "need less.")
        return None
    return mesh, lungs


def chart_ui(vol: Volume, mesh: Mesh, preset: str) -> None:
    """The 3D view; the memory its message takes while it is sent is reserved first."""
    try:
        with server_budget().reserved(FIGURE_BYTES_PER_TRIANGLE * mesh.n_triangles, owner=session_owner(),
                                      what="sending this surface to the browser"):
            iso_view.view_ui(vol, mesh, PRESETS[preset].color if preset in PRESETS else PRESETS[CUSTOM].color)
    except OverBudget as exc:
        st.error(f"The surface is built but not drawn now: {md_escape(exc, max_len=None)}.")


def facts(mesh: Mesh, lungs: LungStats | None, settings: Settings, spacing: tuple[float, float, float]
          ) -> dict[str, str]:
    """What the page says about the surface: label -> value, short enough for the side column."""
    out = {
        "Triangles": f"{mesh.n_triangles:,}",
        "Surface area": f"{mesh.area_mm2 / 100:,.1f} cm²",
        "Enclosed volume": f"{mesh.enclosed_ml:,.1f} mL" if mesh.enclosed_ml is not None else "open surface",
        "Detail": " x ".join(f"{k * d:.1f}" for k, d in zip(mesh.step, spacing, strict=True)) + " mm"
                  + (", simplified" if mesh.decimated else ""),
        "Smoothing": "Gaussian, σ 1 voxel" if settings.smooth else "none",
    }
    if lungs is not None:
        out["Lung volume"] = f"{lungs.volume_ml:,.0f} mL"
        out["Emphysema index"] = f"{lungs.emphysema_index:.1f} %"
    return out


def facts_ui(vol: Volume, mesh: Mesh, lungs: LungStats | None, settings: Settings) -> None:
    lines = [f"**{k}**: {v}" for k, v in facts(mesh, lungs, settings, vol.spacing).items()]
    st.markdown("  \n".join(lines), help="Detail: the size of the voxels the surface was built on (slices, "
                "rows, columns); simplified: fewer triangles than the surface had, to meet the number asked for."
                + (" Emphysema index: the share of lung voxels below -950 HU." if lungs is not None else ""))


def downloads_ui(mesh: Mesh, settings: Settings) -> None:
    """STL, PLY and OBJ, written when clicked.

    A click does not rerun the page (``on_click="ignore"``): a rerun redraws the buttons and
    drops the file each one promised, so a second download started while the first one's
    rerun ran never arrived ("Deferred file not found" in the log, the button spinning).
    """
    idx = state.current_index()
    name = settings.preset.split(" (")[0].lower().replace(" ", "_")
    base = f"series{idx + 1}_{name}"
    st.caption("Download the surface")
    st.download_button("STL", lambda: mesh_bytes(mesh, "stl"), f"{base}.stl", "model/stl",
                       key="iso_dl_stl", on_click="ignore", icon=":material/download:",
                       help="Binary STL, for 3D printing.")
    st.download_button("PLY", lambda: mesh_bytes(mesh, "ply"), f"{base}.ply", "application/octet-stream",
                       key="iso_dl_ply", on_click="ignore", icon=":material/download:", help="For 3D Slicer, MeshLab.")
    st.download_button("OBJ", lambda: mesh_bytes(mesh, "obj"), f"{base}.obj", "model/obj",
                       key="iso_dl_obj", on_click="ignore", icon=":material/download:")
