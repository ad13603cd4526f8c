"""The 3D isosurface page: settings, cached surfaces and lungs, the Plotly mesh, exports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import cast

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import Volume, hu
from core.isosurface import Mesh, extract_isosurface, mesh_bytes, plan_isosurface
from core.lungs import LungStats, lung_statistics, segment_lungs
from core.memory import OverBudget, server_budget
from dashboard import state
from dashboard.owner import session_owner
from dashboard.text import md_escape, unit_label

PRESET, LEVEL, BUDGET, KEEP, CROP, SHOW = "iso_preset", "iso_level", "iso_budget", "iso_keep", "iso_crop", "iso_show"
PERSISTENT = (PRESET, LEVEL, BUDGET, KEEP, CROP, SHOW)
state.persist(*PERSISTENT)
LUNGS = "Lungs (segmented)"
BONE = "Bone (400 HU)"
SKIN = f"Skin ({hu.SKIN:g} HU)"
PRESETS: dict[str, float | None] = {
    BONE: 400.0,
    SKIN: hu.SKIN,
    "Soft tissue (40 HU)": 40.0,
    "Contrast-filled vessels (200 HU)": 200.0,
    LUNGS: None,
    "Custom": None,
}
COLORS = {BONE: "#f2efe4", SKIN: "#e0ac8c", "Soft tissue (40 HU)": "#d46a6a",
          "Contrast-filled vessels (200 HU)": "#e04848", LUNGS: "#7fb8e6", "Custom": "#c8c8c8"}


DEFAULT_MAX_TRIANGLES = 500_000
MIN_TRIANGLES = 10_000


def max_triangles_allowed() -> int:
    """The largest triangle budget a visitor may ask for: ``HOUNSFIELD_MAX_TRIANGLES``, else 500,000.

    The default fits a 2.7 GB, 2-core host: on a 300 x 512 x 512 CT, 500,000 triangles take
    1 to 3 s and at most about 320 MB to build, and 12 MB to send; 2 million took 4 to 26 s,
    up to 1 GB and 46 MB. An operator with a larger host raises it (a value that is not a whole
    number of at least 10,000 is ignored).
    """
    text = os.environ.get("HOUNSFIELD_MAX_TRIANGLES", "").strip().replace("_", "")
    return int(text) if text.isdigit() and int(text) >= MIN_TRIANGLES else DEFAULT_MAX_TRIANGLES


# Bytes a mesh holds per triangle once built (float32 vertices, int32 faces), and what Plotly's
# JSON of it takes at its peak while the chart is sent (measured: 160 bytes per triangle).
MESH_BYTES_PER_TRIANGLE = 24
FIGURE_BYTES_PER_TRIANGLE = 170


@dataclass(frozen=True)
class Settings:
    preset: str
    level: float
    budget: int
    keep: int
    crop: tuple[int, int]


def init(vol: Volume) -> None:
    ct = vol.units == "HU"
    st.session_state.setdefault(PRESET, BONE if ct else "Custom")
    if LEVEL not in st.session_state:
        st.session_state[LEVEL] = PRESETS[BONE] if ct else float(np.percentile(vol.voxels[::4, ::4, ::4], 75))
    st.session_state.setdefault(BUDGET, min(300_000, max_triangles_allowed()))
    st.session_state[BUDGET] = min(int(st.session_state[BUDGET]), max_triangles_allowed())
    st.session_state.setdefault(KEEP, 0)
    st.session_state.setdefault(SHOW, False)
    if CROP not in st.session_state or st.session_state[CROP][1] > vol.shape[0]:
        st.session_state[CROP] = (0, vol.shape[0])


def _apply_preset() -> None:
    level = PRESETS.get(st.session_state[PRESET])
    if level is not None:
        st.session_state[LEVEL] = level
    if st.session_state[PRESET] == LUNGS:
        st.session_state[KEEP] = 0


def settings_ui(vol: Volume) -> Settings:
    ct = vol.units == "HU"
    names = list(PRESETS) if ct else ["Custom"]
    unit = md_escape(unit_label(vol.units))  # labels render Markdown
    c1, c2 = st.columns([1, 2])
    preset = c1.selectbox("Surface", names, key=PRESET, persist_state="session", on_change=_apply_preset)
    lo, hi = (-1000.0, 3000.0) if ct else vol.value_range
    level = c2.slider(f"Threshold ({unit})", lo, hi, step=10.0 if ct else max((hi - lo) / 400, 1e-3), key=LEVEL,
                      persist_state="session",
                      disabled=preset == LUNGS, help="Marching cubes finds where the volume crosses this value.")
    d1, d2, d3 = st.columns(3)
    cap = max_triangles_allowed()
    budget = d1.number_input("Triangle budget", MIN_TRIANGLES, cap, step=50_000, key=BUDGET, persist_state="session",
                             help=f"The sampling step is chosen to meet it; past that the mesh is decimated. "
                             f"This server allows up to {cap:,} triangles.")
    keep = d2.number_input("Keep the largest parts (0 = all)", 0, 50, key=KEEP, persist_state="session",
                           help="1 or 2 drops the table, loose specks and noise.")
    n = vol.shape[0]
    # init() gives the key a (first, stop) pair, so the slider is a range slider.
    crop = cast(tuple[int, int], d3.slider("Slices used", 0, n, key=CROP, persist_state="session")) if n > 1 else (0, n)
    return Settings(preset, float(level), int(budget), int(keep), (int(crop[0]), int(crop[1])))


@st.cache_resource(scope="session", max_entries=2, show_spinner=False)
def lungs_for(_vol: Volume, key: str) -> tuple[np.ndarray, LungStats]:
    mask = segment_lungs(_vol)
    return mask, lung_statistics(_vol, mask)


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
    plan = plan_isosurface(source, level, max_triangles=settings.budget, crop=crop)
    with budget.reserved(plan.nbytes, owner=owner, what="building this surface"):
        mesh = extract_isosurface(source, level, max_triangles=settings.budget, crop=crop,
                                  keep_largest=settings.keep, plan=plan)
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


def chart_ui(mesh: Mesh, preset: str) -> None:
    """The Plotly mesh; the memory its JSON takes while it is sent is reserved first."""
    try:
        with server_budget().reserved(FIGURE_BYTES_PER_TRIANGLE * mesh.n_triangles, owner=session_owner(),
                                      what="sending this surface to the browser"):
            st.plotly_chart(figure(mesh, COLORS.get(preset, "#c8c8c8")), key="iso_chart", width="stretch")
    except OverBudget as exc:
        st.error(f"The surface is built but not drawn now: {md_escape(exc, max_len=None)}.")


def figure(mesh: Mesh, color: str) -> go.Figure:
    """A lit Plotly mesh in millimetres; the camera survives reruns (uirevision)."""
    v = mesh.vertices
    f = mesh.faces
    fig = go.Figure(go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
        color=color, flatshading=False, hoverinfo="skip",
        lighting=dict(ambient=0.35, diffuse=0.8, specular=0.25, roughness=0.55, fresnel=0.1),
        lightposition=dict(x=0, y=-1e5, z=1e5),
    ))
    axis = dict(showbackground=False, gridcolor="#333", zerolinecolor="#444", color="#aaa")
    fig.update_layout(
        height=650, margin=dict(l=0, r=0, t=0, b=0), template="plotly_dark", uirevision="iso",
        scene=dict(aspectmode="data", xaxis=dict(title="x (mm, R→L)", **axis), yaxis=dict(title="y (mm, A→P)", **axis),
                   zaxis=dict(title="z (mm, I→S)", **axis),
                   camera=dict(eye=dict(x=0.0, y=-2.0, z=0.3), up=dict(x=0, y=0, z=1))),
    )
    return fig


def facts_ui(mesh: Mesh, lungs: LungStats | None) -> None:
    cols = st.columns(4 if lungs is None else 6)
    cols[0].metric("Triangles", f"{mesh.n_triangles:,}")
    cols[1].metric("Surface area", f"{mesh.area_mm2 / 100:,.1f} cm²")
    cols[2].metric("Enclosed volume", f"{mesh.enclosed_ml:,.1f} mL" if mesh.enclosed_ml is not None else "open")
    cols[3].metric("Sampling step", "x".join(str(s) for s in mesh.step) + (" + decimated" if mesh.decimated else ""))
    if lungs is not None:
        cols[4].metric("Lung volume", f"{lungs.volume_ml:,.0f} mL")
        cols[5].metric("Emphysema index", f"{lungs.emphysema_index:.1f} %", help="% of lung voxels below -950 HU")


def downloads_ui(mesh: Mesh, settings: Settings) -> None:
    """STL, PLY and OBJ, written when clicked.

    A click does not rerun the page (``on_click="ignore"``): a rerun redraws the buttons and
    drops the file each one promised, so a second download started while the first one's
    rerun ran never arrived ("Deferred file not found" in the log, the button spinning).
    """
    idx = state.current_index()
    name = settings.preset.split(" (")[0].lower().replace(" ", "_")
    base = f"series{idx + 1}_{name}"
    c1, c2, c3 = st.columns(3)
    c1.download_button("STL (binary)", lambda: mesh_bytes(mesh, "stl"), f"{base}.stl", "model/stl",
                       key="iso_dl_stl", on_click="ignore", icon=":material/download:", help="For 3D printing.")
    c2.download_button("PLY", lambda: mesh_bytes(mesh, "ply"), f"{base}.ply", "application/octet-stream",
                       key="iso_dl_ply", on_click="ignore", icon=":material/download:", help="For 3D Slicer, MeshLab.")
    c3.download_button("OBJ", lambda: mesh_bytes(mesh, "obj"), f"{base}.obj", "model/obj",
                       key="iso_dl_obj", on_click="ignore", icon=":material/download:")
